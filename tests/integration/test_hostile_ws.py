"""Hostile frames get an error for their sender only; one socket can't grow without bound."""

from __future__ import annotations

import aiohttp

from pbxws.config import LimitsConfig

from .conftest import NodeFactory, WsFactory, channel_auth, default_app
from .test_users import quiet


async def test_channels_per_connection_are_capped(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Past max_channels_per_connection a subscription gets LimitReached; others are fine."""
    server = await node(limits=LimitsConfig(max_channels_per_connection=3))
    client = await ws(server)
    for i in range(3):
        ok = await client.subscribe(f"c{i}")
        assert ok["event"] == "pusher_internal:subscription_succeeded"
    again = await client.subscribe("c0")  # already subscribed: still confirmed
    assert again["event"] == "pusher_internal:subscription_succeeded"
    refused = await client.subscribe("c3")
    assert refused == {
        "event": "pusher:subscription_error",
        "channel": "c3",
        "data": {
            "type": "LimitReached",
            "error": "This connection is subscribed to 3 channels, its maximum; "
            "unsubscribe from one first.",
            "status": 4100,
        },
    }
    await client.send("pusher:unsubscribe", {"channel": "c1"})
    ok = await client.subscribe("c3")
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    other = await ws(server)  # the cap is per connection
    for i in range(3):
        assert (await other.subscribe(f"c{i}"))["event"].endswith("succeeded")


async def test_per_app_channel_cap_overrides_the_server_default(
    node: NodeFactory, ws: WsFactory
) -> None:
    """An app's max_channels_per_connection wins over [limits]."""
    server = await node(apps=[default_app(max_channels_per_connection=1)])
    client = await ws(server)
    await client.subscribe("a")
    refused = await client.subscribe("b")
    assert refused["data"]["type"] == "LimitReached"


async def test_garbage_frames_get_errors_and_the_socket_stays(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Invalid UTF-8, deep nesting, wrong types and binary frames: pusher:error each."""
    server = await node()
    client = await ws(server)
    deep = "[" * 5000 + "]" * 5000
    for frame in (
        b"\xff\xfe not utf-8",
        b'{"event":"pusher:subscribe","data":{"channel":"\xc0\xaf"}}',
        ('{"event":"x","data":' + deep + "}").encode(),
        b'{"event":42}',
        b'{"event":"pusher:subscribe","data":7}',
        b'{"event":"pusher:subscribe","data":"{\\"channel\\":[1]}"}',
        b"[]",
    ):
        await client.ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
        error = await client.recv()
        assert error["event"] == "pusher:error", (frame, error)
    await client.ws.send_bytes(b"\x00\x01")
    assert (await client.recv())["event"] == "pusher:error"
    await quiet(client)


async def test_invalid_utf8_client_event_is_not_relayed(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A client event whose data is not UTF-8 is refused, not relayed to (and
    breaking) the other subscribers' connections."""
    server = await node(apps=[default_app(enable_client_messages=True)])
    sender, receiver = await ws(server), await ws(server)
    for client in (sender, receiver):
        await client.subscribe(
            "private-a", auth=channel_auth(client.socket_id, "private-a")
        )
    await sender.ws.send_frame(
        b'{"event":"client-x","channel":"private-a","data":{"k":"\xff"}}',
        aiohttp.WSMsgType.TEXT,
    )
    assert (await sender.recv())["event"] == "pusher:error"
    await sender.send("client-x", {"k": "ok"}, channel="private-a")
    relayed = await receiver.recv()
    assert relayed["data"] == {"k": "ok"}
