// Artillery processor: subscribe to the benchmark channel and record
// message_delay_ms (receive time - the event's send time) as a histogram.
'use strict';

const CHANNEL = process.env.PUSHER_CHANNEL || 'benchmark';

function subscribe(context, events, next) {
  const socket = context.ws;
  let done = false;
  const finish = (err) => {
    if (!done) {
      done = true;
      next(err);
    }
  };
  socket.on('message', (raw) => {
    let msg;
    try {
      msg = JSON.parse(raw.toString());
    } catch (err) {
      return;
    }
    if (msg.event === 'pusher_internal:subscription_succeeded') {
      events.emit('counter', 'subscriptions', 1);
      finish();
    } else if (msg.event === 'timed-message') {
      events.emit('histogram', 'message_delay_ms', Date.now() - JSON.parse(msg.data).time);
      events.emit('counter', 'messages_received', 1);
    } else if (msg.event === 'pusher:error') {
      events.emit('counter', 'pusher_errors', 1);
    }
  });
  // Subscribe at once: pusher:connection_established may have arrived before
  // this step could listen, and both servers take a subscribe right after open.
  socket.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: CHANNEL } }));
  // pusher-js pings when idle; so do we.
  const ping = setInterval(() => {
    if (socket.readyState === 1) socket.send('{"event":"pusher:ping","data":{}}');
  }, 30000);
  socket.on('close', () => clearInterval(ping));
  setTimeout(() => finish(new Error('no subscription_succeeded in 10 s')), 10000).unref();
}

// Stay connected (receiving events) for IDLE_SECONDS / CHURN_SECONDS.
function stay(seconds) {
  return (context, events, next) => setTimeout(next, seconds * 1000);
}

module.exports = {
  subscribe,
  stayIdle: stay(Number(process.env.IDLE_SECONDS || 160)),
  stayChurn: stay(Number(process.env.CHURN_SECONDS || 10)),
};
