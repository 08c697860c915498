"""A drained node's pusher-js clients reconnect elsewhere and lose nothing after.

A tiny TCP proxy plays the load balancer: it sends new connections to node A
until A is drained, then to node B. Every event published after a client's
resubscription on B must reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import RedisServer, timeout


class Proxy:
    """Forwards each new TCP connection to ``self.target`` (a port on loopback)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
        finally:
            dst.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = Proxy(0)
    await p.start()
    yield p
    await p.stop()


async def test_no_event_lost_after_reconnecting_to_another_node(
    node_driver: Any,
    pbxws_process: Any,
    redis_server: RedisServer,
    app: Any,
    proxy: Proxy,
) -> None:
    """After SIGTERM on A, clients come back on B; every event published after that arrives."""
    import pusher

    app = dataclasses.replace(app, id="424242")  # the Python SDK wants a numeric id
    node_driver.app = app
    env = {
        **app.as_env(),
        "SOKETI_ADAPTER_DRIVER": "redis",
        "SOKETI_DB_REDIS_PORT": str(redis_server.port),
        "PBXWS_SERVER_DRAIN_WINDOW": "0.5",
        "SOKETI_SHUTDOWN_GRACE_PERIOD": "3000",
    }
    node_a = await pbxws_process(env=env)
    node_b = await pbxws_process(env=env)
    proxy.target = node_a.port
    names = ["c0", "c1", "c2"]
    for name in names:
        await node_driver.connect(name, proxy.port)
        await node_driver.subscribe(name, "calls")
    sdk = pusher.Pusher(
        app_id=app.id,
        key=app.key,
        secret=app.secret,
        host="127.0.0.1",
        port=node_b.port,
        ssl=False,
    )
    since = node_driver.mark()
    proxy.target = node_b.port  # the load balancer stops sending clients to A
    node_a.kill(signal.SIGTERM)
    for name in names:
        await node_driver.expect(
            client=name, type="frame", event="pusher_internal:subscription_succeeded",
            channel="calls", since=since, wait=timeout(6),
        )  # fmt: skip
    for i in range(20):
        await asyncio.to_thread(sdk.trigger, "calls", "call.initiated", {"n": i})
    for name in names:
        for i in range(20):
            got = await node_driver.expect(
                lambda e, i=i, name=name: (
                    e.get("client") == name
                    and e.get("type") == "event"
                    and e.get("event") == "call.initiated"
                    and e.get("data") == {"n": i}
                ),
                since=since,
            )
            assert got["data"] == {"n": i}
    assert await node_a.wait(timeout(3)) == 0
