"""One PBX-shape publish request through the lean path, in process, no kernel.

A signed ``POST /apps/1/events`` (the bench publisher's exact bytes) is fed to
:class:`~pbxws.http_api.fast.FastApi` on a kept-alive connection, and the event
is written to the 4 presence members of its channel; transports only count
bytes. This is the user-space cost per event of the ``pbx`` bench scenario:
HTTP parse, signature, decode, metrics, frame, fan-out, response. The kernel
writes a real event adds (5 of them, ~7 µs each on the bench machine) are not
in it. ``ns/op`` is per request, event-loop scheduling included.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "load"))

from common import APP_ID, APP_KEY, APP_SECRET, signed_events_target

from pbxws.config import load_config
from pbxws.front import Front
from pbxws.logs import configure_logging
from pbxws.server import Server

MEMBERS = 4
CHANNELS = 50


class NullTransport(asyncio.Transport):
    """Takes writes and counts them; never buffers, never closes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None
    ) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _masked(payload: bytes) -> bytes:
    """A client text frame with the all-zero mask (nothing to XOR)."""
    n = len(payload)
    head = (
        bytes([0x81, 0x80 | n])
        if n < 126
        else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    )
    return head + b"\0\0\0\0" + payload


def _subscribe(server: Server, channel: str, user: int) -> NullTransport:
    rt = server.runtime
    t = NullTransport()
    front = Front(rt, lambda: None)  # type: ignore[arg-type,return-value]
    front.connection_made(t)
    front.data_received(
        f"GET /app/{APP_KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    sock = t.protocol
    socket_id = sock._conn.socket_id
    data = json.dumps({"user_id": str(user)})
    sig = hmac.new(
        APP_SECRET.encode(), f"{socket_id}:{channel}:{data}".encode(), hashlib.sha256
    ).hexdigest()
    msg = {
        "event": "pusher:subscribe",
        "data": {"channel": channel, "auth": f"{APP_KEY}:{sig}", "channel_data": data},
    }
    sock.data_received(_masked(json.dumps(msg).encode()))
    return t


async def _main() -> None:
    configure_logging("info", json=True)
    env = {
        "SOKETI_DEFAULT_APP_ID": APP_ID,
        "SOKETI_DEFAULT_APP_KEY": APP_KEY,
        "SOKETI_DEFAULT_APP_SECRET": APP_SECRET,
        "SOKETI_METRICS_ENABLED": "true",
    }
    server = Server(load_config(None, env, {}))
    server.runtime.accepting = True
    channels = [f"presence-pbx-{i}" for i in range(CHANNELS)]
    subs = [
        _subscribe(server, ch, i * 10 + m)
        for i, ch in enumerate(channels)
        for m in range(MEMBERS)
    ]
    await asyncio.sleep(0.05)
    requests = []
    head = (
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1:6001\r\nContent-Type: application/json\r\n"
    )
    for i in range(1000):
        ch = channels[i % CHANNELS]
        body = json.dumps(
            {"name": "pbx", "channel": ch, "data": f"{1732590000123456 + i}"},
            separators=(",", ":"),
        ).encode()
        target = signed_events_target(body, APP_ID)
        length = f"Content-Length: {len(body)}\r\n\r\n"
        requests.append((head.format(target) + length).encode() + body)
    api_t = NullTransport()
    front = Front(server.runtime, lambda: None)  # type: ignore[arg-type,return-value]
    front.connection_made(api_t)
    front.data_received(requests[0])
    await asyncio.sleep(0)
    api = api_t.protocol
    sleep = asyncio.sleep

    async def baseline(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await sleep(0)
        return time.perf_counter() - t0

    async def run(n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            api.data_received(requests[i % 1000])
            await sleep(0)
        return time.perf_counter() - t0

    n = 20000
    best = min([await run(n) for _ in range(5)])
    base = min([await baseline(n) for _ in range(5)])
    delivered = sum(t.writes for t in subs)
    assert delivered >= MEMBERS * n, (delivered, n)
    report("publish request (4 members), event loop included", best / n)
    report("  of which the bench loop itself (sleep(0))", base / n)


def report(name: str, seconds: float) -> None:
    print(f"{name:<58} {seconds * 1e9:>10.1f} ns/op")


def main() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main())
    else:
        uvloop.run(_main())


if __name__ == "__main__":
    main()
