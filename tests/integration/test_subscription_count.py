"""pusher_internal:subscription_count over real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from pbxws.ws import subscription_count

from .conftest import NodeFactory, WsClient, WsFactory, channel_auth, default_app
from .test_users import quiet
from .test_ws_channels import join

COUNT = "pusher_internal:subscription_count"


async def count_of(client: WsClient, channel: str, value: int) -> float:
    """Wait until ``client`` is told ``channel`` has ``value`` subscriptions.

    Earlier counts are skipped (changes close together may be coalesced).
    Returns the loop time it arrived.
    """
    while True:
        msg = await client.expect(COUNT, channel)
        assert isinstance(msg["data"], str), "data is double-encoded"
        if json.loads(msg["data"]) == {"subscription_count": value}:
            return asyncio.get_running_loop().time()


async def test_counts_follow_subscribes_and_unsubscribes(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Every subscriber of a public or private channel is told the new count."""
    server = await node(apps=[default_app(enable_subscription_count=True)])
    a, b = await ws(server), await ws(server)
    await a.subscribe("news")
    await count_of(a, "news", 1)
    await b.subscribe("news")
    await count_of(a, "news", 2)
    await count_of(b, "news", 2)
    await b.send("pusher:unsubscribe", {"channel": "news"})
    await count_of(a, "news", 1)
    await b.ws.close()
    await quiet(a)

    private = "private-room"
    await a.subscribe(private, auth=channel_auth(a.socket_id, private))
    await count_of(a, private, 1)
    c = await ws(server)
    await c.subscribe(private, auth=channel_auth(c.socket_id, private))
    await count_of(a, private, 2)
    await c.ws.close()  # a closing socket leaves its channels: the count drops
    await count_of(a, private, 1)


async def test_no_counts_on_presence_or_when_disabled(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Presence channels and apps without the switch get no subscription_count."""
    server = await node(
        apps=[
            default_app(enable_subscription_count=True),
            default_app(id="2", key="key-2"),
        ]
    )
    a, b = await ws(server), await ws(server)
    await join(a, "presence-room", "u1")
    await join(b, "presence-room", "u2")
    await a.expect("pusher_internal:member_added")
    plain, plain2 = await ws(server, key="key-2"), await ws(server, key="key-2")
    await plain.subscribe("news")
    await plain2.subscribe("news")
    for client in (a, b, plain, plain2):
        await quiet(client)


async def test_large_channels_get_one_count_per_window(
    node: NodeFactory, ws: WsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the large-channel size, changes inside a window go out once, at its end."""
    monkeypatch.setattr(subscription_count, "LARGE_CHANNEL", 2)
    monkeypatch.setattr(subscription_count, "LARGE_CHANNEL_INTERVAL", 1.0)
    server = await node(apps=[default_app(enable_subscription_count=True)])
    clients = [await ws(server) for _ in range(5)]
    first = clients[0]
    for client in clients[:3]:
        await client.subscribe("big")
    sent_at = await count_of(first, "big", 3)  # the first large count claims a window
    for client in clients[3:]:
        await client.subscribe("big")
    later = await count_of(first, "big", 5)
    assert later - sent_at >= 0.8, "the count waited for the window to end"
    seen: list[int] = []
    await first.send("pusher:ping", {})
    while (msg := await first.recv())["event"] != "pusher:pong":
        if msg["event"] == COUNT:
            seen.append(json.loads(msg["data"])["subscription_count"])
    assert seen == []
