"""Subscriptions over real sockets: every channel kind and each refusal."""

from __future__ import annotations

import json

from pbxws.config import LimitsConfig

from .conftest import (
    APP_KEY,
    APP_SECRET,
    ApiFactory,
    NodeFactory,
    WsClient,
    WsFactory,
    channel_auth,
    default_app,
    sign,
)


async def test_public_subscribe_and_receive(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """A public subscriber receives a published event with data verbatim."""
    server = await node()
    client = await ws(server)
    ok = await client.subscribe("calls")
    assert ok == {
        "event": "pusher_internal:subscription_succeeded",
        "channel": "calls",
        "data": "{}",
    }
    await api(server).trigger("calls", "call.initiated", '{"call_id":"c1"}')
    msg = await client.expect("call.initiated")
    assert msg == {
        "event": "call.initiated",
        "channel": "calls",
        "data": '{"call_id":"c1"}',
    }


async def test_private_auth(node: NodeFactory, ws: WsFactory) -> None:
    """A right signature subscribes; a wrong one gets a Soketi-shaped 401 error."""
    server = await node()
    client = await ws(server)
    ok = await client.subscribe(
        "private-a", auth=channel_auth(client.socket_id, "private-a")
    )
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    other = await ws(server)
    stolen = channel_auth(client.socket_id, "private-b")  # signed for another socket
    bad = await other.subscribe("private-b", auth=stolen)
    assert bad == {
        "event": "pusher:subscription_error",
        "channel": "private-b",
        "data": {
            "type": "AuthError",
            "error": "The connection is unauthorized.",
            "status": 401,
        },
    }
    missing = await other.subscribe("private-c")
    assert missing["data"]["status"] == 401


async def test_encrypted_channel_needs_auth(node: NodeFactory, ws: WsFactory) -> None:
    """private-encrypted- channels are authorised like private ones."""
    server = await node()
    client = await ws(server)
    name = "private-encrypted-x"
    assert (await client.subscribe(name))["data"]["status"] == 401
    ok = await client.subscribe(name, auth=channel_auth(client.socket_id, name))
    assert ok["event"] == "pusher_internal:subscription_succeeded"


async def test_unanchored_prefix_is_public(node: NodeFactory, ws: WsFactory) -> None:
    """'foo-private-bar' is public: prefixes are anchored."""
    server = await node()
    client = await ws(server)
    ok = await client.subscribe("foo-private-bar")
    assert ok["event"] == "pusher_internal:subscription_succeeded"


async def test_channel_name_rules(node: NodeFactory, ws: WsFactory) -> None:
    """Too long or badly named channels are refused with status 4009."""
    server = await node(limits=LimitsConfig(max_channel_name_length=20))
    client = await ws(server)
    long = await client.subscribe("x" * 21)
    assert long["data"]["status"] == 4009
    assert long["data"]["type"] == "LimitReached"
    bad = await client.subscribe("bad name!")
    assert bad["data"]["status"] == 4009
    ok = await client.subscribe("x" * 20)
    assert ok["event"] == "pusher_internal:subscription_succeeded"


async def join(
    client: WsClient, channel: str, user_id: object, info: object = None
) -> dict[str, object]:
    """Subscribe to a presence channel as ``user_id``."""
    member: dict[str, object] = {"user_id": user_id}
    if info is not None:
        member["user_info"] = info
    data = json.dumps(member)
    return await client.subscribe(
        channel, auth=channel_auth(client.socket_id, channel, data), channel_data=data
    )


def roster(msg: dict[str, object]) -> dict[str, object]:
    """The presence part of a subscription_succeeded."""
    assert msg["event"] == "pusher_internal:subscription_succeeded", msg
    return dict(json.loads(str(msg["data"]))["presence"])


async def test_presence_semantics(node: NodeFactory, ws: WsFactory) -> None:
    """One member per user, member_added/removed once, joiner not told of itself."""
    server = await node()
    alice, alice2, bob = await ws(server), await ws(server), await ws(server)
    ch = "presence-org.1"
    assert roster(await join(alice, ch, 1, {"name": "Alice"})) == {
        "ids": ["1"],
        "hash": {"1": {"name": "Alice"}},
        "count": 1,
    }
    # Bob joins without user_info: tolerated, listed with null.
    bob_roster = roster(await join(bob, ch, "2"))
    assert bob_roster["count"] == 2
    assert bob_roster["hash"] == {"1": {"name": "Alice"}, "2": None}
    added = await alice.expect("pusher_internal:member_added")
    assert json.loads(added["data"]) == {"user_id": "2", "user_info": None}
    # Alice's second tab: no member_added for anyone.
    assert roster(await join(alice2, ch, 1, {"name": "Alice"}))["count"] == 2
    # Alice's first tab leaves: still a member through the second tab.
    await alice.send("pusher:unsubscribe", {"channel": ch})
    await alice2.ws.close()
    removed = await bob.expect("pusher_internal:member_removed")
    assert json.loads(removed["data"]) == {"user_id": "1"}
    # Exactly one member_added (for bob's join it was alice who got it) and one
    # member_removed reached bob: the next message is our own pong.
    await bob.send("pusher:ping", {})
    assert (await bob.recv())["event"] == "pusher:pong"


async def test_presence_refusals(node: NodeFactory, ws: WsFactory) -> None:
    """Bad channel_data, oversized user_info and a full channel are refused."""
    server = await node(
        limits=LimitsConfig(
            max_presence_members_per_channel=1, max_presence_member_size_in_kb=0.1
        )
    )
    client = await ws(server)
    ch = "presence-x"
    data = "not json"
    bad = await client.subscribe(
        ch, auth=channel_auth(client.socket_id, ch, data), channel_data=data
    )
    assert (bad["data"]["type"], bad["data"]["status"]) == ("AuthError", 4009)
    big = await join(client, ch, 1, {"pad": "x" * 200})
    assert big["data"]["status"] == 4301
    assert roster(await join(client, ch, 1))["count"] == 1
    other = await ws(server)
    full = await join(other, ch, 2)
    assert (full["data"]["type"], full["data"]["status"]) == ("LimitReached", 4100)
    # The same user's second tab still fits.
    assert roster(await join(other, ch, 1))["count"] == 1


async def test_cache_channel(node: NodeFactory, ws: WsFactory, api: ApiFactory) -> None:
    """A cache channel answers cache_miss, then replays the last event to newcomers."""
    server = await node()
    first = await ws(server)
    await first.subscribe("cache-calls")
    assert await first.recv() == {
        "event": "pusher:cache_miss",
        "channel": "cache-calls",
    }
    await api(server).trigger("cache-calls", "call.ended", "one")
    await api(server).trigger("cache-calls", "call.ended", "two")
    late = await ws(server)
    await late.subscribe("cache-calls")
    assert await late.recv() == {
        "event": "call.ended",
        "channel": "cache-calls",
        "data": "two",
    }


async def test_client_events(node: NodeFactory, ws: WsFactory) -> None:
    """Client events relay on private/presence, not to the sender, with user_id on presence."""
    server = await node(apps=[default_app(enable_client_messages=True)])
    a, b = await ws(server), await ws(server)
    ch = "presence-room"
    await join(a, ch, "u1")
    await join(b, ch, "u2")
    await a.expect("pusher_internal:member_added")
    await a.send("client-typing", {"t": 1}, channel=ch)
    got = await b.expect("client-typing")
    assert got == {
        "event": "client-typing",
        "channel": ch,
        "data": {"t": 1},
        "user_id": "u1",
    }
    await a.send("pusher:ping", {})
    assert (await a.recv())["event"] == "pusher:pong"  # nothing echoed back first
    # Public channel: refused.
    await a.subscribe("lobby")
    await a.send("client-x", {}, channel="lobby")
    assert (await a.recv())["data"]["code"] == 4301
    # Not subscribed: refused.
    await a.send("client-x", {}, channel="private-other")
    assert (await a.recv())["data"]["code"] == 4301


async def test_client_events_disabled(node: NodeFactory, ws: WsFactory) -> None:
    """Without enable_client_messages a client event gets 4301 and the socket stays."""
    server = await node()
    a = await ws(server)
    await a.subscribe("private-a", auth=channel_auth(a.socket_id, "private-a"))
    await a.send("client-x", {}, channel="private-a")
    err = await a.recv()
    assert err["event"] == "pusher:error"
    assert err["data"]["code"] == 4301
    assert not a.ws.closed


async def test_client_event_rate_limit(node: NodeFactory, ws: WsFactory) -> None:
    """Past max_client_events_per_sec the sender gets 4301 and stays connected."""
    server = await node(
        apps=[default_app(enable_client_messages=True, max_client_events_per_sec=2)]
    )
    a = await ws(server)
    await a.subscribe("private-a", auth=channel_auth(a.socket_id, "private-a"))
    for _ in range(3):
        await a.send("client-x", {}, channel="private-a")
    err = await a.recv()
    assert err["data"]["code"] == 4301
    assert "rate limit" in err["data"]["message"]


def user_auth(socket_id: str, user_data: str) -> str:
    """The ``auth`` of pusher:signin."""
    return f"{APP_KEY}:{sign(APP_SECRET, f'{socket_id}::user::{user_data}')}"


async def test_signin_and_server_to_user(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """Signed-in users may subscribe to their own #server-to-user- channel only."""
    server = await node()
    client = await ws(server)
    user_data = '{"id":"42","user_info":{"name":"x"}}'
    await client.send(
        "pusher:signin",
        {"auth": user_auth(client.socket_id, user_data), "user_data": user_data},
    )
    ok = await client.expect("pusher:signin_success")
    assert json.loads(ok["data"]) == {"user_data": user_data}
    mine = await client.subscribe("#server-to-user-42")
    assert mine["event"] == "pusher_internal:subscription_succeeded"
    theirs = await client.subscribe("#server-to-user-43")
    assert theirs["data"]["status"] == 4009
    status, _ = await api(server).trigger("#server-to-user-42", "notice", "hi")
    assert status == 200
    assert (await client.expect("notice"))["data"] == "hi"


async def test_bad_signin_closes_4009(node: NodeFactory, ws: WsFactory) -> None:
    """A sign-in with a wrong signature is refused with 4009."""
    server = await node()
    client = await ws(server)
    await client.send(
        "pusher:signin", {"auth": f"{APP_KEY}:bad", "user_data": '{"id":"1"}'}
    )
    assert (await client.recv())["data"]["code"] == 4009
    assert await client.closed() == 4009
