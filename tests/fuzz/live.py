"""Fuzz a live ``pbxws serve`` over real sockets while bystanders keep score.

Attackers (several sockets, reconnecting whenever the server closes them)
send random and mutated frames, wrong types, huge and deeply nested JSON,
binary frames, invalid UTF-8, subscribe/unsubscribe floods of thousands of
channels, client-event floods, garbage sign-ins and presence joins, and
sockets that never read. Meanwhile a publisher triggers numbered events
through the HTTP API to bystanders (public, private and presence channels of
the attacked app, and a public channel of another app), which must receive
every one of them, in order, without being disconnected. The server's RSS is
sampled throughout and its output is scanned for tracebacks.

In the test suite a short run is made (``tests/fuzz/test_live_fuzz.py``); a
long one runs from the command line against a fresh server process::

    .venv/bin/python -m tests.fuzz.live --inputs 200000 --attackers 16 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

APP_ID, APP_KEY, APP_SECRET = "424242", "fuzz-key", "fuzz-secret"
OTHER_ID, OTHER_KEY, OTHER_SECRET = "424243", "other-key", "other-secret"

#: The environment of a server under fuzz: two apps, client events on.
SERVER_ENV = {
    "PBXWS_DEFAULT_APP_ID": APP_ID,
    "PBXWS_DEFAULT_APP_KEY": APP_KEY,
    "PBXWS_DEFAULT_APP_SECRET": APP_SECRET,
    "PBXWS_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "true",
    "PBXWS_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT": "true",
    "PBXWS_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC": "50",
    "PBXWS_SERVER_LOG_LEVEL": "info",
}
#: A second app in a config file (the environment only sets the first one).
SERVER_CONFIG = f"""
[[apps]]
id = "{APP_ID}"
key = "{APP_KEY}"
secret = "{APP_SECRET}"

[[apps]]
id = "{OTHER_ID}"
key = "{OTHER_KEY}"
secret = "{OTHER_SECRET}"
"""

# Signs of a server-side failure in its output.
FAILURE_MARKS = ("Traceback", "Error handling request", "Exception in callback",
                 "exception was never retrieved", '"level":"error"', '"level":"critical"')  # fmt: skip


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def rss_of(pid: int) -> int:
    """Resident set size of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Report:
    """What a fuzz run did and saw."""

    seed: int
    inputs: int = 0
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    # Close codes the server ended attacker sockets with.
    closes: collections.Counter[int] = field(default_factory=collections.Counter)
    # Answers attackers got, by event name.
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    reconnects: int = 0
    slow_sockets: int = 0
    ticks_sent: int = 0
    # Bystander name -> ticks received in order.
    ticks_received: dict[str, int] = field(default_factory=dict)
    bystander_problems: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rss_start: int = 0
    rss_peak: int = 0
    rss_end: int = 0
    server_failures: list[str] = field(default_factory=list)
    # Attacker sockets the server stopped answering (with the last input kind).
    stalls: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        mb = 1024 * 1024
        return "\n".join(
            [
                f"seed {self.seed}: {self.inputs} inputs in {self.seconds:.1f} s "
                f"({self.inputs / max(self.seconds, 1e-9):.0f}/s), "
                f"{self.reconnects} reconnects, {self.slow_sockets} never-reading sockets",
                "inputs by kind: " + ", ".join(f"{k} {n}" for k, n in self.kinds.most_common()),
                "attacker closes: " + ", ".join(f"{k}: {n}" for k, n in sorted(self.closes.items())),
                "answers: " + ", ".join(f"{k} {n}" for k, n in self.answers.most_common(8)),
                f"bystanders: {self.ticks_sent} ticks sent, received {self.ticks_received}; "
                f"latency p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
                f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms",
                f"server RSS: start {self.rss_start / mb:.1f} MB, peak {self.rss_peak / mb:.1f} MB, "
                f"end {self.rss_end / mb:.1f} MB",
                f"bystander problems: {self.bystander_problems or 'none'}",
                f"server failures: {len(self.server_failures)}; stalls: {self.stalls or 'none'}",
            ]
        )  # fmt: skip


# --------------------------------------------------------------------- inputs
TEMPLATES = [
    {"event": "pusher:subscribe", "data": {"channel": "news"}},
    {"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": "k:s"}},
    {"event": "pusher:subscribe",
     "data": {"channel": "presence-x", "auth": "k:s", "channel_data": '{"user_id":1}'}},
    {"event": "pusher:unsubscribe", "data": {"channel": "news"}},
    {"event": "pusher:signin", "data": {"auth": "k:s", "user_data": '{"id":"1"}'}},
    {"event": "client-typing", "channel": "private-x", "data": {"a": 1}},
    {"event": "pusher:ping", "data": {}},
]  # fmt: skip
EVENTS = ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin", "pusher:ping",
          "pusher:pong", "client-x", "pusher_internal:member_added", "", "x" * 300]  # fmt: skip


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, small."""
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            [None, True, False, rng.randint(-(2**40), 2**40), rng.random() * 1e6,
             rng.choice(EVENTS), "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 12))),
             "presence-" + str(rng.randint(0, 9)), "#server-to-user-1", "private-x"]
        )  # fmt: skip
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["event", "channel", "data", "auth", "channel_data", "user_data", "id",
            "watchlist", "user_id", "user_info", "x"]  # fmt: skip
    return {
        rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))
    }


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not out:
            break
        i = rng.randrange(len(out))
        op = rng.random()
        if op < 0.4:
            out[i] = rng.randrange(256)
        elif op < 0.7:
            del out[i]
        else:
            out[i:i] = bytes([rng.randrange(256)])
    return bytes(out)


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (for the raw sockets)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


# ------------------------------------------------------------------ the fuzzer
class Fuzzer:
    """One run against a server on ``port`` (process ``pid``)."""

    def __init__(
        self,
        port: int,
        pid: int,
        *,
        inputs: int,
        attackers: int,
        seed: int,
        output: Callable[[], list[str]] = list,
        max_message_size: int = 262144,
    ) -> None:
        self.port = port
        self.pid = pid
        self.target = inputs
        self.attackers = attackers
        self.rng = random.Random(seed)
        self.output = output
        self.max_message_size = max_message_size
        self.report = Report(seed=seed)
        self.done = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self._slow: list[socket.socket] = []

    # -- plumbing ----------------------------------------------------------------
    def url(self, key: str = APP_KEY) -> str:
        return f"ws://127.0.0.1:{self.port}/app/{key}?protocol=7&client=fuzz"

    def count(self, kind: str, n: int = 1) -> bool:
        """Record ``n`` inputs; False once the run has enough."""
        self.report.inputs += n
        self.report.kinds[kind] += n
        if self.report.inputs >= self.target:
            self.done.set()
        return not self.done.is_set()

    async def trigger(self, channels: list[str], name: str, data: str,
                      app: tuple[str, str, str] = (APP_ID, APP_KEY, APP_SECRET)) -> int:  # fmt: skip
        app_id, key, secret = app
        assert self.session is not None
        body = json.dumps({"name": name, "channels": channels, "data": data}).encode()
        path = f"/apps/{app_id}/events"
        query = {"auth_key": key, "auth_timestamp": str(int(time.time())),
                 "auth_version": "1.0", "body_md5": hashlib.md5(body).hexdigest()}  # noqa: S324 - protocol checksum  # fmt: skip
        string = "&".join(f"{k}={query[k]}" for k in sorted(query))
        query["auth_signature"] = sign(secret, f"POST\n{path}\n{string}")
        async with self.session.post(
            f"http://127.0.0.1:{self.port}{path}", params=query, data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:  # fmt: skip
            await resp.read()
            return resp.status

    # -- bystanders --------------------------------------------------------------
    async def bystander(self, name: str, key: str, secret: str, channel: str,
                        ready: asyncio.Event) -> None:  # fmt: skip
        """Subscribe, then check every tick arrives in order until the run ends."""
        assert self.session is not None
        ws = await self.session.ws_connect(self.url(key), max_msg_size=0)
        established = json.loads((await ws.receive()).data)
        socket_id = json.loads(established["data"])["socket_id"]
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith(("private-", "presence-")):
            message = f"{socket_id}:{channel}"
            if channel.startswith("presence-"):
                data["channel_data"] = json.dumps({"user_id": f"bystander-{name}"})
                message += ":" + data["channel_data"]
            data["auth"] = f"{key}:{sign(secret, message)}"
        await ws.send_str(json.dumps({"event": "pusher:subscribe", "data": data}))
        expected = 0
        self.report.ticks_received[name] = 0
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                self.report.bystander_problems.append(
                    f"{name}: {msg.type.name} {msg.data}"
                )
                return
            event = json.loads(msg.data)
            if event["event"] == "pusher_internal:subscription_succeeded":
                ready.set()
            elif event["event"] == "pusher:error":
                self.report.bystander_problems.append(f"{name}: error {event['data']}")
            elif event["event"] == "tick":
                tick = json.loads(event["data"])
                if tick["n"] == -1:
                    await ws.close()
                    return
                if tick["n"] != expected:
                    self.report.bystander_problems.append(
                        f"{name}: tick {tick['n']} instead of {expected}"
                    )
                expected = tick["n"] + 1
                self.report.ticks_received[name] = expected
                self.report.latencies.append(time.time() - tick["t"])

    async def publisher(self) -> None:
        """A tick every 20 ms to every bystander channel, until the run ends."""
        n = 0
        while not self.done.is_set():
            data = json.dumps({"n": n, "t": time.time()})
            s1 = await self.trigger(
                ["bystander", "private-bystander", "presence-bystander"], "tick", data
            )
            s2 = await self.trigger(["bystander"], "tick", data, (OTHER_ID, OTHER_KEY, OTHER_SECRET))  # fmt: skip
            if (s1, s2) != (200, 200):
                self.report.bystander_problems.append(f"trigger answered {s1}, {s2}")
            n += 1
            self.report.ticks_sent = n
            await asyncio.sleep(0.02)
        end = json.dumps({"n": -1, "t": time.time()})
        await self.trigger(
            ["bystander", "private-bystander", "presence-bystander"], "tick", end
        )
        await self.trigger(
            ["bystander"], "tick", end, (OTHER_ID, OTHER_KEY, OTHER_SECRET)
        )

    async def sampler(self) -> None:
        while not self.done.is_set():
            self.report.rss_peak = max(self.report.rss_peak, rss_of(self.pid))
            await asyncio.sleep(0.1)

    # -- attackers ---------------------------------------------------------------
    async def attacker(self, index: int) -> None:
        rng = random.Random(self.rng.random())
        kinds: list[tuple[str, float, Callable[[Any, random.Random, str], Awaitable[None]]]] = [
            ("garbage_text", 10, self._garbage_text),
            ("invalid_utf8", 5, self._invalid_utf8),
            ("binary", 3, self._binary),
            ("wrong_types", 10, self._wrong_types),
            ("mutated", 12, self._mutated),
            ("unknown_event", 4, self._unknown_event),
            ("huge", 1, self._huge),
            ("nested", 2, self._nested),
            ("subscribe_flood", 0.1, self._subscribe_flood),
            ("client_flood", 1, self._client_flood),
            ("presence", 5, self._presence),
            ("signin", 5, self._signin),
            ("ping_flood", 0.5, self._ping_flood),
            ("truncated_frame", 0.5, self._truncated),
        ]  # fmt: skip
        names = [k[0] for k in kinds]
        weights = [k[1] for k in kinds]
        ws: aiohttp.ClientWebSocketResponse | None = None
        socket_id = ""
        reader: asyncio.Task[None] | None = None
        pong = asyncio.Event()
        while not self.done.is_set():
            if ws is None or ws.closed or reader is None or reader.done():
                if ws is not None:
                    await ws.close()
                if reader is not None:
                    await reader
                ws, socket_id = await self._connect()
                pong = asyncio.Event()
                reader = asyncio.create_task(self._drain(ws, pong))
                self.report.reconnects += 1
            kind = rng.choices(names, weights)[0]
            handler = kinds[names.index(kind)][2]
            try:
                await handler(ws, rng, socket_id)
                # Round trip a ping, so the server has handled what was sent
                # (inputs are counted as handled, not as merely buffered).
                pong.clear()
                await ws.send_str('{"event":"pusher:ping","data":{}}')
                async with asyncio.timeout(10):
                    await pong.wait()
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                pass  # the server closed this socket: reconnect
            except TimeoutError:
                # No answer to a ping in 10 s: the server stalled on this socket.
                self.report.stalls.append(
                    f"attacker {index} after {kind} ({socket_id})"
                )
                await ws.close()
        if ws is not None:
            await ws.close()
        if reader is not None:
            await reader

    async def _connect(self) -> tuple[aiohttp.ClientWebSocketResponse, str]:
        assert self.session is not None
        ws = await self.session.ws_connect(self.url(), max_msg_size=0, autoclose=False)
        first = json.loads((await ws.receive()).data)
        return ws, json.loads(first["data"])["socket_id"]

    async def _drain(
        self, ws: aiohttp.ClientWebSocketResponse, pong: asyncio.Event
    ) -> None:
        """Read (and count) whatever the server answers an attacker."""
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    event = "?"
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        event = json.loads(msg.data)["event"]
                    self.report.answers[event] += 1
                    if event == "pusher:pong":
                        pong.set()
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    self.report.closes[int(msg.data)] += 1
                    await ws.close()
                    return
                elif msg.type is not aiohttp.WSMsgType.BINARY:
                    return  # closed or failed
        finally:
            pong.set()

    async def _text(self, ws: Any, kind: str, text: str | bytes) -> None:
        if self.count(kind):
            payload = text.encode() if isinstance(text, str) else text
            await ws.send_frame(payload, aiohttp.WSMsgType.TEXT)

    async def _garbage_text(self, ws: Any, rng: random.Random, sid: str) -> None:
        text = "".join(chr(rng.randint(1, 0xD7FF)) for _ in range(rng.randint(0, 200)))
        await self._text(ws, "garbage_text", text)

    async def _invalid_utf8(self, ws: Any, rng: random.Random, sid: str) -> None:
        """Text frames that are not UTF-8, some as client events to a bystander."""
        if rng.random() < 0.5:
            await self._text(ws, "invalid_utf8", os.urandom(rng.randint(1, 100)))
            return
        channel = "private-bystander"
        await self._text(ws, "invalid_utf8", json.dumps({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": self._auth(sid, channel)}}))  # fmt: skip
        bad = bytes(rng.choice([0xFF, 0xC0, 0xED, 0x80]) for _ in range(3))
        await self._text(ws, "invalid_utf8", b'{"event":"client-x","channel":"'
                         + channel.encode() + b'","data":{"k":"' + bad + b'"}}')  # fmt: skip

    async def _binary(self, ws: Any, rng: random.Random, sid: str) -> None:
        if self.count("binary"):
            await ws.send_bytes(os.urandom(rng.randint(0, 300)))

    async def _wrong_types(self, ws: Any, rng: random.Random, sid: str) -> None:
        value: Any = random_json(rng)
        if rng.random() < 0.7:
            value = {"event": rng.choice(EVENTS), "data": random_json(rng),
                     "channel": random_json(rng)}  # fmt: skip
            if rng.random() < 0.3:
                value["data"] = json.dumps(value["data"])
        await self._text(ws, "wrong_types", json.dumps(value))

    async def _mutated(self, ws: Any, rng: random.Random, sid: str) -> None:
        raw = json.dumps(rng.choice(TEMPLATES)).encode()
        await self._text(ws, "mutated", mutate(rng, raw))

    async def _unknown_event(self, ws: Any, rng: random.Random, sid: str) -> None:
        event = rng.choice(["pusher:" + "x" * rng.randint(0, 50), "pusher_internal:watchlist_events",
                            "client-" + "y" * rng.randint(0, 400), "\u0000", "🙂" * 20])  # fmt: skip
        await self._text(ws, "unknown_event", json.dumps({"event": event, "data": {}}))

    async def _huge(self, ws: Any, rng: random.Random, sid: str) -> None:
        size = rng.choice([self.max_message_size // 2, self.max_message_size - 100,
                           self.max_message_size + 1000])  # fmt: skip
        filler = "a" * size
        await self._text(ws, "huge", json.dumps({"event": "client-big", "channel": "private-x",
                                                 "data": filler}))  # fmt: skip

    async def _nested(self, ws: Any, rng: random.Random, sid: str) -> None:
        depth = rng.choice([100, 1000, 20000, 100000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        nested = opener * depth + "1" + closer * depth
        field_ = rng.choice(["data", "channel", "event"])
        await self._text(
            ws, "nested", '{"event":"pusher:subscribe","' + field_ + '":' + nested + "}"
        )

    async def _subscribe_flood(self, ws: Any, rng: random.Random, sid: str) -> None:
        """Thousands of channels on one socket, then leave them."""
        n = rng.choice([200, 1500, 3000])
        prefix = f"flood-{rng.randrange(10**6)}-"
        for i in range(n):
            if not self.count("subscribe_flood"):
                return
            await ws.send_str(
                json.dumps(
                    {"event": "pusher:subscribe", "data": {"channel": f"{prefix}{i}"}}
                )
            )
        for i in range(n):
            if not self.count("subscribe_flood"):
                return
            await ws.send_str(
                json.dumps(
                    {"event": "pusher:unsubscribe", "data": {"channel": f"{prefix}{i}"}}
                )
            )

    def _auth(self, sid: str, channel: str, channel_data: str | None = None) -> str:
        message = f"{sid}:{channel}" + (
            f":{channel_data}" if channel_data is not None else ""
        )
        return f"{APP_KEY}:{sign(APP_SECRET, message)}"

    async def _client_flood(self, ws: Any, rng: random.Random, sid: str) -> None:
        channel = rng.choice(["private-bystander", "private-x", "presence-bystander"])
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith("presence-"):
            data["channel_data"] = json.dumps(
                {"user_id": f"attacker-{rng.randrange(50)}"}
            )
        data["auth"] = self._auth(sid, channel, data.get("channel_data"))
        await self._text(
            ws, "client_flood", json.dumps({"event": "pusher:subscribe", "data": data})
        )
        for _ in range(rng.randint(10, 120)):
            body = {"event": "client-" + rng.choice(["typing", "x", "tick"]), "channel": channel,
                    "data": random_json(rng)}  # fmt: skip
            await self._text(ws, "client_flood", json.dumps(body))

    async def _presence(self, ws: Any, rng: random.Random, sid: str) -> None:
        channel = rng.choice(
            ["presence-bystander", "presence-x", f"presence-{rng.randrange(100)}"]
        )
        user_info: Any = random_json(rng)
        if rng.random() < 0.2:
            user_info = "i" * rng.choice([1000, 3000, 50000])
        member: Any = {"user_id": rng.choice([rng.randrange(100), str(rng.randrange(100)), "", None, [1]]),
                       "user_info": user_info}  # fmt: skip
        channel_data = (
            json.dumps(member)
            if rng.random() < 0.9
            else mutate(rng, json.dumps(member).encode()).decode(errors="replace")
        )
        auth = self._auth(sid, channel, channel_data) if rng.random() < 0.9 else "x:y"
        await self._text(ws, "presence", json.dumps({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": auth, "channel_data": channel_data}}))  # fmt: skip
        if rng.random() < 0.5 and self.count("presence"):
            await ws.send_str(
                json.dumps(
                    {"event": "pusher:unsubscribe", "data": {"channel": channel}}
                )
            )

    async def _signin(self, ws: Any, rng: random.Random, sid: str) -> None:
        user: Any = {
            "id": rng.choice([str(rng.randrange(20)), rng.randrange(20), "", None])
        }
        if rng.random() < 0.6:
            size = rng.choice([0, 5, 100, 150, 3000])
            user["watchlist"] = [rng.choice([str(rng.randrange(50)), rng.randrange(50), None, {}])
                                 for _ in range(size)]  # fmt: skip
        user_data = json.dumps(user)
        auth = f"{APP_KEY}:{sign(APP_SECRET, f'{sid}::user::{user_data}')}"
        if rng.random() < 0.15:
            auth = f"{APP_KEY}:{'0' * 64}"  # a bad signature: closed 4009
        await self._text(ws, "signin", json.dumps({"event": "pusher:signin",
                                                   "data": {"auth": auth, "user_data": user_data}}))  # fmt: skip

    async def _ping_flood(self, ws: Any, rng: random.Random, sid: str) -> None:
        for _ in range(rng.randint(10, 200)):
            await self._text(ws, "ping_flood", '{"event":"pusher:ping","data":{}}')

    async def _truncated(self, ws: Any, rng: random.Random, sid: str) -> None:
        """Half a frame, then the TCP connection dropped (on a raw socket)."""
        if not self.count("truncated_frame"):
            return
        _, writer = await self._raw_socket()
        frame = client_frame(
            b'{"event":"pusher:subscribe","data":{"channel":"bystander"}}'
        )
        writer.write(frame[: rng.randint(1, len(frame) - 1)])
        await writer.drain()
        writer.transport.abort()

    async def _raw_socket(
        self, rcvbuf: int | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (f"GET /app/{APP_KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        )  # fmt: skip
        await reader.readuntil(b"\r\n\r\n")
        return reader, writer

    async def never_reading(self) -> None:
        """Sockets that subscribe and never read while big events flow to them."""
        channel = 0
        while not self.done.is_set():
            _, writer = await self._raw_socket(rcvbuf=4096)
            writer.write(client_frame(json.dumps(
                {"event": "pusher:subscribe", "data": {"channel": f"slow-{channel}"}}).encode()))  # fmt: skip
            await writer.drain()
            self.report.slow_sockets += 1
            for _ in range(30):
                if self.done.is_set():
                    break
                await self.trigger([f"slow-{channel}"], "big", "z" * 60000)
                await asyncio.sleep(0.02)
            writer.transport.abort()  # never read a byte of it
            channel += 1

    # -- the run -------------------------------------------------------------------
    async def run(self) -> Report:
        started = time.monotonic()
        self.report.rss_start = self.report.rss_peak = rss_of(self.pid)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as self.session:
            readies = [asyncio.Event() for _ in range(4)]
            bystanders = [
                asyncio.create_task(self.bystander("public", APP_KEY, APP_SECRET, "bystander", readies[0])),
                asyncio.create_task(self.bystander("private", APP_KEY, APP_SECRET, "private-bystander", readies[1])),
                asyncio.create_task(self.bystander("presence", APP_KEY, APP_SECRET, "presence-bystander", readies[2])),
                asyncio.create_task(self.bystander("other-app", OTHER_KEY, OTHER_SECRET, "bystander", readies[3])),
            ]  # fmt: skip
            async with asyncio.timeout(30):
                for ready in readies:
                    await ready.wait()
            background = [
                asyncio.create_task(self.publisher()),
                asyncio.create_task(self.sampler()),
                asyncio.create_task(self.never_reading()),
            ]
            attackers = [
                asyncio.create_task(self.attacker(i)) for i in range(self.attackers)
            ]
            await asyncio.gather(*attackers)
            await asyncio.gather(*background)
            async with asyncio.timeout(60):
                await asyncio.gather(*bystanders)
            # The attackers are gone: memory must come back down.
            for _ in range(50):
                self.report.rss_end = rss_of(self.pid)
                if self.report.rss_end < self.report.rss_start + 48 * 1024 * 1024:
                    break
                await asyncio.sleep(0.1)
        self.report.seconds = time.monotonic() - started
        self.report.server_failures = [
            line
            for line in self.output()
            if any(mark in line for mark in FAILURE_MARKS)
        ]
        return self.report


# ------------------------------------------------------------------------- CLI
async def _main(args: argparse.Namespace) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "fuzz.toml")
        with open(config, "w", encoding="ascii") as f:
            f.write(SERVER_CONFIG)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SOKETI_", "PBXWS_"))
        }
        env.update(SERVER_ENV, PYTHONUNBUFFERED="1")
        env.update(item.split("=", 1) for item in args.env)
        exe = os.path.join(os.path.dirname(sys.executable), "pbxws")
        proc = await asyncio.create_subprocess_exec(
            exe, "serve", "--config", config, "--host", "127.0.0.1", "--port", "0",
            "--metrics-port", "0", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, limit=2**22,
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[str] = []
        port = 0
        while not port:
            line = (await proc.stdout.readline()).decode(errors="replace")
            if not line:
                print("server exited:\n" + "".join(lines), file=sys.stderr)
                return 2
            lines.append(line)
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == "server_started":
                    port = int(record["port"])

        async def pump() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                lines.append(line.decode(errors="replace"))

        pumping = asyncio.create_task(pump())
        try:
            fuzzer = Fuzzer(port, proc.pid, inputs=args.inputs, attackers=args.attackers,
                            seed=args.seed, output=lambda: lines)  # fmt: skip
            report = await fuzzer.run()
        finally:
            proc.terminate()
            await proc.wait()
            await pumping
    print(report.summary())
    for line in report.server_failures[:20]:
        print("  " + line.rstrip())
    ok = not (report.server_failures or report.bystander_problems or report.stalls)
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--attackers", type=int, default=12)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra server environment, e.g. PBXWS_SERVER_LEAN_WEBSOCKETS=false",
    )
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
