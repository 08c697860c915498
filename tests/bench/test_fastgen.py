"""The bench's compiled generator loops (bench/load/fastgen.c) count and sign correctly.

The reader thread is fed through a real socket pair, with timestamps cut at every
byte boundary; the publisher talks to a real HTTP server on a free port that
checks each request's signature with pbxws's own verifier, and closes after
every answer the way Soketi does, or keeps the connection alive.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from pbxws.protocol.errors import ApiError
from pbxws.protocol.signatures import verify_api_request
from tests.conftest import ROOT, timeout

sys.path.insert(0, str(ROOT / "bench" / "load"))
import native

KEY, SECRET = "app-key", "app-secret"


@pytest.fixture(scope="module")
def lib() -> Any:
    return native.load()


def now_us() -> int:
    return time.monotonic_ns() // 1000


def event_frame(ts: int, padding: str = "") -> bytes:
    payload = json.dumps(
        {"event": "bench", "channel": "c", "data": f"{ts}{padding}"},
        separators=(",", ":"),
    ).encode()
    # The bytes a server sends: an unmasked text frame (length < 126 here).
    return bytes((0x81, len(payload))) + payload


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + timeout()
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def test_reader_counts_timestamps_cut_at_every_byte(lib: Any) -> None:
    readers = native.Readers(lib, 2, 100, 30.0)
    two = event_frame(now_us() - 3_000) + event_frame(now_us() - 3_000, " xx")
    peers: list[socket.socket] = []
    try:
        for cut in range(1, len(two)):
            before = readers.stats()[0]
            ours, theirs = socket.socketpair()
            peers.append(theirs)
            # The first part is consumed while the slot is taken over (the bytes
            # Python read first), so the cut is always a read boundary.
            readers.add(1, ours.fileno(), two[:cut])
            ours.detach()  # the reader owns the descriptor now
            theirs.sendall(two[cut:])
            wait_for(lambda b=before: readers.stats()[0] == b + 2, f"cut at {cut}")
        received, max_us, closed, hist = readers.stats()
        assert received == 2 * (len(two) - 1)
        assert closed == 0
        # Every latency is >= 3 ms (sent 3 ms "late"), in 100 us buckets.
        assert min(hist) >= 30
        assert sum(hist.values()) == received
        assert max_us >= 3_000
        readers.reset()
        assert readers.stats()[:3] == (0, 0, 0)
    finally:
        for peer in peers:
            peer.close()
        readers.destroy()


def test_reader_answers_pings_and_sees_the_server_close(lib: Any) -> None:
    readers = native.Readers(lib, 1, 100, 30.0)
    ours, theirs = socket.socketpair()
    try:
        readers.add(0, ours.fileno(), event_frame(now_us()))  # read by Python first
        ours.detach()
        assert readers.stats()[0] == 1
        theirs.sendall(b"\x89\x00")  # a WebSocket ping
        theirs.settimeout(timeout())
        assert theirs.recv(16) == b"\x8a\x80\x00\x00\x00\x00"  # empty masked pong
        assert readers.is_open(0)
        theirs.close()
        wait_for(lambda: not readers.is_open(0), "the close")
        assert readers.stats()[2] == 1
    finally:
        theirs.close()
        readers.destroy()


class Api:
    """A minimal Pusher events endpoint: verifies signatures, counts channels."""

    def __init__(self, close_after_answer: bool, status: int = 200) -> None:
        self.close_after_answer = close_after_answer
        self.status = status
        self.channels: dict[str, int] = {}
        self.bad: list[str] = []
        self.connections = 0

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = dict(ln.split(": ", 1) for ln in lines[1:] if ln)
                body = await r.readexactly(int(headers["Content-Length"]))
                url = urlsplit(target)
                query = dict(parse_qsl(url.query))
                try:
                    verify_api_request(
                        key=KEY,
                        secret=SECRET,
                        method=method,
                        path=url.path,
                        query=query,
                        body=body,
                        now=time.time(),
                        tolerance=600,
                    )
                except ApiError as exc:
                    self.bad.append(exc.message)
                event = json.loads(body)
                assert event["name"] == "bench"
                assert url.path == "/apps/7/events"
                self.channels[event["channel"]] = (
                    self.channels.get(event["channel"], 0) + 1
                )
                asked = headers.get("Connection", "").lower() == "close"
                close = self.close_after_answer or asked
                w.write(
                    f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\n"
                    f"{'Connection: close' if close else 'X-A: b'}\r\n\r\n{{}}".encode()
                )
                await w.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


async def publish(
    api: Api, rate: float, duration: float, conns: int, close_each: bool = False
) -> dict:
    server = await asyncio.start_server(api.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lib = native.load()
    command = {
        "host": "127.0.0.1",
        "port": port,
        "channels": ["a", "b", "c"],
        "rate": rate,
        "duration": duration,
        "padding": 5,
        "conns": conns,
        "close_each": close_each,
    }
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(native.publish, lib, command, "7", KEY, SECRET),
            timeout(4),
        )
    finally:
        server.close()


@pytest.mark.parametrize("close_after_answer", [False, True])
async def test_publisher_signs_and_counts(close_after_answer: bool) -> None:
    api = Api(close_after_answer)
    res = await publish(api, rate=600, duration=0.5, conns=4)
    assert api.bad == []
    assert res["scheduled"] == 300
    assert res["ok"] == res["sent"] == 300
    assert res["failed"] == res["errors"] == 0
    assert res["statuses"] == {"200": 300}
    assert res["per_channel_ok"] == {"a": 100, "b": 100, "c": 100}
    assert api.channels == {"a": 100, "b": 100, "c": 100}
    if close_after_answer:  # a new connection per request, as with Soketi
        assert res["connects"] == 300 and res["reconnects"] == 296
    else:
        # A free connection takes the next event: at this rate one or two do it all.
        assert 1 <= res["connects"] <= 4
        assert api.connections == res["connects"] and res["reconnects"] == 0
    # Never early: the last of 300 events is due 299/600 s after the first.
    assert res["elapsed"] >= 299 / 600


async def test_publisher_can_ask_for_a_connection_per_request() -> None:
    api = Api(close_after_answer=False)  # closes only when the request asks
    res = await publish(api, rate=400, duration=0.25, conns=2, close_each=True)
    assert api.bad == []
    assert res["ok"] == 100 and res["failed"] == 0
    assert res["connects"] == api.connections == 100


async def test_publisher_counts_refusals() -> None:
    api = Api(close_after_answer=False, status=401)
    res = await publish(api, rate=200, duration=0.2, conns=2)
    assert res["ok"] == 0
    assert res["failed"] == 40
    assert res["statuses"] == {"401": 40}
    assert res["per_channel_ok"] == {}


async def test_publisher_reports_a_server_that_is_not_there() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port now
    lib = native.load()
    command = {"host": "127.0.0.1", "port": port, "channels": ["a"], "rate": 100}
    res = await asyncio.to_thread(
        native.publish, lib, {**command, "duration": 0.1, "conns": 1}, "7", KEY, SECRET
    )
    assert res["ok"] == 0
    assert res["errors"] == res["failed"] == 10
    assert res["statuses"] == {"0": 10}
