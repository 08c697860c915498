"""Two apps on one server, same channel names and user ids: nothing crosses.

A key, secret, signature or socket id of one app never reads or writes the
other app's channels, members or users, on the WebSocket side or the HTTP API.
"""

from __future__ import annotations

import json
from typing import Any

from pbxws.protocol.signatures import sign
from pbxws.server import Server

from .conftest import (
    APP_ID,
    APP_KEY,
    APP_SECRET,
    ApiFactory,
    NodeFactory,
    WsClient,
    WsFactory,
    channel_auth,
    default_app,
)
from .test_users import next_watch, quiet, signin
from .test_ws_channels import join, roster

# The second tenant: its own id, key and secret.
ID2, KEY2, SECRET2 = "2", "key-2", "secret-2"


async def two_apps(node: NodeFactory) -> Server:
    """A node serving the default app and a second one, client events on in both."""
    return await node(
        apps=[
            default_app(enable_client_messages=True),
            default_app(id=ID2, key=KEY2, secret=SECRET2, enable_client_messages=True),
        ]
    )


def auth2(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """A valid ``auth`` of the second app."""
    message = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data else "")
    return f"{KEY2}:{sign(SECRET2, message)}"


async def signin2(client: WsClient, user_id: str) -> None:
    """Sign in to the second app."""
    data = json.dumps({"id": user_id})
    auth = f"{KEY2}:{sign(SECRET2, f'{client.socket_id}::user::{data}')}"
    await client.send("pusher:signin", {"auth": auth, "user_data": data})
    await client.expect("pusher:signin_success")


async def test_one_apps_signatures_open_nothing_in_the_other(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Channel and sign-in signatures of app 1 (key, secret or both) fail in app 2."""
    server = await two_apps(node)
    client = await ws(server, key=KEY2)
    ch = "private-shared"
    message = f"{client.socket_id}:{ch}"
    for auth in (
        channel_auth(client.socket_id, ch),  # app 1's key and secret
        f"{KEY2}:{sign(APP_SECRET, message)}",  # app 2's key, app 1's secret
        f"{APP_KEY}:{sign(SECRET2, message)}",  # app 1's key, app 2's secret
    ):
        refused = await client.subscribe(ch, auth=auth)
        assert refused["event"] == "pusher:subscription_error"
        assert refused["data"]["status"] == 401
    ok = await client.subscribe(ch, auth=auth2(client.socket_id, ch))
    assert ok["event"] == "pusher_internal:subscription_succeeded"

    data = '{"id":"u"}'
    stolen = f"{APP_KEY}:{sign(APP_SECRET, f'{client.socket_id}::user::{data}')}"
    await client.send("pusher:signin", {"auth": stolen, "user_data": data})
    assert (await client.recv())["data"]["code"] == 4009
    assert await client.closed() == 4009


async def test_socket_id_of_one_app_signs_nothing_in_the_other(
    node: NodeFactory, ws: WsFactory
) -> None:
    """An app-1 signature made for an app-1 socket is refused to any app-2 socket."""
    server = await two_apps(node)
    victim, thief = await ws(server), await ws(server, key=KEY2)
    ch = "private-shared"
    stolen = channel_auth(victim.socket_id, ch)
    refused = await thief.subscribe(ch, auth=stolen)
    assert refused["data"]["status"] == 401
    # Even re-signed with app 2's secret for the victim's socket id: wrong socket.
    refused = await thief.subscribe(ch, auth=auth2(victim.socket_id, ch))
    assert refused["data"]["status"] == 401


async def test_same_channel_names_stay_apart(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """Events, client events and presence of app 1 never reach app 2's channel."""
    server = await two_apps(node)
    a1, b1 = await ws(server), await ws(server)
    a2, b2 = await ws(server, key=KEY2), await ws(server, key=KEY2)
    await a1.subscribe("news")
    await a2.subscribe("news")
    status, _ = await api(server).trigger("news", "headline", "one")
    assert status == 200
    assert (await a1.expect("headline"))["data"] == "one"

    ch = "presence-room"
    assert roster(await join(a1, ch, "alice"))["count"] == 1
    data = json.dumps({"user_id": "bob"})
    joined = await a2.subscribe(
        ch, auth=auth2(a2.socket_id, ch, data), channel_data=data
    )
    assert roster(joined) == {"ids": ["bob"], "hash": {"bob": None}, "count": 1}
    await join(b1, ch, "carol")
    assert (
        json.loads((await a1.expect("pusher_internal:member_added"))["data"])["user_id"]
        == "carol"
    )
    await b1.send("client-typing", {"t": 1}, channel=ch)
    assert (await a1.expect("client-typing"))["user_id"] == "carol"
    for client in (a2, b2):
        await quiet(client)


async def test_users_of_the_same_id_are_separate(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """send-to-user and terminate_connections of app 1 leave app 2's same user alone."""
    server = await two_apps(node)
    u1, u2 = await ws(server), await ws(server, key=KEY2)
    await signin(u1, "u")
    await signin2(u2, "u")
    for client in (u1, u2):
        ok = await client.subscribe("#server-to-user-u")
        assert ok["event"] == "pusher_internal:subscription_succeeded"
    status, _ = await api(server).trigger("#server-to-user-u", "notice", "for-1")
    assert status == 200
    assert (await u1.expect("notice"))["data"] == "for-1"
    status, _ = await api(server).call(
        "POST", f"/apps/{APP_ID}/users/u/terminate_connections", {}
    )
    assert status == 200
    assert await u1.closed() == 4009
    await quiet(u2)


async def test_watchlists_see_only_their_own_app(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A user signing in to app 2 does not come online for app 1's watchers."""
    server = await two_apps(node)
    watcher, other = await ws(server), await ws(server, key=KEY2)
    await signin(watcher, "w", watchlist=["u"])
    assert await next_watch(watcher) == {"offline": ["u"]}
    await signin2(other, "u")
    await quiet(watcher)


async def api2(
    api: ApiFactory, server: Server, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    """An API call signed with the second app's credentials unless told otherwise."""
    kw.setdefault("key", KEY2)
    kw.setdefault("secret", SECRET2)
    return await api(server).call(method, path, body, **kw)


async def test_http_api_credentials_are_per_app(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """App 1's key or secret is refused on app 2's routes, and the reverse."""
    server = await two_apps(node)
    event = {"name": "e", "channel": "news", "data": "x"}
    for key, secret in ((APP_KEY, APP_SECRET), (KEY2, APP_SECRET), (APP_KEY, SECRET2)):
        for method, path, body in (
            ("POST", f"/apps/{ID2}/events", event),
            ("POST", f"/apps/{ID2}/batch_events", {"batch": [event]}),
            ("GET", f"/apps/{ID2}/channels", None),
            ("GET", f"/apps/{ID2}/channels/news", None),
            ("GET", f"/apps/{ID2}/channels/presence-room/users", None),
            ("POST", f"/apps/{ID2}/users/u/terminate_connections", {}),
        ):
            status, answer = await api2(
                api, server, method, path, body, key=key, secret=secret
            )
            assert status == 401, (key, secret, path, answer)
            assert answer["code"] == 401
    status, _ = await api(server).call(
        "POST", f"/apps/{ID2}/events", event, key=KEY2, secret=APP_SECRET
    )
    assert status == 401
    status, _ = await api(server).call("GET", "/apps/3/channels")
    assert status == 404


async def test_http_api_reads_and_writes_only_its_own_app(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """Queries of app 2 see only app 2's channels and members; its events stay there."""
    server = await two_apps(node)
    c1, c2 = await ws(server), await ws(server, key=KEY2)
    await join(c1, "presence-room", "alice")
    await c1.subscribe("only-in-1")
    data = json.dumps({"user_id": "bob"})
    await c2.subscribe(
        "presence-room",
        auth=auth2(c2.socket_id, "presence-room", data),
        channel_data=data,
    )
    status, answer = await api2(api, server, "GET", f"/apps/{ID2}/channels")
    assert status == 200
    assert answer == {"channels": {"presence-room": {}}}
    status, answer = await api2(
        api, server, "GET", f"/apps/{ID2}/channels/presence-room/users"
    )
    assert answer == {"users": [{"id": "bob"}]}
    status, answer = await api2(
        api,
        server,
        "GET",
        f"/apps/{ID2}/channels/only-in-1",
        params={"info": "subscription_count"},
    )
    assert answer == {"occupied": False, "subscription_count": 0}
    status, _ = await api2(
        api,
        server,
        "POST",
        f"/apps/{ID2}/batch_events",
        {"batch": [{"name": "e2", "channel": "presence-room", "data": "for-2"}]},
    )
    assert status == 200
    assert (await c2.expect("e2"))["data"] == "for-2"
    await quiet(c1)
