"""A real webhook receiver for the tests: aiohttp on a free port, SDK-verified.

Every request is checked with the official Python ``pusher`` SDK's
``validate_webhook`` (key, signature over the raw body, ``time_ms`` within five
minutes) and recorded. The receiver can answer 500 to the next n requests,
hold requests without answering, go away (its port refuses connections) and
come back on the same port.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pusher
from aiohttp import web

from tests.conftest import free_port, timeout


@dataclass
class Request:
    """One request as the receiver saw it."""

    # Epoch seconds when it arrived.
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    # What validate_webhook returned: the decoded body, or None if invalid.
    verified: dict[str, Any] | None
    # The status answered; 0 while held, -1 if the sender gave up first.
    status: int = 0

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events of the body."""
        return list(json.loads(self.body)["events"])


@dataclass
class Receiver:
    """Records webhook requests; see the module docstring."""

    app_id: str
    key: str
    secret: str
    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    # Answer 500 to this many more requests.
    fail_next: int = 0
    # Hold requests (answer nothing) while True.
    holding: bool = False
    # What to do with the next requests, one word each: "fail" (500), "hold"
    # (until release()) or "ok"; after the plan, fail_next and holding apply.
    plan: collections.deque[str] = field(default_factory=collections.deque)

    def __post_init__(self) -> None:
        self._sdk = pusher.Pusher(app_id=self.app_id, key=self.key, secret=self.secret)
        self._changed = asyncio.Condition()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        """Listen (again) on :attr:`port`."""
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Go away: the port refuses connections until :meth:`start`."""
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def hold(self) -> None:
        """Hold every request from now on until :meth:`release`."""
        self.holding = True
        self._released.clear()

    def release(self) -> None:
        """Answer held requests (and the next ones) normally."""
        self.holding = False
        self._released.set()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = self._sdk.validate_webhook(
            key=headers.get("X-Pusher-Key", ""),
            signature=headers.get("X-Pusher-Signature", ""),
            body=body.decode(),
        )
        record = Request(time.time(), request.path, headers, body, verified)
        step = self.plan.popleft() if self.plan else ""
        await self._record(record)
        if step == "hold" or (not step and self.holding):
            if step == "hold":
                self._released.clear()
            await self._released.wait()
            transport = request.transport
            if transport is None or transport.is_closing():
                record.status = -1  # the sender gave up: never answered
                await self._record(None)
                return web.Response(status=500)
        if verified is None:
            status = 401
        elif step == "fail":
            status = 500
        elif step:
            status = 200
        elif self.fail_next > 0:
            self.fail_next -= 1
            status = 500
        else:
            status = 200
        record.status = status
        await self._record(None)
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def _record(self, record: Request | None) -> None:
        async with self._changed:
            if record is not None:
                self.requests.append(record)
            self._changed.notify_all()

    # --- what arrived -----------------------------------------------------------

    def accepted(self, path: str | None = None) -> list[dict[str, Any]]:
        """Events of the requests answered 200, in arrival order."""
        return [
            e
            for r in self.requests
            if r.status == 200 and (path is None or r.path == path)
            for e in r.events
        ]

    def names(self, path: str | None = None) -> list[tuple[str, str]]:
        """(name, channel) of the accepted events, plus user_id when there is one."""
        return [
            (e["name"], e["channel"] + (f"/{e['user_id']}" if "user_id" in e else ""))
            for e in self.accepted(path)
        ]

    async def wait_until(
        self, condition: Callable[[Receiver], bool], what: str, wait: float = 0
    ) -> None:
        """Wait until ``condition(self)`` holds (``wait`` s, default one timeout)."""
        try:
            async with asyncio.timeout(wait or timeout()), self._changed:
                await self._changed.wait_for(lambda: condition(self))
        except TimeoutError:
            raise AssertionError(
                f"{what}: not within {wait or timeout()} s; got {self.describe()}"
            ) from None

    async def wait_events(
        self, n: int, path: str | None = None, wait: float = 0
    ) -> list[dict[str, Any]]:
        """Wait until ``n`` events were accepted (at ``path``); return them all."""
        await self.wait_until(
            lambda r: len(r.accepted(path)) >= n, f"{n} accepted events", wait
        )
        return self.accepted(path)

    def describe(self) -> str:
        """Every request, for failure messages."""
        return "\n".join(
            f"  {r.at:.3f} {r.path} -> {r.status} "
            f"{'ok' if r.verified else 'INVALID'} {r.body.decode()}"
            for r in self.requests
        )

    def check_all_verified(self) -> None:
        """Every request passed the SDK's validate_webhook."""
        bad = [r for r in self.requests if r.verified is None]
        assert not bad, f"requests failing validate_webhook:\n{self.describe()}"


ReceiverFactory = Callable[..., Any]


@contextlib.asynccontextmanager
async def receivers() -> AsyncIterator[ReceiverFactory]:
    """``async with receivers() as receiver``: ``await receiver(app_id, key, secret)``.

    On exit every receiver is stopped, and every request it got must have
    passed the SDK's validation. Test modules wrap it in a ``receiver`` fixture.
    """
    started: list[Receiver] = []

    async def start(app_id: str, key: str, secret: str) -> Receiver:
        rec = Receiver(app_id, key, secret)
        await rec.start()
        started.append(rec)
        return rec

    try:
        yield start
    finally:
        for rec in started:
            await rec.stop()
    for rec in started:
        rec.check_all_verified()
