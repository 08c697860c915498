#!/usr/bin/env node
// Publisher for the Artillery benchmark: one signed `timed-message` per second
// (or RATE per second) on the benchmark channel, data {"time": <ms>}, for
// DURATION seconds. Plain Node >= 18, no dependencies.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const https = require('node:https');

const env = process.env;
const host = env.PUSHER_HOST || '127.0.0.1';
const port = Number(env.PUSHER_PORT || 6001);
const scheme = env.PUSHER_SCHEME || 'http';
const appId = env.PUSHER_APP_ID || 'app-id';
const key = env.PUSHER_APP_KEY || 'app-key';
const secret = env.PUSHER_APP_SECRET || 'app-secret';
const channel = env.PUSHER_CHANNEL || 'benchmark';
const rate = Number(env.RATE || 1);
const duration = Number(env.DURATION || 170);
const agent = new (scheme === 'https' ? https : http).Agent({ keepAlive: true });

let ok = 0;
let failed = 0;

function publish() {
  const body = JSON.stringify({ name: 'timed-message', channel, data: JSON.stringify({ time: Date.now() }) });
  const path = `/apps/${appId}/events`;
  const md5 = crypto.createHash('md5').update(body).digest('hex');
  const query = `auth_key=${key}&auth_timestamp=${Math.floor(Date.now() / 1000)}&auth_version=1.0&body_md5=${md5}`;
  const sig = crypto.createHmac('sha256', secret).update(`POST\n${path}\n${query}`).digest('hex');
  const req = (scheme === 'https' ? https : http).request(
    { host, port, method: 'POST', path: `${path}?${query}&auth_signature=${sig}`, agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
    (res) => {
      res.resume();
      if (res.statusCode === 200) ok += 1;
      else failed += 1;
    },
  );
  req.on('error', () => { failed += 1; });
  req.end(body);
}

const timer = setInterval(publish, 1000 / rate);
setTimeout(() => {
  clearInterval(timer);
  setTimeout(() => {
    console.log(JSON.stringify({ published_ok: ok, failed }));
    agent.destroy();
  }, 1000);
}, duration * 1000);
