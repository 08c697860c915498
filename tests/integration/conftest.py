"""Integration fixtures: a real pbxws node in the test's loop, real sockets.

``node(...)`` starts :class:`pbxws.server.Server` on free ports with the given
config fields; ``ws(node)`` opens a raw WebSocket client that speaks JSON
frames; ``api(node)`` signs HTTP API requests with an independent, minimal
signer (the SDK tests in ``tests/interop`` use the official ones).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest

from pbxws.config import (
    AdapterConfig,
    AppConfig,
    Config,
    LimitsConfig,
    MetricsConfig,
    RedisConfig,
    ServerConfig,
    WebhookDeliveryConfig,
)
from pbxws.server import Server
from tests.conftest import timeout

APP_ID = "1"
APP_KEY = "app-key"
APP_SECRET = "app-secret"


def default_app(**fields: Any) -> AppConfig:
    """The test app (numeric id: the Python SDK accepts only digits)."""
    return AppConfig(**{"id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, **fields})


def make_config(
    *,
    apps: list[AppConfig] | None = None,
    limits: LimitsConfig | None = None,
    redis_port: int | None = None,
    adapter: AdapterConfig | None = None,
    webhooks: WebhookDeliveryConfig | None = None,
    **server: Any,
) -> Config:
    """A config on free loopback ports with ``server`` fields overridden.

    With ``redis_port`` the node uses the redis adapter on that server.
    """
    adapter = adapter or AdapterConfig(
        driver="redis" if redis_port else "local",
        node_ttl=2.0,
        heartbeat_interval=0.2,
    )
    return Config(
        server=ServerConfig(**{"host": "127.0.0.1", "port": 0, **server}),
        metrics=MetricsConfig(host="127.0.0.1", port=0),
        limits=limits or LimitsConfig(),
        adapter=adapter,
        redis=RedisConfig(host="127.0.0.1", port=redis_port or 6379),
        apps=apps if apps is not None else [default_app()],
        webhooks=webhooks or WebhookDeliveryConfig(),
    )


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds (server-side bookkeeping after a close)."""
    async with asyncio.timeout(timeout()):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


NodeFactory = Callable[..., Awaitable[Server]]


@pytest.fixture(params=["local", "redis"])
def adapter_driver(request: pytest.FixtureRequest) -> str:
    """Every integration test runs once per adapter."""
    return str(request.param)


@pytest.fixture
async def node(
    adapter_driver: str, request: pytest.FixtureRequest
) -> AsyncIterator[NodeFactory]:
    """Factory: ``await node(apps=[...], activity_timeout=1, ...)`` -> started Server.

    With the redis adapter, nodes share the test's own redis-server.
    """
    servers: list[Server] = []
    redis_port = None
    if adapter_driver == "redis":
        redis_port = request.getfixturevalue("redis_server").port

    async def start(config: Config | None = None, **kwargs: Any) -> Server:
        server = Server(config or make_config(redis_port=redis_port, **kwargs))
        await asyncio.wait_for(server.start(), timeout())
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        await asyncio.wait_for(server.stop(), timeout(2))


class WsClient:
    """A raw Pusher client: JSON in, JSON out, nothing hidden."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.socket_id = ""

    async def send(
        self, event: str, data: Any = None, channel: str | None = None
    ) -> None:
        """Send one Pusher message."""
        msg: dict[str, Any] = {"event": event}
        if data is not None:
            msg["data"] = data
        if channel is not None:
            msg["channel"] = channel
        await self.ws.send_str(json.dumps(msg))

    async def recv(self, wait: float | None = None) -> dict[str, Any]:
        """The next text message as JSON; fails on close or timeout."""
        msg = await self.ws.receive(timeout=wait or timeout())
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        return dict(json.loads(msg.data))

    async def expect(self, event: str, channel: str | None = None) -> dict[str, Any]:
        """Skip messages until ``event`` (on ``channel``) arrives."""
        while True:
            msg = await self.recv()
            if msg["event"] == event and (
                channel is None or msg.get("channel") == channel
            ):
                return msg

    async def expect_within(self, event: str, seconds: float) -> dict[str, Any]:
        """Skip messages until ``event`` arrives, waiting up to ``seconds`` in all."""
        async with asyncio.timeout(seconds):
            while True:
                msg = await self.ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                data = dict(json.loads(msg.data))
                if data["event"] == event:
                    return data

    async def closed(self) -> int:
        """Read until the server's close frame; return the code it carries.

        The code is read from the frame, as browsers and pusher-js do: aiohttp's
        client reports 1006 instead when the server drops TCP right after its
        close frame, before the client's reply is written.
        """
        while True:
            msg = await self.ws.receive(timeout=timeout())
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type is aiohttp.WSMsgType.CLOSED:
                return int(self.ws.close_code or 0)

    async def subscribe(
        self, channel: str, *, auth: str | None = None, channel_data: str | None = None
    ) -> dict[str, Any]:
        """Subscribe and return the server's answer for that channel."""
        data: dict[str, Any] = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        await self.send("pusher:subscribe", data)
        while True:
            msg = await self.recv()
            if msg.get("channel") == channel and msg["event"] in (
                "pusher_internal:subscription_succeeded",
                "pusher:subscription_error",
            ):
                return msg


def sign(secret: str, message: str) -> str:
    """Hex HMAC-SHA256, as every Pusher signature."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def channel_auth(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """The ``auth`` value an app's auth endpoint returns."""
    message = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data else "")
    return f"{APP_KEY}:{sign(APP_SECRET, message)}"


def signed_query(
    method: str,
    path: str,
    body: bytes,
    *,
    key: str = APP_KEY,
    secret: str = APP_SECRET,
    timestamp: int | None = None,
    params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The query an SDK sends: ``params`` plus auth fields and the signature.

    Written independently of pbxws's verifier, from the reference (§14.2).
    """
    query = {
        **(params or {}),
        "auth_key": key,
        "auth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "auth_version": "1.0",
    }
    if body:
        query["body_md5"] = hashlib.md5(body).hexdigest()  # noqa: S324 - protocol checksum
    pairs = {k.lower(): v for k, v in query.items()}
    string = "&".join(f"{k}={pairs[k]}" for k in sorted(pairs))
    query["auth_signature"] = sign(secret, f"{method}\n{path}\n{string}")
    return query


WsFactory = Callable[..., Awaitable[WsClient]]


@pytest.fixture
async def ws() -> AsyncIterator[WsFactory]:
    """Factory: ``await ws(server, key=..., query=...)`` -> connected WsClient.

    With ``established=True`` (default) it reads connection_established first.
    """
    session = aiohttp.ClientSession()

    async def connect(
        server: Server,
        *,
        key: str = APP_KEY,
        query: str = "protocol=7&client=js&version=8.4.0&flash=false",
        established: bool = True,
        path: str = "",
        **kwargs: Any,
    ) -> WsClient:
        url = f"ws://127.0.0.1:{server.port}{path}/app/{key}?{query}"
        client = WsClient(await session.ws_connect(url, **kwargs))
        if established:
            msg = await client.recv()
            assert msg["event"] == "pusher:connection_established", msg
            client.socket_id = json.loads(msg["data"])["socket_id"]
        return client

    yield connect
    await session.close()


class Api:
    """Signed HTTP API calls against one node."""

    def __init__(self, session: aiohttp.ClientSession, server: Server) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{server.port}"

    async def call(
        self, method: str, path: str, body: Any = None, **options: Any
    ) -> tuple[int, Any]:
        """Sign ``path`` (without prefix) and send to ``prefix + path``.

        ``options`` are those of :meth:`request`.
        """
        status, answer, _ = await self.request(method, path, body, **options)
        return status, answer

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        key: str = APP_KEY,
        secret: str = APP_SECRET,
        prefix: str = "",
        timestamp: int | None = None,
        raw: bytes | None = None,
        send_instead: bytes | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """Sign ``path`` (without ``prefix``) and send it to ``prefix + path``.

        ``raw`` is the body as bytes (instead of ``body`` as JSON);
        ``send_instead`` sends other bytes than those signed. Returns the
        status, the JSON answer (or text) and the response headers.
        """
        data = (
            raw
            if raw is not None
            else (b"" if body is None else json.dumps(body).encode())
        )
        query = signed_query(
            method, path, data, key=key, secret=secret, timestamp=timestamp,
            params=params,
        )  # fmt: skip
        async with self.session.request(
            method,
            f"{self.base}{prefix}{path}",
            params=query,
            data=(send_instead if send_instead is not None else data) or None,
            headers={"Content-Type": "application/json"},
        ) as resp:
            text = await resp.text()
            try:
                answer: Any = json.loads(text)
            except ValueError:
                answer = text
            return resp.status, answer, dict(resp.headers)

    async def trigger(
        self, channel: str, event: str, data: str, **extra: Any
    ) -> tuple[int, Any]:
        """POST /apps/1/events to one channel."""
        body = {"name": event, "channel": channel, "data": data, **extra}
        return await self.call("POST", f"/apps/{APP_ID}/events", body)


ApiFactory = Callable[[Server], Api]


@pytest.fixture
async def api() -> AsyncIterator[ApiFactory]:
    """Factory: ``api(server)`` -> Api."""
    session = aiohttp.ClientSession()
    yield lambda server: Api(session, server)
    await session.close()
