"""Publisher worker: signed ``POST /apps/{id}/events`` at a fixed offered rate.

Commands arrive as JSON lines on stdin (``publish``, ``exit``). The schedule is
open-loop: event ``i`` is due at ``t0 + i / rate`` and carries that due time as
its timestamp, so a server (or a publisher) that falls behind shows up as
latency instead of silently lowering the offered rate. ``conns`` keep-alive
connections carry the requests, one in flight each; a server that closes after
a response (Soketi does) is reconnected, and the reconnects are counted.
With ``"engine": "c"`` the same schedule runs in ``fastgen.c`` (``native.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import native
from common import (
    APP_ID,
    APP_KEY,
    APP_SECRET,
    EVENT_NAME,
    now_us,
    reply,
    run,
    signed_events_target,
)

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.I)


class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with a minimal response parser."""

    def __init__(self) -> None:
        self.buf = b""
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._parse(eof=True)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed by server"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._parse(eof=False)

    def _parse(self, eof: bool) -> None:
        if self.waiter is None or self.waiter.done():
            return
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = buf[: end + 2]
        status = int(buf[9:12])
        close = _CLOSE.search(head) is not None
        m = _LENGTH.search(head)
        if m is not None:
            total = end + 4 + int(m.group(1))
            if len(buf) < total:
                return
            self.buf = buf[total:]
        elif _CHUNKED.search(head):
            stop = buf.find(b"0\r\n\r\n", end + 4)
            if stop < 0:
                return
            self.buf = buf[stop + 5 :]
        elif not eof:
            return  # body runs until the server closes
        else:
            self.buf = b""
            close = True
        self.waiter.set_result((status, close))

    async def request(self, raw: bytes) -> tuple[int, bool]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)  # type: ignore[union-attr]
        return await self.waiter


async def publish(c: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, port = c["host"], int(c["port"])
    channels: list[str] = c["channels"]
    rate = float(c["rate"])
    total = max(1, round(rate * float(c["duration"])))
    padding = " " + "x" * int(c.get("padding", 0)) if c.get("padding") else ""
    host_header = f"Host: {host}:{port}\r\n"
    # A new connection per request (PHP without a queue worker publishes so).
    close_header = "Connection: close\r\n" if c.get("close_each") else ""
    statuses: dict[str, int] = {}
    counts = {"sent": 0, "ok": 0, "failed": 0, "connects": 0, "errors": 0}
    delivered_to: dict[str, int] = {}  # channel -> successful publishes
    slip_max = 0
    next_index = 0
    t0 = now_us() + 20_000  # first event due in 20 ms

    async def connect() -> HttpConn:
        _, conn = await loop.create_connection(HttpConn, host, port)
        return conn

    async def lane() -> None:
        nonlocal next_index, slip_max
        conn: HttpConn | None = None
        while True:
            i = next_index
            if i >= total:
                break
            next_index += 1
            due = t0 + int(i * 1e6 / rate)
            wait = due - now_us()
            if wait > 500:
                await asyncio.sleep(wait / 1e6)
            channel = channels[i % len(channels)]
            body = json.dumps(
                {"name": EVENT_NAME, "channel": channel, "data": f"{due}{padding}"},
                separators=(",", ":"),
            ).encode()
            target = signed_events_target(body, c.get("app_id", APP_ID))
            raw = (
                f"POST {target} HTTP/1.1\r\n"
                f"{host_header}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{close_header}\r\n"
            ).encode() + body
            slip = now_us() - due
            if slip > slip_max:
                slip_max = slip
            for attempt in range(2):
                try:
                    if conn is None or conn.closed:
                        counts["connects"] += 1
                        conn = await connect()
                    counts["sent"] += 1
                    status, close = await conn.request(raw)
                    break
                except (OSError, ConnectionError):
                    conn = None
                    if attempt:
                        status, close = 0, True
                        counts["errors"] += 1
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 200:
                counts["ok"] += 1
                delivered_to[channel] = delivered_to.get(channel, 0) + 1
            else:
                counts["failed"] += 1
            if close and conn is not None:
                conn.transport.close()  # type: ignore[union-attr]
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    lanes = max(1, int(c.get("conns", 4)))
    await asyncio.gather(*(lane() for _ in range(lanes)))
    elapsed = (now_us() - t0) / 1e6
    return {
        **counts,
        # New TCP connections beyond one per lane: the server closed them.
        "reconnects": max(0, counts["connects"] - lanes),
        "scheduled": total,
        "elapsed": elapsed,
        "achieved_rate": counts["ok"] / elapsed if elapsed > 0 else 0.0,
        "statuses": statuses,
        "per_channel_ok": delivered_to,
        "slip_max_ms": slip_max / 1000,
    }


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    lib = None
    reply({"ready": True})
    while line := await reader.readline():
        c = json.loads(line)
        if c["cmd"] == "exit":
            break
        if c.get("engine") == "c":  # the compiled loop (fastgen.c), same result
            lib = lib or native.load()
            app_id = c.get("app_id", APP_ID)
            reply(
                await loop.run_in_executor(
                    None, native.publish, lib, c, app_id, APP_KEY, APP_SECRET
                )
            )
        else:
            reply(await publish(c))


if __name__ == "__main__":
    run(main)
