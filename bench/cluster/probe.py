"""Cluster figures for the redis adapter: latency, Redis commands, outage.

Usage: .venv/bin/python bench/cluster/probe.py [--events 2000] [--outage 10]

Starts its own redis-server and two `pbxws serve` nodes on free loopback ports
(all stopped by pid at the end) and prints:
  * publish-to-receive latency p50/p99 for a subscriber on the publishing node
    and one on the other node (payload carries the send time);
  * Redis commands per publish and per presence join (INFO commandstats deltas);
  * a Redis outage of --outage seconds while publishing at 20 events/s:
    what each side received during and after, and how many API calls got 503.
"""

# A sequential probe script: blocking subprocess calls and polling sleeps are
# intended; some hand-laid argv lists stay on long lines (`fmt: skip`).
# ruff: noqa: ASYNC110, ASYNC220, ASYNC221, E501

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
PBXWS = ROOT / ".venv" / "bin" / "pbxws"
KEY, SECRET, APP = "app-key", "app-secret", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed(method: str, path: str, body: bytes) -> dict[str, str]:
    query = {
        "auth_key": KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
    }
    if body:
        query["body_md5"] = hashlib.md5(body).hexdigest()  # noqa: S324 - protocol checksum
    string = "&".join(f"{k}={query[k]}" for k in sorted(query))
    query["auth_signature"] = hmac.new(
        SECRET.encode(), f"{method}\n{path}\n{string}".encode(), hashlib.sha256
    ).hexdigest()
    return query


async def start_node(redis_port: int) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "SOKETI_DEFAULT_APP_ID": APP,
        "SOKETI_ADAPTER_DRIVER": "redis",
        "SOKETI_DB_REDIS_PORT": str(redis_port),
        "PBXWS_SERVER_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [str(PBXWS), "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
         "--log-level", "info"],
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    while True:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            raise SystemExit("pbxws exited")
        record = json.loads(line)
        if record.get("event") == "server_started":
            threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
            return proc, int(record["port"])


LOGS: list[str] = []


def _drain(stream: Any) -> None:
    for line in stream:
        LOGS.append(line.decode(errors="replace").rstrip())


def commandstats(port: int) -> dict[str, int]:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    stats = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            stats[name[8:]] = int(rest.split(",")[0].split("=")[1])
    return stats


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)
    }


async def subscriber(
    session: aiohttp.ClientSession, port: int, channel: str, sink: list[float]
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"ws://127.0.0.1:{port}/app/{KEY}?protocol=7")
    await ws.receive()
    await ws.send_str(
        json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}})
    )
    await ws.receive()

    async def read() -> None:
        async for msg in ws:
            data = json.loads(msg.data)
            if data.get("event") == "t":
                sink.append(time.time() - float(data["data"]))
            elif data.get("event") == "pusher:ping":
                await ws.send_str('{"event":"pusher:pong","data":{}}')

    asyncio.get_running_loop().create_task(read())
    return ws


async def publish(session: aiohttp.ClientSession, port: int, channel: str) -> int:
    path = f"/apps/{APP}/events"
    body = json.dumps(
        {"name": "t", "channel": channel, "data": repr(time.time())}
    ).encode()
    async with session.post(
        f"http://127.0.0.1:{port}{path}", params=signed("POST", path, body), data=body,
        headers={"Content-Type": "application/json"},
    ) as resp:  # fmt: skip
        await resp.read()
        return resp.status


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


async def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--events", type=int, default=2000)
    args.add_argument("--outage", type=float, default=10.0)
    args.add_argument("-v", action="store_true", help="print the nodes' logs")
    opts = args.parse_args()
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = [redis]
    try:
        while subprocess.run(["redis-cli", "-p", str(redis_port), "ping"],
                             capture_output=True).returncode:  # fmt: skip
            await asyncio.sleep(0.05)
        (p1, port1), (p2, port2) = (
            await start_node(redis_port),
            await start_node(redis_port),
        )
        procs += [p1, p2]
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0)
        ) as session:
            same: list[float] = []
            cross: list[float] = []
            wss = [await subscriber(session, port1, "lat", same),
                   await subscriber(session, port2, "lat", cross)]  # fmt: skip
            before = commandstats(redis_port)
            for _ in range(opts.events):
                await publish(session, port1, "lat")
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.5)
            per_publish = delta(before, commandstats(redis_port))
            print(f"latency over {opts.events} events published on node 1 (ms):")
            for name, vals in (("same node", same), ("cross node", cross)):
                print(
                    f"  {name:10s} received {len(vals)}  p50 {pct(vals, 50):.2f}  "
                    f"p99 {pct(vals, 99):.2f}  max {max(vals) * 1000:.2f}"
                )
            print(
                "redis commands per publish:",
                {k: round(v / opts.events, 2) for k, v in per_publish.items()},
            )
            # Joins.
            joins = 100
            before = commandstats(redis_port)
            clients = []
            for i in range(joins):
                ws = await session.ws_connect(
                    f"ws://127.0.0.1:{port2}/app/{KEY}?protocol=7"
                )
                sid = json.loads(json.loads((await ws.receive()).data)["data"])[
                    "socket_id"
                ]
                cd = json.dumps({"user_id": str(i)})
                sig = hmac.new(
                    SECRET.encode(), f"{sid}:presence-j:{cd}".encode(), hashlib.sha256
                ).hexdigest()
                await ws.send_str(
                    json.dumps(
                        {
                            "event": "pusher:subscribe",
                            "data": {
                                "channel": "presence-j",
                                "auth": f"{KEY}:{sig}",
                                "channel_data": cd,
                            },
                        }
                    )
                )
                await ws.receive()
                clients.append(ws)
            per_join = delta(before, commandstats(redis_port))
            print(
                f"redis commands per connection + presence join ({joins} joins):",
                {k: round(v / joins, 2) for k, v in per_join.items()},
            )
            for ws in clients:
                await ws.close()
            # Outage.
            same.clear()
            cross.clear()
            statuses: dict[int, int] = {}
            redis.send_signal(signal.SIGKILL)
            redis.wait()
            t_end = time.monotonic() + opts.outage
            sent = 0
            while time.monotonic() < t_end:
                status = await publish(session, port1, "lat")
                statuses[status] = statuses.get(status, 0) + 1
                sent += 1
                await asyncio.sleep(0.05)
            during = (len(same), len(cross))
            redis = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(redis)
            back = time.monotonic()
            while len(cross) < sent and time.monotonic() - back < 20:
                await asyncio.sleep(0.05)
            print(
                f"outage of {opts.outage:.0f} s at 20 events/s: {sent} published, "
                f"API statuses {statuses}; during the outage same-node received "
                f"{during[0]}, cross-node {during[1]}; {time.monotonic() - back:.2f} s "
                f"after Redis returned cross-node had {len(cross)}"
            )
            for ws in wss:
                await ws.close()
            if opts.v:
                print("\n".join(LOGS))
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
