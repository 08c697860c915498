"""pusher-js 8 (the official browser/Node client) against a real ``pbxws serve``.

Events are published with the official Python SDK; channel authorization goes through a
real HTTP auth endpoint signed by the official Node SDK (see ``node/driver.mjs``).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

PAYLOAD = {
    "id": 42,
    "text": 'héllo wörld ✓ — "quoted" \\ back\\slash </script>',
    "nested": {"list": [1, 2.5, None, True], "empty": {}},
}


def frames(driver: Any, client: str, event: str, **fields: Any) -> list[dict[str, Any]]:
    """Frames ``client`` received with this ``event`` name."""
    return driver.matching(type="frame", client=client, event=event, **fields)


async def test_public_event_from_python_sdk_arrives_intact(
    driver, server, python_sdk
) -> None:
    """An event from the Python SDK reaches a pusher-js subscriber with data intact."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "orders")
    sdk = python_sdk()
    await asyncio.to_thread(sdk.trigger, "orders", "order-shipped", PAYLOAD)
    await asyncio.to_thread(sdk.trigger, "orders", "plain-text", "not json at all")
    got = await driver.expect(
        client="a", type="event", channel="orders", event="order-shipped"
    )
    assert got["data"] == PAYLOAD
    got = await driver.expect(
        client="a", type="event", channel="orders", event="plain-text"
    )
    assert got["data"] == "not json at all"


async def test_connection_established_gives_a_valid_socket_id(driver, server) -> None:
    """pusher-js connects and gets a socket id the SDKs accept (digits.digits)."""
    state = await driver.connect("a", server.port)
    assert state["state"] == "connected"
    left, dot, right = state["socket_id"].partition(".")
    assert dot and left.isdigit() and right.isdigit()


async def test_private_channel_authorized_by_auth_endpoint(
    driver, server, python_sdk
) -> None:
    """A private channel signed by the Node SDK's authorizeChannel is subscribed."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "private-orders.1")
    auth = driver.matching(type="auth_request", client="a", channel="private-orders.1")
    assert [r["status"] for r in auth] == [200]
    await asyncio.to_thread(
        python_sdk().trigger, "private-orders.1", "paid", {"ok": True}
    )
    got = await driver.expect(
        client="a", type="event", channel="private-orders.1", event="paid"
    )
    assert got["data"] == {"ok": True}


async def test_private_channel_wrong_secret_gives_subscription_error_401(
    driver, server
) -> None:
    """A wrong-secret signature gets pusher:subscription_error with status 401."""
    await driver.connect("a", server.port, auth={"secret": "not-the-secret"})
    error = await driver.subscribe("a", "private-orders", expect="subscription_error")
    assert error is not None
    assert error["data"]["status"] == 401, error
    assert error["data"].get("type") == "AuthError", error
    # It is the server's answer (a channel frame), not a failed call to the endpoint.
    await driver.expect(
        client="a",
        type="frame",
        event="pusher:subscription_error",
        channel="private-orders",
    )
    await driver.sync("a")
    assert not driver.matching(type="subscription_succeeded", client="a")
    state = await driver.send("state", client="a")
    assert state["state"] == "connected"


async def test_presence_here_lists_both_users(driver, server) -> None:
    """The second presence subscriber gets both members; the first one member_added."""
    await driver.connect(
        "a", server.port, auth={"user_id": "1", "user_info": {"name": "Ann"}}
    )
    await driver.connect(
        "b", server.port, auth={"user_id": "2", "user_info": {"name": "Bob"}}
    )
    first = await driver.subscribe("a", "presence-room")
    assert first["data"]["count"] == 1
    assert first["data"]["me"] == {"id": "1", "info": {"name": "Ann"}}
    second = await driver.subscribe("b", "presence-room")
    assert second["data"]["count"] == 2
    assert second["data"]["members"] == {"1": {"name": "Ann"}, "2": {"name": "Bob"}}
    assert second["data"]["me"] == {"id": "2", "info": {"name": "Bob"}}
    added = await driver.expect(
        client="a", type="member_added", channel="presence-room"
    )
    assert added["data"] == {"id": "2", "info": {"name": "Bob"}}
    await driver.sync("a", "b")
    assert len(driver.matching(type="member_added", client="a")) == 1
    assert not driver.matching(
        type="member_added", client="b"
    )  # no echo of one's own join


async def test_presence_two_tabs_of_one_user_are_one_member(driver, server) -> None:
    """Two tabs of one user give one member_added and one member_removed, at the end."""
    await driver.connect("watcher", server.port, auth={"user_id": "w", "user_info": {}})
    await driver.subscribe("watcher", "presence-room")
    for tab in ("tab1", "tab2"):
        await driver.connect(
            tab, server.port, auth={"user_id": "7", "user_info": {"n": 7}}
        )
    await driver.subscribe("tab1", "presence-room")
    await driver.expect(client="watcher", type="member_added", channel="presence-room")
    joined = await driver.subscribe("tab2", "presence-room")
    assert joined["data"]["count"] == 2  # "w" and "7", not three
    assert sorted(joined["data"]["ids"]) == ["7", "w"]
    await driver.sync("watcher")
    assert len(driver.matching(type="member_added", client="watcher")) == 1

    await driver.send("disconnect", client="tab1")
    await driver.expect(client="tab1", type="state", current="disconnected")
    users = await driver.sdk(
        server.port, "get", {"path": "/channels/presence-room/users"}
    )
    assert users["status"] == 200
    assert sorted(u["id"] for u in users["body"]["users"]) == ["7", "w"]
    await driver.sync("watcher")
    assert not driver.matching(type="member_removed", client="watcher")

    await driver.send("disconnect", client="tab2")
    removed = await driver.expect(
        client="watcher", type="member_removed", channel="presence-room"
    )
    assert removed["data"]["id"] == "7"
    await driver.sync("watcher")
    assert len(driver.matching(type="member_removed", client="watcher")) == 1


async def test_presence_member_without_user_info(driver, server) -> None:
    """Presence channel_data without user_info (as Laravel may send) is accepted."""
    await driver.connect("a", server.port, auth={"user_id": "3"})
    await driver.connect("b", server.port, auth={"user_id": "4"})
    sub = await driver.subscribe("a", "presence-lobby")
    assert sub["data"]["count"] == 1
    assert sub["data"]["me"] is not None and sub["data"]["me"]["id"] == "3", sub
    sub = await driver.subscribe("b", "presence-lobby")
    assert sorted(sub["data"]["ids"]) == ["3", "4"]
    added = await driver.expect(
        client="a", type="member_added", channel="presence-lobby"
    )
    assert added["data"]["id"] == "4"
    assert added["data"].get("info") in (None, {}), added


async def test_encrypted_channel_python_sdk_event_decrypted_by_pusher_js(
    driver, server, python_sdk
) -> None:
    """An event the Python SDK encrypts is decrypted by pusher-js."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "private-encrypted-vault")
    await asyncio.to_thread(
        python_sdk().trigger, "private-encrypted-vault", "secret", PAYLOAD
    )
    got = await driver.expect(
        client="a", type="event", channel="private-encrypted-vault"
    )
    assert got["event"] == "secret"
    assert got["data"] == PAYLOAD
    raw = await driver.expect(client="a", type="frame", event="secret")
    assert set(raw["data"]) == {
        "nonce",
        "ciphertext",
    }  # the server only relayed ciphertext


async def test_socket_id_excludes_the_triggering_connection(
    driver, server, python_sdk
) -> None:
    """An event triggered with socket_id reaches every subscriber but that socket."""
    a = await driver.connect("a", server.port)
    await driver.connect("b", server.port)
    await driver.subscribe("a", "chat")
    await driver.subscribe("b", "chat")
    sdk = python_sdk()
    await asyncio.to_thread(sdk.trigger, "chat", "said", {"n": 1}, a["socket_id"])
    await asyncio.to_thread(sdk.trigger, "chat", "said", {"n": 2})
    await driver.expect(client="b", type="event", event="said", data={"n": 1})
    await driver.expect(client="a", type="event", event="said", data={"n": 2})
    # Frames on one socket arrive in order: had n=1 been sent to "a", it would be here.
    assert [
        e["data"] for e in driver.matching(client="a", type="event", event="said")
    ] == [{"n": 2}]


async def test_batch_trigger_delivers_every_event(driver, server, python_sdk) -> None:
    """A Python SDK trigger_batch delivers each event to its own channel, in order."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "batch-1")
    await driver.subscribe("a", "private-batch-2")
    batch = [
        {"channel": "batch-1", "name": "first", "data": {"i": 1}},
        {"channel": "private-batch-2", "name": "second", "data": {"i": 2}},
        {"channel": "batch-1", "name": "third", "data": "three"},
    ]
    await asyncio.to_thread(python_sdk().trigger_batch, batch)
    await driver.expect(client="a", type="event", event="third")
    got = [
        (e["channel"], e["event"], e["data"])
        for e in driver.matching(client="a", type="event")
    ]
    assert got == [
        ("batch-1", "first", {"i": 1}),
        ("private-batch-2", "second", {"i": 2}),
        ("batch-1", "third", "three"),
    ]


async def test_unknown_app_key_is_refused_with_4001(driver, server) -> None:
    """Connecting with an unknown app key ends with code 4001 and no reconnection."""
    state = await driver.connect(
        "a",
        server.port,
        key="no-such-key",
        until=("disconnected", "failed", "unavailable"),
    )
    # 4000-4099 is pusher-js's "refused" action: it calls disconnect() and stays
    # "disconnected" (a 41xx/42xx code or a plain close would make it retry instead).
    assert state["state"] == "disconnected"
    error = await driver.expect(client="a", type="error")
    inner = error["error"].get("error", error["error"])  # WebSocketError wraps it
    assert inner["type"] == "PusherError"
    assert inner["data"]["code"] == 4001, error
    assert not driver.matching(type="state", client="a", current="connected")


async def test_client_event_reaches_others_but_not_sender(driver, server) -> None:
    """A client-* event on a private channel reaches the others, not the sender."""
    for name in ("a", "b"):
        await driver.connect(name, server.port)
        await driver.subscribe(name, "private-typing")
    sent = await driver.send(
        "trigger",
        client="a",
        channel="private-typing",
        event="client-typing",
        data={"who": "a"},
    )
    assert sent["sent"] is True
    got = await driver.expect(client="b", type="event", event="client-typing")
    assert got["data"] == {"who": "a"}
    await driver.sync("a")
    assert not driver.matching(client="a", type="event", event="client-typing")


async def test_presence_client_event_carries_sender_user_id(driver, server) -> None:
    """A client event on a presence channel arrives with the sender's user_id."""
    await driver.connect("a", server.port, auth={"user_id": "alice", "user_info": {}})
    await driver.connect("b", server.port, auth={"user_id": "bob", "user_info": {}})
    await driver.subscribe("a", "presence-chat")
    await driver.subscribe("b", "presence-chat")
    await driver.send("bind", client="b", channel="presence-chat", event="client-msg")
    await driver.send(
        "trigger",
        client="a",
        channel="presence-chat",
        event="client-msg",
        data={"t": "hi"},
    )
    got = await driver.expect(client="b", type="bound", event="client-msg")
    assert got["data"] == {"t": "hi"}
    assert got["user_id"] == "alice"


async def test_unsubscribe_stops_delivery(driver, server, python_sdk) -> None:
    """After unsubscribing, a client no longer receives the channel's events."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "news")
    await driver.subscribe("a", "sport")
    await driver.send("unsubscribe", client="a", channel="news")
    await driver.sync("a")
    sdk = python_sdk()
    await asyncio.to_thread(sdk.trigger, "news", "headline", {"n": 1})
    await asyncio.to_thread(sdk.trigger, "sport", "score", {"n": 2})
    await driver.expect(client="a", type="frame", event="score")
    assert not frames(driver, "a", "headline")
    info = await asyncio.to_thread(python_sdk().channel_info, "news")
    assert info["occupied"] is False


async def test_signin_then_send_to_user_from_python_sdk(
    driver, server, python_sdk
) -> None:
    """After signin(), the Python SDK's send_to_user reaches pusher.user.bind()."""
    await driver.connect(
        "a", server.port, auth={"user_id": "u-1", "user_info": {"name": "U"}}
    )
    await driver.send("signin", client="a")
    success = await driver.expect(
        client="a", type="frame", event="pusher:signin_success"
    )
    assert '"u-1"' in success["data"]["user_data"]
    await driver.expect(
        client="a",
        type="frame",
        event="pusher_internal:subscription_succeeded",
        channel="#server-to-user-u-1",
    )
    await asyncio.to_thread(
        python_sdk().send_to_user, "u-1", "notice", {"hello": "u-1"}
    )
    got = await driver.expect(client="a", type="user_event", event="notice")
    assert got["data"] == {"hello": "u-1"}


async def test_signin_with_wrong_secret_is_refused(driver, server) -> None:
    """A sign-in signed with the wrong secret is refused with error 4009."""
    await driver.connect("a", server.port, auth={"user_id": "u-1", "secret": "wrong"})
    await driver.send("signin", client="a")
    error = await driver.expect(
        lambda e: "4009" in str(e.get("error")), client="a", type="error"
    )
    assert error
    assert not frames(driver, "a", "pusher:signin_success")


async def test_watchlist_reports_a_watched_user_coming_online(driver, server) -> None:
    """A watcher gets an online watchlist event when a watched user signs in."""
    await driver.connect("a", server.port, auth={"user_id": "1", "watchlist": ["2"]})
    await driver.send("signin", client="a")
    await driver.expect(client="a", type="frame", event="pusher:signin_success")
    await driver.connect("b", server.port, auth={"user_id": "2"})
    await driver.send("signin", client="b")
    online = await driver.expect(
        lambda e: "2" in e["user_ids"], client="a", type="watchlist", name="online"
    )
    assert online["user_ids"] == ["2"]


async def test_client_events_rejected_when_disabled(driver, pbxws_process) -> None:
    """With client messages off (the default) a client event is refused with 4301."""
    plain = await pbxws_process()  # the embedded default app: client messages disabled
    for name in ("a", "b"):
        await driver.connect(name, plain.port)
        await driver.subscribe(name, "private-quiet")
    await driver.send(
        "trigger", client="a", channel="private-quiet", event="client-x", data={}
    )
    error = await driver.expect(client="a", type="frame", event="pusher:error")
    assert error["data"]["code"] == 4301, error
    await driver.sync("a", "b")
    assert not driver.matching(client="b", type="event", event="client-x")
    state = await driver.send("state", client="a")
    assert state["state"] == "connected"  # 43xx is a message, never a close


async def test_cache_channel_replays_last_event(driver, server, python_sdk) -> None:
    """A new subscriber to a cache channel gets the last event, or cache_miss if none."""
    await driver.connect("early", server.port)
    await driver.subscribe("early", "cache-prices")
    await driver.expect(client="early", type="event", event="pusher:cache_miss")
    await asyncio.to_thread(python_sdk().trigger, "cache-prices", "tick", {"p": 1})
    await asyncio.to_thread(python_sdk().trigger, "cache-prices", "tick", {"p": 2})
    await driver.expect(client="early", type="event", event="tick", data={"p": 2})
    await driver.connect("late", server.port)
    await driver.subscribe("late", "cache-prices")
    got = await driver.expect(client="late", type="event", event="tick")
    assert got["data"] == {"p": 2}
    await driver.sync("late")
    assert not driver.matching(client="late", event="pusher:cache_miss")


async def test_server_shutdown_closes_4200_and_pusher_js_retries(
    driver, server
) -> None:
    """On SIGTERM the server closes sockets with 4200, which pusher-js retries at once."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "news")
    server.kill(signal.SIGTERM)
    closed = await driver.expect(client="a", type="closed")
    assert closed["code"] == 4200, closed
    await driver.expect(
        client="a", type="state", previous="connected", current="connecting"
    )
    assert await server.wait() == 0
