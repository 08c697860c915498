"""The official Node server SDK (``pusher`` 5 on npm) against a real ``pbxws serve``.

Each call goes through the SDK's own request signing and returns the HTTP status and the
JSON body the server answered, so the shapes of the answers are checked too.
"""

from __future__ import annotations

import dataclasses

PAYLOAD = {"id": 9, "text": "ünïcödé ✓", "list": [1, None, {"deep": True}]}


async def test_trigger_reaches_pusher_js(driver, server) -> None:
    """sdk.trigger() answers 200 and the event reaches a pusher-js subscriber intact."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "orders")
    res = await driver.sdk(server.port, "trigger", "orders", "created", PAYLOAD)
    assert res["status"] == 200, res
    assert isinstance(res["body"], dict)
    got = await driver.expect(client="a", type="event", event="created")
    assert got["data"] == PAYLOAD


async def test_trigger_to_several_channels(driver, server) -> None:
    """One trigger to several channels delivers once per channel."""
    await driver.connect("a", server.port)
    for channel in ("c1", "c2", "c3"):
        await driver.subscribe("a", channel)
    res = await driver.sdk(
        server.port, "trigger", ["c1", "c2", "c3"], "hello", {"h": 1}
    )
    assert res["status"] == 200, res
    for channel in ("c1", "c2", "c3"):
        await driver.expect(client="a", type="event", channel=channel, event="hello")
    await driver.sync("a")
    assert len(driver.matching(client="a", type="event", event="hello")) == 3


async def test_trigger_with_info_returns_counts(driver, server) -> None:
    """trigger with info=subscription_count / user_count returns the counts."""
    await driver.connect("a", server.port, auth={"user_id": "1", "user_info": {}})
    await driver.connect("b", server.port, auth={"user_id": "2", "user_info": {}})
    for client in ("a", "b"):
        await driver.subscribe(client, "public")
        await driver.subscribe(client, "presence-room")
    res = await driver.sdk(
        server.port, "trigger", "public", "ev", {}, {"info": "subscription_count"}
    )
    assert res["status"] == 200, res
    assert res["body"] == {"channels": {"public": {"subscription_count": 2}}}
    res = await driver.sdk(
        server.port, "trigger", "presence-room", "ev", {}, {"info": "user_count"}
    )
    assert res["status"] == 200, res
    assert res["body"] == {"channels": {"presence-room": {"user_count": 2}}}


async def test_trigger_excludes_socket_id(driver, server) -> None:
    """trigger with socket_id skips that connection and reaches the others."""
    a = await driver.connect("a", server.port)
    await driver.connect("b", server.port)
    for client in ("a", "b"):
        await driver.subscribe(client, "room")
    res = await driver.sdk(
        server.port, "trigger", "room", "ev", {"n": 1}, {"socket_id": a["socket_id"]}
    )
    assert res["status"] == 200, res
    await driver.sdk(server.port, "trigger", "room", "ev", {"n": 2})
    await driver.expect(client="b", type="event", data={"n": 1})
    await driver.expect(client="a", type="event", data={"n": 2})
    assert [e["data"] for e in driver.matching(client="a", type="event")] == [{"n": 2}]


async def test_trigger_batch_delivers_in_order(driver, server) -> None:
    """triggerBatch() answers 200 and delivers every event in order."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "b1")
    await driver.subscribe("a", "b2")
    batch = [
        {"channel": "b1", "name": "one", "data": {"i": 1}},
        {"channel": "b2", "name": "two", "data": {"i": 2}},
        {"channel": "b1", "name": "three", "data": {"i": 3}},
    ]
    res = await driver.sdk(server.port, "triggerBatch", batch)
    assert res["status"] == 200, res
    await driver.expect(client="a", type="event", event="three")
    got = [
        (e["channel"], e["event"]) for e in driver.matching(client="a", type="event")
    ]
    assert got == [("b1", "one"), ("b2", "two"), ("b1", "three")]


async def test_encrypted_trigger_decrypted_by_pusher_js(driver, server) -> None:
    """An event the Node SDK encrypts is decrypted by pusher-js."""
    await driver.connect("a", server.port)
    await driver.subscribe("a", "private-encrypted-box")
    res = await driver.sdk(
        server.port, "trigger", "private-encrypted-box", "sealed", PAYLOAD
    )
    assert res["status"] == 200, res
    got = await driver.expect(client="a", type="event", channel="private-encrypted-box")
    assert got["data"] == PAYLOAD


async def test_get_channels_with_prefix_and_user_count(driver, server) -> None:
    """GET /channels with filter_by_prefix and info=user_count lists user counts."""
    await driver.connect("a", server.port, auth={"user_id": "1", "user_info": {}})
    await driver.connect("b", server.port, auth={"user_id": "1", "user_info": {}})
    for client in ("a", "b"):
        await driver.subscribe(client, "presence-x")
    await driver.subscribe("a", "public-y")
    res = await driver.sdk(
        server.port,
        "get",
        {
            "path": "/channels",
            "params": {"filter_by_prefix": "presence-", "info": "user_count"},
        },
    )
    assert res["status"] == 200, res
    assert res["body"] == {"channels": {"presence-x": {"user_count": 1}}}
    res = await driver.sdk(server.port, "get", {"path": "/channels"})
    assert res["status"] == 200, res
    assert set(res["body"]["channels"]) == {"presence-x", "public-y"}


async def test_get_channel_with_subscription_count(driver, server) -> None:
    """GET /channels/{name}?info=subscription_count reports the connection count."""
    for client in ("a", "b", "c"):
        await driver.connect(client, server.port)
        await driver.subscribe(client, "lobby")
    res = await driver.sdk(
        server.port,
        "get",
        {"path": "/channels/lobby", "params": {"info": "subscription_count"}},
    )
    assert res["status"] == 200, res
    assert res["body"]["occupied"] is True
    assert res["body"]["subscription_count"] == 3


async def test_get_presence_users(driver, server) -> None:
    """GET /channels/{presence}/users returns each user id once."""
    for client, user in (("a", "1"), ("b", "2"), ("c", "2")):
        await driver.connect(
            client, server.port, auth={"user_id": user, "user_info": {}}
        )
        await driver.subscribe(client, "presence-team")
    res = await driver.sdk(
        server.port, "get", {"path": "/channels/presence-team/users"}
    )
    assert res["status"] == 200, res
    assert sorted(u["id"] for u in res["body"]["users"]) == ["1", "2"]


async def test_wrong_secret_gives_401(driver, server, app) -> None:
    """A request signed with the wrong secret is answered 401."""
    wrong = dataclasses.replace(app, secret="wrong-secret")
    res = await driver.sdk(server.port, "trigger", "c", "ev", {}, app=wrong)
    assert res["status"] == 401, res
    res = await driver.sdk(server.port, "get", {"path": "/channels"}, app=wrong)
    assert res["status"] == 401, res


async def test_send_to_user_reaches_signed_in_connections(driver, server) -> None:
    """sendToUser() reaches every connection signed in as that user, and no one else."""
    for client, user in (("a1", "alice"), ("a2", "alice"), ("b", "bob")):
        await driver.connect(client, server.port, auth={"user_id": user})
        await driver.send("signin", client=client)
        await driver.expect(client=client, type="frame", event="pusher:signin_success")
        await driver.expect(
            client=client,
            type="frame",
            event="pusher_internal:subscription_succeeded",
            channel=f"#server-to-user-{user}",
        )
    res = await driver.sdk(server.port, "sendToUser", "alice", "ding", {"to": "alice"})
    assert res["status"] == 200, res
    for client in ("a1", "a2"):
        got = await driver.expect(client=client, type="user_event", event="ding")
        assert got["data"] == {"to": "alice"}
    await driver.sync("b")
    assert not driver.matching(client="b", type="user_event")


async def test_terminate_user_connections(driver, server) -> None:
    """terminateUserConnections() closes that user's connections with 4009 only."""
    for client, user in (("a", "alice"), ("b", "bob")):
        await driver.connect(client, server.port, auth={"user_id": user})
        await driver.send("signin", client=client)
        await driver.expect(client=client, type="frame", event="pusher:signin_success")
    res = await driver.sdk(server.port, "terminateUserConnections", "alice")
    assert res["status"] == 200, res
    closed = await driver.expect(client="a", type="closed")
    assert closed["code"] == 4009, closed
    await driver.expect(client="a", type="state", current="disconnected")
    await driver.sync("b")
    state = await driver.send("state", client="b")
    assert state["state"] == "connected"


async def test_embedded_default_app_serves_without_configuration(
    driver, pbxws_process, app
) -> None:
    """With no config the server serves app-id / app-key / app-secret, like Soketi."""
    plain = await pbxws_process()
    default = dataclasses.replace(app, id="app-id", key="app-key", secret="app-secret")
    driver.app = default
    await driver.connect("a", plain.port, key="app-key")
    await driver.subscribe("a", "private-default")
    res = await driver.sdk(plain.port, "trigger", "private-default", "ev", {"ok": 1})
    assert res["status"] == 200, res
    got = await driver.expect(client="a", type="event", event="ev")
    assert got["data"] == {"ok": 1}
