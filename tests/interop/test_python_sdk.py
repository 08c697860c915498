"""The official Python server SDK (``pusher`` on PyPI) against a real ``pbxws serve``.

The SDK signs every request (``auth_signature``, ``body_md5`` even on GET); these
tests check that pbxws accepts its signatures and answers its queries in the documented
shapes.
"""

from __future__ import annotations

import asyncio

import pusher.errors
import pytest


async def occupy(driver, server, *subs: tuple[str, str, str | None]) -> None:
    """Connect and subscribe clients: ``(client, channel, presence user id)``."""
    for client, channel, user_id in subs:
        if not driver.matching(type="state", client=client, current="connected"):
            auth = (
                {"user_id": user_id, "user_info": {"u": user_id}} if user_id else None
            )
            await driver.connect(client, server.port, auth=auth)
        await driver.subscribe(client, channel)


async def test_trigger_is_accepted(server, python_sdk) -> None:
    """A signed trigger is answered 200 with a JSON object (the SDK parses the body)."""
    body = await asyncio.to_thread(
        python_sdk().trigger, "nobody-listens", "ev", {"x": 1}
    )
    assert isinstance(body, dict)


async def test_trigger_batch_is_accepted(server, python_sdk) -> None:
    """A signed batch of events is answered 200 with a JSON object."""
    batch = [{"channel": f"c{i}", "name": "ev", "data": {"i": i}} for i in range(10)]
    body = await asyncio.to_thread(python_sdk().trigger_batch, batch)
    assert isinstance(body, dict)


async def test_wrong_secret_is_rejected_with_401(server, python_sdk) -> None:
    """Requests signed with the wrong secret raise PusherBadAuth (HTTP 401)."""
    sdk = python_sdk(secret="not-the-secret")
    with pytest.raises(pusher.errors.PusherBadAuth):
        await asyncio.to_thread(sdk.trigger, "chan", "ev", {"x": 1})
    with pytest.raises(pusher.errors.PusherBadAuth):
        await asyncio.to_thread(sdk.channels_info)


async def test_wrong_key_is_rejected_with_401(server, python_sdk) -> None:
    """Requests with an auth_key that is not the app's are rejected as unauthorized."""
    with pytest.raises(pusher.errors.PusherBadAuth):
        await asyncio.to_thread(python_sdk(key="other-key").channels_info)


async def test_channels_lists_occupied_channels(driver, server, python_sdk) -> None:
    """channels_info lists occupied channels only; filter_by_prefix narrows the list."""
    await occupy(driver, server, ("a", "news", None), ("a", "private-inbox", None))
    sdk = python_sdk()
    everything = await asyncio.to_thread(sdk.channels_info)
    assert set(everything["channels"]) == {"news", "private-inbox"}
    private = await asyncio.to_thread(sdk.channels_info, "private-")
    assert set(private["channels"]) == {"private-inbox"}


async def test_channels_presence_user_count(driver, server, python_sdk) -> None:
    """channels_info with presence- and info=user_count counts unique users."""
    await occupy(
        driver,
        server,
        ("a", "presence-one", "1"),
        ("b", "presence-one", "2"),
        ("c", "presence-one", "2"),  # a second tab of user 2
        ("a", "presence-two", "1"),
        ("a", "public", None),
    )
    got = await asyncio.to_thread(
        python_sdk().channels_info, "presence-", ["user_count"]
    )
    assert got["channels"] == {
        "presence-one": {"user_count": 2},
        "presence-two": {"user_count": 1},
    }


async def test_channel_info_public_subscription_count(
    driver, server, python_sdk
) -> None:
    """channel_info with info=subscription_count counts a channel's connections."""
    await occupy(driver, server, ("a", "room", None), ("b", "room", None))
    sdk = python_sdk()
    got = await asyncio.to_thread(sdk.channel_info, "room", ["subscription_count"])
    assert got["occupied"] is True
    assert got["subscription_count"] == 2
    empty = await asyncio.to_thread(sdk.channel_info, "empty-room")
    assert empty["occupied"] is False


# User 2 is on two sockets: one member, two subscriptions.
TWO_USERS_ON_THREE_SOCKETS = (
    ("a", "presence-room", "1"),
    ("b", "presence-room", "2"),
    ("c", "presence-room", "2"),
)


async def test_channel_info_presence_user_count(driver, server, python_sdk) -> None:
    """channel_info with info=user_count on a presence channel counts unique users."""
    await occupy(driver, server, *TWO_USERS_ON_THREE_SOCKETS)
    got = await asyncio.to_thread(
        python_sdk().channel_info, "presence-room", ["user_count"]
    )
    assert got["occupied"] is True
    assert got["user_count"] == 2


async def test_users_lists_unique_presence_members(driver, server, python_sdk) -> None:
    """users_info lists each presence user once, however many connections they have."""
    await occupy(driver, server, *TWO_USERS_ON_THREE_SOCKETS)
    got = await asyncio.to_thread(python_sdk().users_info, "presence-room")
    assert sorted(u["id"] for u in got["users"]) == ["1", "2"]


async def test_users_of_a_non_presence_channel_is_a_bad_request(
    server, python_sdk
) -> None:
    """users_info on a non-presence channel is refused with 400."""
    with pytest.raises(pusher.errors.PusherBadRequest):
        await asyncio.to_thread(python_sdk().users_info, "public-room")


async def test_python_sdk_channel_auth_accepted_by_server(
    driver, server, python_sdk
) -> None:
    """The Python SDK's authenticate() signs as the Node SDK does, and pbxws agrees."""
    state = await driver.connect("a", server.port)
    sdk = python_sdk()
    py = await asyncio.to_thread(sdk.authenticate, "private-x", state["socket_id"])
    node = await driver.sdk(
        server.port, "authorizeChannel", state["socket_id"], "private-x"
    )
    assert py["auth"] == node["value"]["auth"]
    await driver.subscribe("a", "private-x")  # and the server accepts that signature
