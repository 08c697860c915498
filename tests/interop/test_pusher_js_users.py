"""pusher-js signin(), pusher.user and its watchlist, enforced sign-in and
subscription counts, against a real ``pbxws serve`` (Node SDK on the server side)."""

from __future__ import annotations

from typing import Any

import pytest


async def test_watchlist_online_then_offline(driver, server) -> None:
    """pusher.user.watchlist: offline at first, online on sign-in, offline on leaving."""
    await driver.connect(
        "watcher", server.port, auth={"user_id": "w", "watchlist": ["bob", "carol"]}
    )
    await driver.send("signin", client="watcher")
    first = await driver.expect(client="watcher", type="watchlist", name="offline")
    assert sorted(first["user_ids"]) == ["bob", "carol"]
    await driver.connect("bob", server.port, auth={"user_id": "bob"})
    await driver.send("signin", client="bob")
    online = await driver.expect(client="watcher", type="watchlist", name="online")
    assert online["user_ids"] == ["bob"]
    since = driver.mark()
    await driver.send("disconnect", client="bob")
    offline = await driver.expect(
        client="watcher", type="watchlist", name="offline", since=since
    )
    assert offline["user_ids"] == ["bob"]


async def test_watchlist_of_more_than_100_ids(driver, server) -> None:
    """A watchlist over 100 ids: signin succeeds, error 4302, the first 100 watched."""
    ids = [str(i) for i in range(120)]
    await driver.connect("w", server.port, auth={"user_id": "w", "watchlist": ids})
    await driver.send("signin", client="w")
    await driver.expect(client="w", type="frame", event="pusher:signin_success")
    error = await driver.expect(client="w", type="error")
    assert "4302" in str(error["error"]), error
    offline = await driver.expect(client="w", type="watchlist", name="offline")
    assert offline["user_ids"] == ids[:100]
    state = await driver.send("state", client="w")
    assert state["state"] == "connected"
    assert state["user_data"]["id"] == "w"


async def test_terminated_user_goes_offline_for_watchers(driver, server) -> None:
    """The Node SDK's terminateUserConnections takes the user offline for watchers."""
    await driver.connect(
        "watcher", server.port, auth={"user_id": "w", "watchlist": ["t"]}
    )
    await driver.send("signin", client="watcher")
    await driver.expect(client="watcher", type="watchlist", name="offline")
    await driver.connect("t", server.port, auth={"user_id": "t"})
    await driver.send("signin", client="t")
    await driver.expect(client="watcher", type="watchlist", name="online")
    since = driver.mark()
    res = await driver.sdk(server.port, "terminateUserConnections", "t")
    assert res["status"] == 200, res
    closed = await driver.expect(client="t", type="closed")
    assert closed["code"] == 4009
    await driver.expect(client="watcher", type="watchlist", name="offline", since=since)


async def test_send_to_user_reaches_user_bind_on_every_tab(driver, server) -> None:
    """sendToUser() reaches pusher.user.bind() of each tab signed in as the user."""
    for tab in ("tab1", "tab2"):
        await driver.connect(tab, server.port, auth={"user_id": "u", "user_info": {}})
        await driver.send("signin", client=tab)
        await driver.expect(
            client=tab,
            type="frame",
            event="pusher_internal:subscription_succeeded",
            channel="#server-to-user-u",
        )
    res = await driver.sdk(server.port, "sendToUser", "u", "ring", {"n": 1})
    assert res["status"] == 200, res
    for tab in ("tab1", "tab2"):
        got = await driver.expect(client=tab, type="user_event", event="ring")
        assert got["data"] == {"n": 1}


@pytest.fixture
async def strict_server(pbxws_process: Any, app: Any) -> Any:
    """A server whose app requires sign-in within 1 s and sends subscription counts."""
    return await pbxws_process(
        env={
            **app.as_env(),
            "SOKETI_DEFAULT_APP_USER_AUTHENTICATION": "true",
            "SOKETI_USER_AUTHENTICATION_TIMEOUT": "1000",
            "PBXWS_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT": "true",
        }
    )


async def test_unauthenticated_pusher_js_is_closed_4009_and_stays_off(
    driver, strict_server
) -> None:
    """Without signin() pusher-js is closed with 4009 and does not reconnect."""
    await driver.connect("lazy", strict_server.port)
    connected = driver.mark()
    await driver.connect("good", strict_server.port, auth={"user_id": "g"})
    await driver.send("signin", client="good")
    await driver.expect(client="good", type="frame", event="pusher:signin_success")
    closed = await driver.expect(client="lazy", type="closed")
    assert closed["code"] == 4009, closed
    await driver.expect(client="lazy", type="state", current="disconnected")
    error = await driver.expect(client="lazy", type="error")
    assert "not authorized within timeout" in str(error["error"]), error
    await driver.sync("good")
    state = await driver.send("state", client="good")
    assert state["state"] == "connected"
    assert not driver.matching(
        client="lazy", type="state", current="connecting", since=connected
    )


async def test_private_subscription_counts_as_authorization(
    driver, strict_server
) -> None:
    """A private-channel subscription in time keeps pusher-js connected."""
    await driver.connect("a", strict_server.port)
    await driver.subscribe("a", "private-inbox")
    await driver.connect("late", strict_server.port)
    await driver.expect(client="late", type="closed")  # the one that did nothing
    await driver.sync("a")
    assert (await driver.send("state", client="a"))["state"] == "connected"


async def test_subscription_count_reaches_pusher_js(driver, strict_server) -> None:
    """pusher-js emits pusher:subscription_count with the channel's count."""
    for name in ("a", "b"):
        await driver.connect(name, strict_server.port, auth={"user_id": name})
        await driver.send("signin", client=name)
        await driver.expect(client=name, type="frame", event="pusher:signin_success")
    await driver.subscribe("a", "news")
    first = await driver.expect(client="a", type="subscription_count", channel="news")
    assert first["data"] == {"subscription_count": 1}
    await driver.subscribe("b", "news")
    await driver.expect(
        client="a",
        type="subscription_count",
        channel="news",
        data={"subscription_count": 2},
    )
    await driver.expect(
        client="b",
        type="subscription_count",
        channel="news",
        data={"subscription_count": 2},
    )
