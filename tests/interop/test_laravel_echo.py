"""Laravel Echo 2 (``broadcaster: 'pusher'``) against a real ``pbxws serve``.

Echo is configured as a Laravel app's ``echo.js`` is (``authEndpoint``); events come
from the Python SDK the way Laravel's broadcaster sends them (``App\\Events\\...``).
"""

from __future__ import annotations

import asyncio
from typing import Any

ANN = {"id": 1, "name": "Ann"}
BOB = {"id": 2, "name": "Bob"}


async def echo_client(driver, server, name, user=None, **auth) -> None:
    """Connect a Laravel Echo client; ``user`` is the Laravel user (id, user_info)."""
    if user is not None:
        auth = {"user_id": str(user["id"]), "user_info": user, **auth}
    await driver.connect(name, server.port, echo=True, auth=auth)


async def test_echo_listen_on_public_channel(driver, server, python_sdk) -> None:
    """Echo.channel().listen() receives a namespaced Laravel event and a .raw one."""
    await echo_client(driver, server, "a")
    await driver.send(
        "echo_channel",
        client="a",
        kind="channel",
        name="orders",
        listen=["OrderShipped", ".raw-event"],
    )
    await driver.expect(client="a", type="echo_subscribed", channel="orders")
    sdk = python_sdk()
    await asyncio.to_thread(
        sdk.trigger, "orders", "App\\Events\\OrderShipped", {"order": 7}
    )
    await asyncio.to_thread(sdk.trigger, "orders", "raw-event", {"raw": True})
    got = await driver.expect(client="a", type="echo_event", event="OrderShipped")
    assert got["data"] == {"order": 7}
    got = await driver.expect(client="a", type="echo_event", event=".raw-event")
    assert got["data"] == {"raw": True}


async def echo_receives(
    driver: Any,
    sdk: Any,
    *,
    kind: str,
    name: str,
    channel: str,
    event: str,
    data: dict[str, Any],
) -> None:
    """Client "a" listens to ``event`` on an Echo channel; the SDK's trigger arrives."""
    await driver.send(
        "echo_channel", client="a", kind=kind, name=name, listen=[f".{event}"]
    )
    await driver.expect(client="a", type="echo_subscribed", channel=channel)
    await asyncio.to_thread(sdk.trigger, channel, event, data)
    got = await driver.expect(client="a", type="echo_event", event=f".{event}")
    assert got["data"] == data


async def test_echo_private_channel_with_dots(driver, server, python_sdk) -> None:
    """Echo.private('App.Models.User.1') authorizes and receives events."""
    await echo_client(driver, server, "a", ANN)
    await echo_receives(
        driver,
        python_sdk(),
        kind="private",
        name="App.Models.User.1",
        channel="private-App.Models.User.1",
        event="updated",
        data={"email": "a@b.c"},
    )


async def test_echo_error_callback_on_rejected_signature(driver, server) -> None:
    """Echo's .error() fires with status 401 when the server rejects the signature."""
    await echo_client(driver, server, "a", ANN, secret="wrong-secret")
    await driver.send("echo_channel", client="a", kind="private", name="orders")
    error = await driver.expect(client="a", type="echo_error", channel="private-orders")
    assert error["data"]["status"] == 401, error
    assert not driver.matching(client="a", type="echo_subscribed")


async def test_echo_presence_here_joining_leaving(driver, server) -> None:
    """Echo.join() reports here() with both users, then joining/leaving once each."""
    await echo_client(driver, server, "ann", ANN)
    await driver.send("echo_channel", client="ann", kind="join", name="room.1")
    here = await driver.expect(client="ann", type="here", channel="presence-room.1")
    assert here["members"] == [ANN]

    await echo_client(driver, server, "bob", BOB)
    await driver.send("echo_channel", client="bob", kind="join", name="room.1")
    here = await driver.expect(client="bob", type="here", channel="presence-room.1")
    assert sorted(here["members"], key=lambda m: m["id"]) == [ANN, BOB]
    joining = await driver.expect(client="ann", type="joining")
    assert joining["member"] == BOB

    await driver.send("echo_leave", client="bob", name="room.1")
    leaving = await driver.expect(client="ann", type="leaving")
    assert leaving["member"] == BOB
    await driver.sync("ann")
    assert len(driver.matching(client="ann", type="joining")) == 1
    assert len(driver.matching(client="ann", type="leaving")) == 1
    assert not driver.matching(client="bob", type="joining")


async def test_echo_presence_two_tabs_join_and_leave_once(driver, server) -> None:
    """One user in two tabs is one member: one joining, leaving after both go."""
    await echo_client(driver, server, "ann", ANN)
    await driver.send("echo_channel", client="ann", kind="join", name="office")
    await driver.expect(client="ann", type="here")
    for tab in ("bob1", "bob2"):
        await echo_client(driver, server, tab, BOB)
        await driver.send("echo_channel", client=tab, kind="join", name="office")
        here = await driver.expect(client=tab, type="here")
        assert sorted(here["members"], key=lambda m: m["id"]) == [ANN, BOB]
    await driver.sync("ann")
    assert [e["member"] for e in driver.matching(client="ann", type="joining")] == [BOB]

    await driver.send("echo_disconnect", client="bob1")
    await driver.expect(client="bob1", type="state", current="disconnected")
    await driver.send("echo_leave", client="bob2", name="office")
    leaving = await driver.expect(client="ann", type="leaving")
    assert leaving["member"] == BOB
    await driver.sync("ann")
    assert len(driver.matching(client="ann", type="leaving")) == 1


async def test_echo_presence_without_user_info(driver, server) -> None:
    """Echo.join() works when the auth endpoint sends no user_info (as Laravel may)."""
    await echo_client(driver, server, "a", user_id="5")
    await echo_client(driver, server, "b", user_id="6")
    await driver.send("echo_channel", client="a", kind="join", name="quiet")
    await driver.expect(client="a", type="here")
    await driver.send("echo_channel", client="b", kind="join", name="quiet")
    here = await driver.expect(client="b", type="here")
    assert len(here["members"]) == 2
    await driver.expect(client="a", type="joining")


async def test_echo_encrypted_private_channel(driver, server, python_sdk) -> None:
    """Echo.encryptedPrivate() decrypts an event encrypted by the Python SDK."""
    await echo_client(driver, server, "a", ANN)
    await echo_receives(
        driver,
        python_sdk(),
        kind="encryptedPrivate",
        name="vault",
        channel="private-encrypted-vault",
        event="opened",
        data={"code": "1234"},
    )


async def test_echo_whisper_between_two_clients(driver, server) -> None:
    """A whisper on a private channel reaches the other client's listenForWhisper."""
    for name, user in (("ann", ANN), ("bob", BOB)):
        await echo_client(driver, server, name, user)
        await driver.send(
            "echo_channel",
            client=name,
            kind="private",
            name="chat.1",
            listen_for_whisper=["typing"],
        )
        await driver.expect(client=name, type="echo_subscribed")
    await driver.send(
        "echo_whisper",
        client="ann",
        kind="private",
        name="chat.1",
        event="typing",
        data=ANN,
    )
    got = await driver.expect(client="bob", type="echo_whisper", event="typing")
    assert got["data"] == ANN
    await driver.sync("ann")
    assert not driver.matching(client="ann", type="echo_whisper")


async def test_echo_whisper_on_presence_channel(driver, server) -> None:
    """A whisper on a presence channel reaches the other member with the sender id."""
    for name, user in (("ann", ANN), ("bob", BOB)):
        await echo_client(driver, server, name, user)
        await driver.send(
            "echo_channel",
            client=name,
            kind="join",
            name="team",
            listen_for_whisper=["wave"],
        )
        await driver.expect(client=name, type="here")
    await driver.send(
        "echo_whisper",
        client="bob",
        kind="join",
        name="team",
        event="wave",
        data={"to": 1},
    )
    got = await driver.expect(client="ann", type="echo_whisper", event="wave")
    assert got["data"] == {"to": 1}
    frame = await driver.expect(client="ann", type="frame", event="client-wave")
    assert frame["user_id"] == "2"


async def test_echo_socket_id_excluded_by_to_others(driver, server, python_sdk) -> None:
    """Broadcasting with the Echo socket id (Laravel's toOthers()) skips that client."""
    await echo_client(driver, server, "me", ANN)
    await echo_client(driver, server, "other", BOB)
    for name in ("me", "other"):
        await driver.send(
            "echo_channel", client=name, kind="channel", name="feed", listen=[".posted"]
        )
        await driver.expect(client=name, type="echo_subscribed")
    state = await driver.send("state", client="me")
    sdk = python_sdk()
    await asyncio.to_thread(sdk.trigger, "feed", "posted", {"n": 1}, state["socket_id"])
    await asyncio.to_thread(sdk.trigger, "feed", "posted", {"n": 2})
    await driver.expect(client="other", type="echo_event", data={"n": 1})
    await driver.expect(client="me", type="echo_event", data={"n": 2})
    assert [e["data"] for e in driver.matching(client="me", type="echo_event")] == [
        {"n": 2}
    ]


async def test_echo_notification_on_user_channel(driver, server, python_sdk) -> None:
    """Echo's .notification() receives a Laravel BroadcastNotificationCreated event."""
    await echo_client(driver, server, "a", ANN)
    await driver.send(
        "echo_channel",
        client="a",
        kind="private",
        name="App.Models.User.1",
        notification=True,
    )
    await driver.expect(client="a", type="echo_subscribed")
    note = {"id": "9b1d", "type": "App\\Notifications\\InvoicePaid", "amount": 5}
    await asyncio.to_thread(
        python_sdk().trigger,
        "private-App.Models.User.1",
        "Illuminate\\Notifications\\Events\\BroadcastNotificationCreated",
        note,
    )
    got = await driver.expect(client="a", type="echo_notification")
    assert got["data"] == note
