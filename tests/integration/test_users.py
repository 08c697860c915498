"""Signed-in users over real sockets: enforced sign-in and watchlists."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pbxws.protocol.signatures import sign
from tests.conftest import timeout

from .conftest import (
    APP_ID,
    ApiFactory,
    NodeFactory,
    WsClient,
    WsFactory,
    channel_auth,
    default_app,
)
from .test_ws_channels import user_auth

NOT_AUTHORIZED = "Connection not authorized within timeout."


async def signin(client: WsClient, user_id: str, **user_data: Any) -> dict[str, Any]:
    """Sign ``client`` in as ``user_id`` and return pusher:signin_success."""
    data = json.dumps({"id": user_id, **user_data})
    await client.send(
        "pusher:signin", {"auth": user_auth(client.socket_id, data), "user_data": data}
    )
    return await client.expect("pusher:signin_success")


def watch_events(msg: dict[str, Any]) -> dict[str, list[str]]:
    """``{"online": [...], "offline": [...]}`` of one watchlist_events message."""
    assert msg["event"] == "pusher_internal:watchlist_events", msg
    assert "channel" not in msg
    return {e["name"]: e["user_ids"] for e in json.loads(msg["data"])["events"]}


async def next_watch(client: WsClient) -> dict[str, list[str]]:
    """The next watchlist_events ``client`` receives."""
    return watch_events(await client.expect("pusher_internal:watchlist_events"))


async def quiet(client: WsClient) -> None:
    """Nothing but our pong is pending for ``client``."""
    await client.send("pusher:ping", {})
    msg = await client.recv()
    assert msg["event"] == "pusher:pong", msg


# --- enforced user authentication ------------------------------------------------


async def test_silent_connection_closed_4009_after_timeout(
    node: NodeFactory, ws: WsFactory
) -> None:
    """With user authentication on, a socket that neither signs in nor joins is closed."""
    server = await node(
        apps=[default_app(enable_user_authentication=True)],
        user_authentication_timeout=0.3,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    client = await ws(server)
    await client.subscribe("public-news")  # a public channel is not enough
    error = await client.expect("pusher:error")
    assert error["data"] == {"code": 4009, "message": NOT_AUTHORIZED}
    assert await client.closed() == 4009
    assert 0.3 <= loop.time() - started < 0.3 + timeout(0.5)


async def test_signin_or_private_channel_in_time_keeps_the_connection(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Signing in, or a private/presence subscription, stops the clock."""
    server = await node(
        apps=[default_app(enable_user_authentication=True)],
        user_authentication_timeout=0.3,
    )
    signed, private, silent = await ws(server), await ws(server), await ws(server)
    await signin(signed, "u1")
    ok = await private.subscribe(
        "private-a", auth=channel_auth(private.socket_id, "private-a")
    )
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    # The silent socket connected last: when it is closed, the others' deadlines
    # have passed too.
    assert await silent.closed() == 4009
    for client in (signed, private):
        await quiet(client)


async def test_apps_without_user_authentication_are_not_timed_out(
    node: NodeFactory, ws: WsFactory
) -> None:
    """The timeout applies only to apps that enable user authentication."""
    server = await node(
        apps=[
            default_app(),
            default_app(id="2", key="key-2", enable_user_authentication=True),
        ],
        user_authentication_timeout=0.2,
    )
    free, strict = await ws(server), await ws(server, key="key-2")
    assert await strict.closed() == 4009
    await quiet(free)


async def test_failed_signin_does_not_stop_the_clock(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A refused private subscription leaves the socket unauthorized."""
    server = await node(
        apps=[default_app(enable_user_authentication=True)],
        user_authentication_timeout=0.3,
    )
    client = await ws(server)
    bad = await client.subscribe("private-a", auth="app-key:bad")
    assert bad["event"] == "pusher:subscription_error"
    assert await client.closed() == 4009


# --- watchlists ------------------------------------------------------------------


async def test_watchlist_initial_state_then_changes(
    node: NodeFactory, ws: WsFactory
) -> None:
    """The watcher gets current statuses after sign-in, then one event per change."""
    server = await node()
    already = await ws(server)
    await signin(already, "carol")
    watcher = await ws(server)
    await signin(watcher, "alice", watchlist=["bob", "carol"])
    assert await next_watch(watcher) == {"online": ["carol"], "offline": ["bob"]}

    bob_tab1, bob_tab2 = await ws(server), await ws(server)
    await signin(bob_tab1, "bob")
    assert await next_watch(watcher) == {"online": ["bob"]}
    await signin(bob_tab2, "bob")  # a second tab: bob was online already
    await quiet(watcher)
    await bob_tab1.ws.close()
    await quiet(bob_tab2)
    await quiet(watcher)  # bob is still online in the other tab
    await bob_tab2.ws.close()
    assert await next_watch(watcher) == {"offline": ["bob"]}
    await already.ws.close()
    assert await next_watch(watcher) == {"offline": ["carol"]}


async def test_watchlist_of_a_user_watching_itself(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A user on its own watchlist is online from its own sign-in."""
    server = await node()
    client = await ws(server)
    await signin(client, "me", watchlist=["me", 42])
    assert await next_watch(client) == {"online": ["me"], "offline": ["42"]}


async def test_watchlist_over_100_ids_keeps_the_first_100_with_4302(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Extra watchlist ids are dropped with pusher:error 4302; sign-in succeeds."""
    server = await node()
    client = await ws(server)
    ids = [f"u{i}" for i in range(105)]
    await signin(client, "me", watchlist=ids)
    error = await client.recv()
    assert error["event"] == "pusher:error"
    assert error["data"]["code"] == 4302
    assert "100" in error["data"]["message"]
    assert await next_watch(client) == {"offline": ids[:100]}
    over, watched = await ws(server), await ws(server)
    await signin(over, "u104")  # beyond the first 100: not watched
    await signin(watched, "u99")
    assert await next_watch(client) == {"online": ["u99"]}
    await quiet(client)
    assert not client.ws.closed


async def test_terminated_user_goes_offline(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """terminate_connections takes the user offline for its watchers."""
    server = await node()
    watcher, target = await ws(server), await ws(server)
    await signin(watcher, "w", watchlist=["t"])
    assert await next_watch(watcher) == {"offline": ["t"]}
    await signin(target, "t")
    assert await next_watch(watcher) == {"online": ["t"]}
    status, _ = await api(server).call(
        "POST", f"/apps/{APP_ID}/users/t/terminate_connections", {}
    )
    assert status == 200
    assert await target.closed() == 4009
    assert await next_watch(watcher) == {"offline": ["t"]}


async def test_signing_in_again_replaces_the_watchlist(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A second sign-in as the same user watches its new list only."""
    server = await node()
    watcher = await ws(server)
    await signin(watcher, "w", watchlist=["a"])
    assert await next_watch(watcher) == {"offline": ["a"]}
    await signin(watcher, "w", watchlist=["b"])
    assert await next_watch(watcher) == {"offline": ["b"]}
    a, b = await ws(server), await ws(server)
    await signin(a, "a")
    await signin(b, "b")
    assert await next_watch(watcher) == {"online": ["b"]}
    await quiet(watcher)


async def test_watchers_are_per_app(node: NodeFactory, ws: WsFactory) -> None:
    """A user of another app with the same id does not come online here."""
    server = await node(apps=[default_app(), default_app(id="2", key="key-2")])
    watcher = await ws(server)
    await signin(watcher, "w", watchlist=["bob"])
    assert await next_watch(watcher) == {"offline": ["bob"]}
    other = await ws(server, key="key-2")
    data = '{"id":"bob"}'
    await other.send(
        "pusher:signin",
        {
            "auth": f"key-2:{sign('app-secret', f'{other.socket_id}::user::{data}')}",
            "user_data": data,
        },
    )
    await other.expect("pusher:signin_success")
    await quiet(watcher)
