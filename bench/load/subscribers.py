"""Subscriber worker: holds many WebSocket clients and counts what reaches them.

Run by the orchestrator (``python subscribers.py``); commands arrive as JSON
lines on stdin, answers leave as JSON lines on stdout (see ``_COMMANDS``).

Why it is cheap per message: each client is a bare ``asyncio.Protocol`` on
uvloop. The handshake and the subscription are parsed properly (a real frame
parser and ``json``); once subscribed, a client switches to a fast path that
never parses frames: one C-level regex scan per received chunk finds the send
timestamps (``common.TS_PATTERN``), one ``int()`` and one dict increment per
delivery record the latency into a 0.1 ms histogram. A chunk boundary can split
a timestamp, so the unmatched end of a chunk is kept and prefixed to the next.
A WebSocket ping (byte 0x89) is answered with an unsolicited empty pong, which
RFC 6455 allows; a false positive costs one tiny write. Client frames are
masked with an all-zero key, so the payload needs no XOR.

With ``"engine": "c"`` on ``connect``, a subscribed client's socket is handed
(``dup``) to the C reader thread of ``fastgen.c``, which does the same fast path
(timestamps, histogram, pongs, pusher:ping every 30 s) without Python per
chunk; the uvloop transport stays open with reading paused. Churn stays here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import sys
from typing import Any

import native
from common import APP_KEY, TS_PATTERN, now_us, presence_auth, reply, run

_PAT = re.compile(TS_PATTERN)
_MARK = b'"data":"'
_SUCCEEDED = b"subscription_succeeded"
_PONG = b"\x8a\x80\x00\x00\x00\x00"
_HANDSHAKE, _SETUP, _FAST, _CHURN = range(4)
# Histogram bucket width in microseconds.
BUCKET_US = 100
# How often an idle client sends pusher:ping, as pusher-js does.
_PING_EVERY = 30.0


def masked_text(payload: bytes) -> bytes:
    """A client TEXT frame, masked with the all-zero key."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0xFF, n)
    return head + b"\x00\x00\x00\x00" + payload


_PING = masked_text(b'{"event":"pusher:ping","data":{}}')


class Stats:
    """What this worker's clients saw since the last ``reset``."""

    def __init__(self) -> None:
        self.received = 0
        self.hist: dict[int, int] = {}
        self.max_us = 0
        self.closed = 0
        self.churn_ops = 0
        self.churn_hist: dict[int, int] = {}
        self.churning = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "hist": self.hist,
            "max_us": self.max_us,
            "closed": self.closed,
            "churn_ops": self.churn_ops,
            "churn_hist": self.churn_hist,
        }


class Client(asyncio.Protocol):
    """One Pusher client subscribed to one channel."""

    def __init__(
        self, worker: Worker, slot: int, channel: str, user_id: str | None
    ) -> None:
        self.w = worker
        self.slot = slot  # index in Worker.clients (and in the C reader's slots)
        self.native = False  # reading done by the C reader thread
        self.channel = channel
        self.user_id = user_id
        self.mode = _HANDSHAKE
        self.buf = b""
        self.tail = b""
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.churn_frames = b""
        self.sent_at = 0

    # --- connection -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.open = True
        transport.write(self.w.handshake)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open and self.ready.done():
            self.w.stats.closed += 1
        self.open = False
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before subscribed"))

    def data_received(self, data: bytes) -> None:
        if self.mode == _FAST:
            self._fast(data)
        elif self.mode == _CHURN:
            self._churn(data)
        else:
            self._setup(data)

    # --- fast paths -------------------------------------------------------------

    def _fast(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        found = _PAT.findall(data)
        k = data.rfind(_MARK)
        if k >= 0 and len(data) - k < 48 and _PAT.match(data, k) is None:
            self.tail = data[k:]  # a timestamp cut by the chunk boundary
        else:
            self.tail = data[-7:]  # maybe the first bytes of _MARK
        if b"\x89" in data:
            self.transport.write(_PONG)  # type: ignore[union-attr]
        if found:
            st = self.w.stats
            now = now_us()
            st.received += len(found)
            hist = st.hist
            for t in found:
                lat = now - int(t)
                b = lat // BUCKET_US
                hist[b] = hist.get(b, 0) + 1
                if lat > st.max_us:
                    st.max_us = lat

    def _churn(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        self.tail = data[-(len(_SUCCEEDED) - 1) :]
        if b"\x89" in data:
            self.transport.write(_PONG)  # type: ignore[union-attr]
        if _SUCCEEDED in data:
            st = self.w.stats
            now = now_us()
            if self.sent_at:
                st.churn_ops += 1
                b = (now - self.sent_at) // BUCKET_US
                st.churn_hist[b] = st.churn_hist.get(b, 0) + 1
                self.sent_at = 0
            if st.churning:
                self.sent_at = now
                self.transport.write(self.churn_frames)  # type: ignore[union-attr]

    def start_churn(self) -> None:
        """Leave and rejoin the presence channel, forever while churning."""
        self.mode = _CHURN
        self.tail = b""
        self.sent_at = now_us()
        self.transport.write(self.churn_frames)  # type: ignore[union-attr]

    # --- handshake and subscription (parsed properly) ---------------------------

    def _setup(self, data: bytes) -> None:
        self.buf += data
        if self.mode == _HANDSHAKE:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self._fail(self.buf[:120].decode(errors="replace"))
                return
            self.buf = self.buf[end + 4 :]
            self.mode = _SETUP
        buf = self.buf
        pos = 0
        while self.mode == _SETUP:
            if len(buf) - pos < 2:
                break
            opcode = buf[pos] & 0x0F
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if len(buf) - pos < head + n:
                break
            payload = buf[pos + head : pos + head + n]
            pos += head + n
            if opcode == 0x9:
                self.transport.write(_PONG)  # type: ignore[union-attr]
            elif opcode == 0x8:
                self._fail(f"closed by server: {payload[2:].decode(errors='replace')}")
                return
            elif opcode == 0x1:
                self._message(payload)
        rest = buf[pos:]
        self.buf = b""
        if self.mode == _SETUP:
            self.buf = rest
        elif self.mode == _FAST and self.w.readers is not None:
            self._hand_over(rest)
        elif rest:
            self.data_received(rest)

    def _hand_over(self, pending: bytes) -> None:
        """Let the C reader thread read this socket from now on."""
        transport = self.transport
        assert transport is not None and self.w.readers is not None
        transport.pause_reading()
        fd = os.dup(transport.get_extra_info("socket").fileno())
        self.w.readers.add(self.slot, fd, pending)
        self.native = True

    def is_open(self) -> bool:
        if self.native and self.open:
            return self.w.readers.is_open(self.slot)  # type: ignore[union-attr]
        return self.open

    def close(self) -> None:
        if self.native:
            # The C reader counted a close by the server already; ours isn't one.
            self.open = False
            self.w.readers.close(self.slot)  # type: ignore[union-attr]
        if self.transport is not None:
            self.transport.close()

    def _message(self, payload: bytes) -> None:
        msg = json.loads(payload)
        event = msg.get("event")
        if event == "pusher:connection_established":
            socket_id = json.loads(msg["data"])["socket_id"]
            self._subscribe(socket_id)
        elif event == "pusher_internal:subscription_succeeded":
            self.mode = _FAST
            if not self.ready.done():
                self.ready.set_result(None)
        elif event in ("pusher:error", "pusher:subscription_error"):
            self._fail(payload.decode(errors="replace"))

    def _subscribe(self, socket_id: str) -> None:
        data: dict[str, str] = {"channel": self.channel}
        if self.user_id is not None:
            channel_data = json.dumps(
                {"user_id": self.user_id, "user_info": {"name": self.user_id}}
            )
            data["channel_data"] = channel_data
            data["auth"] = presence_auth(socket_id, self.channel, channel_data)
        sub = masked_text(
            json.dumps({"event": "pusher:subscribe", "data": data}).encode()
        )
        unsub = masked_text(
            json.dumps(
                {"event": "pusher:unsubscribe", "data": {"channel": self.channel}}
            ).encode()
        )
        self.churn_frames = unsub + sub
        self.transport.write(sub)  # type: ignore[union-attr]

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()


class Worker:
    """This process's clients and counters."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.clients: list[Client] = []
        self.specs: list[tuple[str, str | None]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self.handshake = b""
        self.readers: native.Readers | None = None  # the C reader, engine "c"

    async def _open(
        self, slot: int, channel: str, user_id: str | None, limit: float
    ) -> Client:
        loop = asyncio.get_running_loop()
        _, client = await asyncio.wait_for(
            loop.create_connection(
                lambda: Client(self, slot, channel, user_id), self.host, self.port
            ),
            limit,
        )
        try:
            await asyncio.wait_for(asyncio.shield(client.ready), limit)
        except BaseException:
            if client.transport is not None:
                client.transport.abort()
            raise
        return client

    async def _open_many(
        self, slots: list[int], concurrency: int, limit: float
    ) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        ok = 0

        async def one(i: int) -> None:
            nonlocal ok
            async with sem:
                channel, user_id = self.specs[i]
                try:
                    old = self.clients[i]
                    if old is not None:
                        old.close()  # closed by the server: let go of our end
                    self.clients[i] = await self._open(i, channel, user_id, limit)
                    ok += 1
                except (OSError, TimeoutError, ConnectionError) as exc:
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")

        t0 = now_us()
        await asyncio.gather(*(one(i) for i in slots))
        return {
            "connected": ok,
            "failed": len(slots) - ok,
            "elapsed": (now_us() - t0) / 1e6,
            "errors": errors,
        }

    # --- commands -------------------------------------------------------------------

    async def cmd_connect(self, c: dict[str, Any]) -> dict[str, Any]:
        self.host, self.port = c["host"], int(c["port"])
        self.handshake = (
            f"GET /app/{APP_KEY}?protocol=7&client=pbxws-bench&version=1 HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.specs = [(ch, uid) for ch, uid in c["specs"]]
        if c.get("engine") == "c" and self.readers is None:
            self.readers = native.Readers(
                native.load(), len(self.specs), BUCKET_US, _PING_EVERY
            )
        self.clients = [None] * len(self.specs)  # type: ignore[list-item]
        return await self._open_many(
            list(range(len(self.specs))),
            int(c.get("concurrency", 100)),
            c.get("timeout", 30.0),
        )

    async def cmd_ensure(self, c: dict[str, Any]) -> dict[str, Any]:
        """Reopen clients the server closed (e.g. as slow consumers)."""
        missing = [
            i for i, cl in enumerate(self.clients) if cl is None or not cl.is_open()
        ]
        if not missing:
            return {"connected": 0, "failed": 0, "elapsed": 0.0, "errors": []}
        return await self._open_many(missing, int(c.get("concurrency", 100)), 30.0)

    async def cmd_reset(self, c: dict[str, Any]) -> dict[str, Any]:
        churning = self.stats.churning
        self.stats = Stats()
        self.stats.churning = churning
        if self.readers is not None:
            self.readers.reset()
        return {"ok": True}

    async def cmd_stats(self, c: dict[str, Any]) -> dict[str, Any]:
        out = self.stats.as_dict()
        if self.readers is not None:
            received, max_us, closed, hist = self.readers.stats()
            out["received"] += received
            out["max_us"] = max(out["max_us"], max_us)
            out["closed"] += closed
            for k, v in hist.items():
                out["hist"][k] = out["hist"].get(k, 0) + v
        out["open"] = sum(1 for cl in self.clients if cl is not None and cl.is_open())
        return out

    async def cmd_churn(self, c: dict[str, Any]) -> dict[str, Any]:
        """Leave+join on every client for ``duration`` s; counts completed pairs."""
        self.stats = Stats()
        self.stats.churning = True
        t0 = now_us()
        for cl in self.clients:
            if cl is not None and cl.open:
                cl.start_churn()
        await asyncio.sleep(float(c["duration"]))
        self.stats.churning = False
        out = self.stats.as_dict()
        out["elapsed"] = (now_us() - t0) / 1e6
        # Let the last in-flight joins land so the clients end subscribed.
        for _ in range(50):
            if all(cl is None or not cl.open or not cl.sent_at for cl in self.clients):
                break
            await asyncio.sleep(0.05)
        return out

    async def cmd_close(self, c: dict[str, Any]) -> dict[str, Any]:
        for cl in self.clients:
            if cl is not None and cl.open:
                cl.close()
        for _ in range(100):
            if not any(cl is not None and cl.open for cl in self.clients):
                break
            await asyncio.sleep(0.05)
        return {"ok": True}

    async def keepalive(self) -> None:
        """pusher:ping every 30 s so neither server calls the client idle."""
        while True:
            await asyncio.sleep(_PING_EVERY)
            for cl in self.clients:
                if (
                    cl is not None
                    and cl.open
                    and not cl.native
                    and cl.mode in (_FAST, _CHURN)
                ):
                    cl.transport.write(_PING)  # type: ignore[union-attr]


async def main() -> None:
    worker = Worker()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    keepalive = loop.create_task(worker.keepalive())
    commands = {
        "connect": worker.cmd_connect,
        "ensure": worker.cmd_ensure,
        "reset": worker.cmd_reset,
        "stats": worker.cmd_stats,
        "churn": worker.cmd_churn,
        "close": worker.cmd_close,
    }
    reply({"ready": True})
    while line := await reader.readline():
        c = json.loads(line)
        if c["cmd"] == "exit":
            break
        reply(await commands[c["cmd"]](c))
    keepalive.cancel()


if __name__ == "__main__":
    run(main)
