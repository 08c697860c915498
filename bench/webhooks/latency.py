"""Webhook delivery latency and retry schedule, measured end to end.

    .venv/bin/python bench/webhooks/latency.py [--redis-port 6379] [--samples 200]

Starts a pbxws node in this process (local adapter, and the redis adapter
when ``--redis-port`` is given) and an aiohttp receiver, then measures:

* latency: a client event sent on a WebSocket -> its webhook request received,
  one event at a time, batching off and on (50 ms window);
* burst: 1000 client events sent at once -> all received (requests used);
* retry schedule: a receiver answering 500 until the retry period ends
  (initial delay 0.1 s, max 1.6 s, period 6 s), the time of every attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import time
from typing import Any

import aiohttp
from aiohttp import web

from pbxws.config import (
    AdapterConfig,
    AppConfig,
    Config,
    MetricsConfig,
    RedisConfig,
    ServerConfig,
    WebhookConfig,
    WebhookDeliveryConfig,
)
from pbxws.logs import configure_logging
from pbxws.server import Server


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, list[Any]]] = []
        self.status = 200
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrivals.append((time.perf_counter(), json.loads(body)["events"]))
        self.changed.set()
        return web.Response(status=self.status)

    async def events(self, n: int) -> None:
        while sum(len(e) for _, e in self.arrivals) < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 30)


async def start_receiver() -> tuple[Receiver, web.AppRunner, str]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return rec, runner, f"http://127.0.0.1:{port}/hook"


def config(url: str, redis_port: int | None, **delivery: Any) -> Config:
    return Config(
        server=ServerConfig(host="127.0.0.1", port=0, shutdown_grace_period=0.5),
        metrics=MetricsConfig(host="127.0.0.1", port=0),
        adapter=AdapterConfig(driver="redis" if redis_port else "local"),
        # A fresh key prefix: nothing left by an earlier run is delivered.
        redis=RedisConfig(
            port=redis_port or 6379, key_prefix=f"bench{time.time_ns()}:"
        ),
        webhooks=WebhookDeliveryConfig(**delivery),
        apps=[
            AppConfig(
                id="1",
                key="k",
                secret="s",  # noqa: S106 - a throw-away benchmark app
                enable_client_messages=True,
                webhooks=[
                    WebhookConfig(
                        url=url, event_types=["client_event", "channel_occupied"]
                    )
                ],
            )
        ],
    )


async def private_socket(
    server: Server, session: aiohttp.ClientSession, channel: str
) -> Any:
    """A WebSocket subscribed to a private ``channel`` (auth signed here)."""
    ws = await session.ws_connect(f"ws://127.0.0.1:{server.port}/app/k")
    hello = json.loads((await ws.receive()).data)
    socket_id = json.loads(hello["data"])["socket_id"]
    signed = f"{socket_id}:{channel}".encode()
    sig = hmac.new(b"s", signed, hashlib.sha256).hexdigest()
    await ws.send_json(
        {"event": "pusher:subscribe", "data": {"channel": channel, "auth": f"k:{sig}"}}
    )
    await ws.receive()
    return ws


async def measure(redis_port: int | None, samples: int) -> None:
    store = "redis" if redis_port else "memory"
    for batching in (False, True):
        rec, runner, url = await start_receiver()
        server = Server(
            config(url, redis_port, batching=batching, batching_duration=0.05)
        )
        await server.start()
        async with aiohttp.ClientSession() as session:
            # A fresh channel: one vacated < removal_delay ago would be a flap.
            channel = f"private-bench-{time.time_ns()}"
            ws = await private_socket(server, session, channel)
            await rec.events(1)  # channel_occupied
            base = sum(len(e) for _, e in rec.arrivals)
            latencies = []
            for i in range(samples):
                sent = time.perf_counter()
                await ws.send_json(
                    {"event": "client-x", "channel": channel, "data": {"i": i}}
                )
                await rec.events(base + i + 1)
                latencies.append(rec.arrivals[-1][0] - sent)
            latencies.sort()
            q = statistics.quantiles(latencies, n=100)
            requests_before = len(rec.arrivals)
            burst = 1000
            listener = await private_socket(server, session, channel)
            sent = time.perf_counter()
            for i in range(burst):
                await ws.send_json(
                    {"event": "client-x", "channel": channel, "data": {"i": i}}
                )
            for _ in range(burst):
                await listener.receive()
            relayed = time.perf_counter() - sent
            await rec.events(base + samples + burst)
            took = rec.arrivals[-1][0] - sent
            used = len(rec.arrivals) - requests_before
            print(
                f"{store:6} batching {'on (50 ms)' if batching else 'off       '}: "
                f"p50 {q[49] * 1000:6.1f} ms  p95 {q[94] * 1000:6.1f} ms  "
                f"p99 {q[98] * 1000:6.1f} ms  | burst of {burst}: relayed in "
                f"{relayed * 1000:.0f} ms, webhooks in {took * 1000:.0f} ms, "
                f"{used} requests"
            )
            await ws.close()
        await server.stop()
        await runner.cleanup()


async def retry_schedule(redis_port: int | None) -> None:
    rec, runner, url = await start_receiver()
    rec.status = 500
    server = Server(
        config(
            url,
            redis_port,
            retry_initial_delay=0.1,
            retry_max_delay=1.6,
            retry_period=6.0,
        )
    )
    await server.start()
    stats = server.runtime.metrics.app("1")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{server.port}/app/k")
        await ws.receive()
        channel = f"c-{time.time_ns()}"
        await ws.send_json({"event": "pusher:subscribe", "data": {"channel": channel}})
        while stats.webhook_events.get("exhausted", 0) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await ws.close()
    first = rec.arrivals[0][0]
    times = [round(t - first, 3) for t, _ in rec.arrivals]
    store = "redis" if redis_port else "memory"
    print(
        f"{store:6} retry schedule (0.1 s doubling, max 1.6 s, 6 s): "
        f"attempts at {times} s"
    )
    await server.stop()
    await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-port", type=int)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    configure_logging("error")
    for port in (None, args.redis_port) if args.redis_port else (None,):
        await measure(port, args.samples)
        await retry_schedule(port)


if __name__ == "__main__":
    asyncio.run(main())
