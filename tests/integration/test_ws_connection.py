"""The WebSocket connection: handshake, refusals, ping/pong and liveness."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp

from tests.conftest import timeout

from .conftest import (
    APP_KEY,
    ApiFactory,
    NodeFactory,
    WsFactory,
    default_app,
    eventually,
)


async def test_connection_established(node: NodeFactory, ws: WsFactory) -> None:
    """The first message carries a \\d+.\\d+ socket id and activity_timeout 30."""
    server = await node()
    client = await ws(server, established=False)
    msg = await client.recv()
    assert msg["event"] == "pusher:connection_established"
    data = json.loads(msg["data"])
    assert re.fullmatch(r"\d+\.\d+", data["socket_id"])
    assert data["activity_timeout"] == 30


async def test_socket_ids_are_unique(node: NodeFactory, ws: WsFactory) -> None:
    """Fifty connections get fifty different socket ids."""
    server = await node()
    clients = [await ws(server) for _ in range(50)]
    assert len({c.socket_id for c in clients}) == 50


async def test_pusher_ping_gets_pong(node: NodeFactory, ws: WsFactory) -> None:
    """pusher:ping is answered with pusher:pong."""
    server = await node()
    client = await ws(server)
    await client.send("pusher:ping", {})
    assert (await client.recv())["event"] == "pusher:pong"


async def test_websocket_ping_frame_gets_pong_frame(
    node: NodeFactory, ws: WsFactory
) -> None:
    """An RFC 6455 ping control frame is answered with a pong frame."""
    server = await node()
    client = await ws(server, autoping=False)
    await client.ws.ping(b"hello")
    msg = await client.ws.receive(timeout=timeout())
    assert msg.type is aiohttp.WSMsgType.PONG
    assert msg.data == b"hello"


async def test_silent_client_is_pinged_then_closed_4201(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A client silent past activity_timeout gets pusher:ping, then 4201 without pong."""
    server = await node(activity_timeout=1, pong_timeout=0.5)
    client = await ws(server)
    assert (await client.recv(wait=timeout(2)))["event"] == "pusher:ping"
    assert await client.closed() == 4201


async def test_client_answering_ping_stays(node: NodeFactory, ws: WsFactory) -> None:
    """A client that answers the server's ping with pusher:pong is kept open."""
    server = await node(activity_timeout=1, pong_timeout=0.5)
    client = await ws(server)
    for _ in range(2):
        assert (await client.recv(wait=timeout(2)))["event"] == "pusher:ping"
        await client.send("pusher:pong", {})
    assert not client.ws.closed
    await client.send("pusher:ping", {})
    assert (await client.expect("pusher:pong"))["event"] == "pusher:pong"


async def test_unknown_key_4001(node: NodeFactory, ws: WsFactory) -> None:
    """An unknown app key gets pusher:error 4001 and close 4001."""
    server = await node()
    client = await ws(server, key="nope", established=False)
    msg = await client.recv()
    assert msg == {
        "event": "pusher:error",
        "data": {"message": "App key nope does not exist.", "code": 4001},
    }
    assert await client.closed() == 4001


async def test_disabled_app_4003(node: NodeFactory, ws: WsFactory) -> None:
    """A disabled app's key is refused with 4003."""
    server = await node(apps=[default_app(enabled=False)])
    client = await ws(server, established=False)
    assert (await client.recv())["data"]["code"] == 4003
    assert await client.closed() == 4003


async def test_connection_quota_4004(node: NodeFactory, ws: WsFactory) -> None:
    """Past max_connections the app refuses with 4004 (Pusher's code, not Soketi's 4100)."""
    server = await node(apps=[default_app(max_connections=2)])
    first = await ws(server)
    second = await ws(server)
    third = await ws(server, established=False)
    assert (await third.recv())["data"]["code"] == 4004
    assert await third.closed() == 4004
    await first.ws.close()
    await eventually(lambda: len(server.runtime.connections) == 1, "first one gone")
    fourth = await ws(server)
    assert {second.socket_id, fourth.socket_id} == set(server.runtime.connections)


async def test_protocol_parameter(node: NodeFactory, ws: WsFactory) -> None:
    """protocol=abc is 4006, protocol=4 is 4007; 7 and a missing one connect."""
    server = await node()
    bad = await ws(server, query="protocol=abc", established=False)
    assert (await bad.recv())["data"]["code"] == 4006
    old = await ws(server, query="protocol=4", established=False)
    assert (await old.recv())["data"]["code"] == 4007
    await ws(server, query="protocol=7&client=js&version=8.4.0&flash=false")
    await ws(server, query="")


async def test_path_prefix(node: NodeFactory, ws: WsFactory) -> None:
    """With path_prefix /ws the endpoint is /ws/app/{key}."""
    server = await node(path_prefix="/ws")
    await ws(server, path="/ws")


async def test_malformed_frames_leave_the_connection_open(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Invalid JSON, wrong types, unknown events and binary frames get pusher:error only."""
    server = await node()
    client = await ws(server)
    for bad in ["nope", "[]", '{"event": 5}', '{"event":"pusher:subscribe","data":7}']:
        await client.ws.send_str(bad)
        msg = await client.recv()
        assert msg["event"] == "pusher:error", bad
    await client.send("pusher:unknown", {})
    assert (await client.recv())["event"] == "pusher:error"
    await client.ws.send_bytes(b"\x00\x01")
    assert "Binary" in (await client.recv())["data"]["message"]
    await client.send("pusher:ping", {})
    assert (await client.recv())["event"] == "pusher:pong"


async def test_oversized_frame_closes_only_that_client(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """A frame over max_message_size closes that socket (1009); others keep working."""
    server = await node(max_message_size=1024)
    victim = await ws(server)
    bystander = await ws(server)
    await bystander.subscribe("news")
    await victim.ws.send_str("x" * 2048)
    assert await victim.closed() == 1009
    status, _ = await api(server).trigger("news", "e", "still here")
    assert status == 200
    assert (await bystander.expect("e"))["data"] == "still here"


async def test_stop_closes_clients_with_4200(node: NodeFactory, ws: WsFactory) -> None:
    """Stopping a node closes its clients with 4200 so they reconnect at once."""
    server = await node()
    client = await ws(server)
    stop = asyncio.create_task(server.stop())
    assert (await client.recv())["data"]["code"] == 4200
    assert await client.closed() == 4200
    await stop


async def test_key_is_case_sensitive(node: NodeFactory, ws: WsFactory) -> None:
    """Keys are compared exactly."""
    server = await node()
    client = await ws(server, key=APP_KEY.upper(), established=False)
    assert (await client.recv())["data"]["code"] == 4001
