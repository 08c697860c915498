// Soketi's published benchmark, for your own load tests with k6 (https://k6.io).
//
// The same shape as Soketi's benchmark/ci-local.js: every virtual user (VU)
// subscribes to the public channel `benchmark` and records
// message_delay_ms = receive time - the send time in each event;
//   soakTraffic: 0 -> 250 VUs over 50 s, held 110 s, each connected 160 s;
//   highTraffic: from 50 s, 0 -> 250 VUs, then 100 / 50 / 100: connection
//                churn (a VU that ends its session reconnects at once);
//   publisher:   one signed HTTP API event per second (Soketi uses a PHP sender).
// Pass: p(95) < 100 ms and avg < 100 ms, Soketi's thresholds.
//
//   k6 run bench/k6/soketi-benchmark.js
//   k6 run -e PUSHER_HOST=ws.example.com -e PUSHER_PORT=443 -e PUSHER_SCHEME=https \
//          -e PUSHER_APP_ID=1 -e PUSHER_APP_KEY=key -e PUSHER_APP_SECRET=secret \
//          -e SCALE=0.25 bench/k6/soketi-benchmark.js     # SCALE shrinks every duration
//
// Works unchanged against pbxws and Soketi. k6 is a Go binary, not on npm
// (the npm package `k6` is a placeholder) nor in Debian; install it from
// Grafana's packages.
import ws from 'k6/ws';
import http from 'k6/http';
import crypto from 'k6/crypto';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const HOST = __ENV.PUSHER_HOST || '127.0.0.1';
const PORT = __ENV.PUSHER_PORT || '6001';
const SCHEME = __ENV.PUSHER_SCHEME || 'http';
const APP_ID = __ENV.PUSHER_APP_ID || 'app-id';
const KEY = __ENV.PUSHER_APP_KEY || 'app-key';
const SECRET = __ENV.PUSHER_APP_SECRET || 'app-secret';
const CHANNEL = __ENV.PUSHER_CHANNEL || 'benchmark';
const SCALE = parseFloat(__ENV.SCALE || '1');
const s = (seconds) => `${Math.max(1, Math.round(seconds * SCALE))}s`;

const delay = new Trend('message_delay_ms', true);
const received = new Counter('messages_received');
const published = new Counter('messages_published');

export const options = {
  thresholds: {
    message_delay_ms: ['p(95)<100', 'avg<100'],
    checks: ['rate>0.99'],
  },
  scenarios: {
    soakTraffic: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: s(50), target: 250 },
        { duration: s(110), target: 250 },
      ],
      gracefulRampDown: s(40),
      exec: 'soak',
    },
    highTraffic: {
      executor: 'ramping-vus',
      startTime: s(50),
      startVUs: 0,
      stages: [
        { duration: s(50), target: 250 },
        { duration: s(30), target: 100 },
        { duration: s(10), target: 50 },
        { duration: s(10), target: 100 },
      ],
      gracefulRampDown: s(40),
      exec: 'churn',
    },
    publisher: {
      executor: 'constant-arrival-rate',
      rate: 1,
      timeUnit: '1s',
      duration: s(160),
      preAllocatedVUs: 2,
      exec: 'publish',
    },
  },
};

function session(seconds) {
  const wsScheme = SCHEME === 'https' ? 'wss' : 'ws';
  const url = `${wsScheme}://${HOST}:${PORT}/app/${KEY}?protocol=7&client=k6&version=1`;
  const res = ws.connect(url, {}, (socket) => {
    socket.on('message', (raw) => {
      const msg = JSON.parse(raw);
      if (msg.event === 'pusher:connection_established') {
        socket.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: CHANNEL } }));
      } else if (msg.event === 'timed-message') {
        delay.add(Date.now() - JSON.parse(msg.data).time);
        received.add(1);
      }
    });
    // pusher-js pings when idle; keeps both servers from calling the socket dead.
    socket.setInterval(() => socket.send('{"event":"pusher:ping","data":{}}'), 30000);
    socket.setTimeout(() => socket.close(), seconds * 1000);
  });
  check(res, { 'WebSocket upgraded (101)': (r) => r && r.status === 101 });
}

export function soak() {
  session(160 * SCALE);
}

export function churn() {
  session(110 * SCALE);
}

// Signed POST /apps/{id}/events (Pusher HTTP API auth, version 1.0).
export function publish() {
  const body = JSON.stringify({
    name: 'timed-message',
    channel: CHANNEL,
    data: JSON.stringify({ time: Date.now() }),
  });
  const path = `/apps/${APP_ID}/events`;
  const query =
    `auth_key=${KEY}&auth_timestamp=${Math.floor(Date.now() / 1000)}` +
    `&auth_version=1.0&body_md5=${crypto.md5(body, 'hex')}`;
  const signature = crypto.hmac('sha256', SECRET, `POST\n${path}\n${query}`, 'hex');
  const res = http.post(`${SCHEME}://${HOST}:${PORT}${path}?${query}&auth_signature=${signature}`, body, {
    headers: { 'Content-Type': 'application/json' },
  });
  check(res, { 'event published (200)': (r) => r.status === 200 });
  published.add(1);
}
