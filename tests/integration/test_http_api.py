"""The HTTP API over real HTTP: every route, status code and limit."""

from __future__ import annotations

import json
import time

import aiohttp

from pbxws.config import LimitsConfig

from .conftest import (
    APP_ID,
    ApiFactory,
    NodeFactory,
    WsFactory,
    channel_auth,
    default_app,
)


async def test_trigger_multiple_channels_and_exclusion(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """One publish reaches every listed channel except the excluded socket."""
    server = await node()
    a, b = await ws(server), await ws(server)
    await a.subscribe("one")
    await b.subscribe("two")
    await a.subscribe("two")
    body = {
        "name": "e",
        "channels": ["one", "two"],
        "data": "d",
        "socket_id": a.socket_id,
    }
    status, answer = await api(server).call("POST", f"/apps/{APP_ID}/events", body)
    assert (status, answer) == (200, {})
    assert (await b.expect("e"))["channel"] == "two"
    await a.send("pusher:ping", {})
    assert (await a.recv())["event"] == "pusher:pong"  # a got nothing


async def test_trigger_info(node: NodeFactory, ws: WsFactory, api: ApiFactory) -> None:
    """info=user_count,subscription_count is answered per channel."""
    server = await node()
    client = await ws(server)
    data = '{"user_id":"1"}'
    await client.subscribe(
        "presence-a",
        auth=channel_auth(client.socket_id, "presence-a", data),
        channel_data=data,
    )
    await client.subscribe("pub")
    body = {
        "name": "e",
        "channels": ["presence-a", "pub"],
        "data": "d",
        "info": "user_count,subscription_count",
    }
    status, answer = await api(server).call("POST", f"/apps/{APP_ID}/events", body)
    assert status == 200
    assert answer == {
        "channels": {
            "presence-a": {"user_count": 1, "subscription_count": 1},
            "pub": {"subscription_count": 1},
        }
    }


async def test_batch(node: NodeFactory, ws: WsFactory, api: ApiFactory) -> None:
    """batch_events publishes each event; info answers in request order."""
    server = await node()
    client = await ws(server)
    await client.subscribe("x")
    batch = [
        {"name": "a", "channel": "x", "data": "1"},
        {"name": "b", "channel": "y", "data": "2", "info": "subscription_count"},
    ]
    status, answer = await api(server).call(
        "POST", f"/apps/{APP_ID}/batch_events", {"batch": batch}
    )
    assert status == 200
    assert answer == {"batch": [{}, {"subscription_count": 0}]}
    assert (await client.expect("a"))["data"] == "1"


async def test_channel_queries(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """channels, channel and users answer from the live state."""
    server = await node()
    c1, c2 = await ws(server), await ws(server)
    for client, uid in ((c1, "1"), (c2, "2")):
        data = json.dumps({"user_id": uid})
        await client.subscribe(
            "presence-org.1",
            auth=channel_auth(client.socket_id, "presence-org.1", data),
            channel_data=data,
        )
    await c1.subscribe("calls")
    http = api(server)
    status, answer = await http.call("GET", f"/apps/{APP_ID}/channels")
    assert (status, answer) == (200, {"channels": {"presence-org.1": {}, "calls": {}}})
    status, answer = await http.call(
        "GET",
        f"/apps/{APP_ID}/channels",
        params={"filter_by_prefix": "presence-", "info": "user_count"},
    )
    assert answer == {"channels": {"presence-org.1": {"user_count": 2}}}
    status, answer = await http.call(
        "GET", f"/apps/{APP_ID}/channels", params={"info": "user_count"}
    )
    assert status == 400
    assert "presence-" in answer["error"]
    status, answer = await http.call(
        "GET",
        f"/apps/{APP_ID}/channels/presence-org.1",
        params={"info": "user_count,subscription_count"},
    )
    assert answer == {"occupied": True, "user_count": 2, "subscription_count": 2}
    status, answer = await http.call("GET", f"/apps/{APP_ID}/channels/empty")
    assert answer == {"occupied": False}
    status, answer = await http.call(
        "GET", f"/apps/{APP_ID}/channels/calls", params={"info": "user_count"}
    )
    assert status == 400
    status, answer = await http.call(
        "GET", f"/apps/{APP_ID}/channels/presence-org.1/users"
    )
    assert answer == {"users": [{"id": "1"}, {"id": "2"}]}
    status, answer = await http.call("GET", f"/apps/{APP_ID}/channels/calls/users")
    assert status == 400


async def test_cache_info(node: NodeFactory, api: ApiFactory) -> None:
    """info=cache returns the last event's data and its remaining TTL."""
    server = await node(limits=LimitsConfig(channel_cache_ttl=60))
    http = api(server)
    await http.trigger("cache-x", "e", "last")
    status, answer = await http.call(
        "GET", f"/apps/{APP_ID}/channels/cache-x", params={"info": "cache"}
    )
    assert status == 200
    assert answer["cache"]["data"] == "last"
    assert 55 <= answer["cache"]["ttl"] <= 60


async def test_auth_refusals(node: NodeFactory, api: ApiFactory) -> None:
    """Bad secret, stale timestamp and foreign key are 401 with a JSON reason."""
    server = await node()
    http = api(server)
    path = f"/apps/{APP_ID}/channels"
    status, answer = await http.call("GET", path, secret="wrong")
    assert status == 401
    assert answer["code"] == 401
    assert "signature" in answer["error"]
    status, answer = await http.call("GET", path, timestamp=int(time.time()) - 601)
    assert status == 401
    assert "auth_timestamp" in answer["error"]
    status, _ = await http.call("GET", path, key="other-key")
    assert status == 401


async def test_tampered_body_is_refused(node: NodeFactory, api: ApiFactory) -> None:
    """A body changed after signing fails the body_md5 check."""
    server = await node()
    http = api(server)
    signed = json.dumps({"name": "e", "channel": "c", "data": "1"}).encode()
    status, _ = await http.call("POST", f"/apps/{APP_ID}/events", raw=signed)
    assert status == 200
    sent = signed.replace(b'"1"', b'"2"')
    status, answer = await http.call(
        "POST", f"/apps/{APP_ID}/events", raw=signed, send_instead=sent
    )
    assert status == 401
    assert "signature" in answer["error"]


async def test_unknown_app_and_route(node: NodeFactory, api: ApiFactory) -> None:
    """Unknown app ids and routes are 404 with a JSON body."""
    server = await node()
    http = api(server)
    status, answer = await http.call("GET", "/apps/999/channels")
    assert status == 404
    assert "999" in answer["error"]
    status, answer = await http.call("GET", "/nowhere")
    assert (status, answer["code"]) == (404, 404)


async def test_disabled_app_is_403(node: NodeFactory, api: ApiFactory) -> None:
    """A correctly signed request for a disabled app is 403."""
    server = await node(apps=[default_app(enabled=False)])
    status, _ = await api(server).call("GET", f"/apps/{APP_ID}/channels")
    assert status == 403


async def test_limits_are_413(node: NodeFactory, api: ApiFactory) -> None:
    """Payload, channel count and batch size over the limits are 413."""
    server = await node(
        limits=LimitsConfig(
            max_event_payload_in_kb=1,
            max_event_channels_at_once=2,
            max_event_batch_size=1,
        ),
        max_request_size=64 * 1024,
    )
    http = api(server)
    status, answer = await http.trigger("c", "e", "x" * 1025)
    assert status == 413
    assert "1024 bytes" in answer["error"]
    body = {"name": "e", "channels": ["a", "b", "c"], "data": "x"}
    status, _ = await http.call("POST", f"/apps/{APP_ID}/events", body)
    assert status == 413
    batch = {"batch": [{"name": "e", "channel": "a", "data": "x"}] * 2}
    status, _ = await http.call("POST", f"/apps/{APP_ID}/batch_events", batch)
    assert status == 413
    status, answer = await http.trigger("c", "e", "x" * 70_000)
    assert status == 413
    assert answer["code"] == 413


async def test_malformed_body_is_400(node: NodeFactory, api: ApiFactory) -> None:
    """A signed but malformed body is 400 naming what is wrong."""
    server = await node()
    http = api(server)
    status, answer = await http.call("POST", f"/apps/{APP_ID}/events", raw=b"{nope")
    assert status == 400
    assert "Invalid event body" in answer["error"]
    status, answer = await http.call(
        "POST", f"/apps/{APP_ID}/events", {"name": "e", "data": "x"}
    )
    assert status == 400
    assert "no channel" in answer["error"]


async def test_path_prefix_signature(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """With a prefix, SDK signatures over /apps/... (without it) verify."""
    server = await node(path_prefix="/pusher")
    client = await ws(server, path="/pusher")
    await client.subscribe("c")
    body = {"name": "e", "channel": "c", "data": "ok"}
    status, _ = await api(server).call(
        "POST", f"/apps/{APP_ID}/events", body, prefix="/pusher"
    )
    assert status == 200
    assert (await client.expect("e"))["data"] == "ok"


async def test_health_routes(node: NodeFactory) -> None:
    """GET / and /ready answer on the main port; /ready, /health, /usage on metrics."""
    server = await node()
    async with aiohttp.ClientSession() as session:
        for port, path in (
            (server.port, "/"),
            (server.port, "/ready"),
            (server.metrics_port, "/ready"),
            (server.metrics_port, "/health"),
        ):
            async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                assert resp.status == 200, path
        async with session.get(f"http://127.0.0.1:{server.metrics_port}/usage") as resp:
            usage = (await resp.json())["memory"]
        assert usage["used"] > 1_000_000
        assert usage["total"] > usage["used"]
        assert 0 < usage["percent"] < 100


async def test_terminate_connections(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """terminate_connections closes the user's signed-in sockets with 4009, no others."""
    from .test_ws_channels import user_auth

    server = await node()
    user, bystander = await ws(server), await ws(server)
    data = '{"id":"7"}'
    await user.send(
        "pusher:signin", {"auth": user_auth(user.socket_id, data), "user_data": data}
    )
    await user.expect("pusher:signin_success")
    status, answer = await api(server).call(
        "POST", f"/apps/{APP_ID}/users/7/terminate_connections", {}
    )
    assert (status, answer) == (200, {})
    assert await user.closed() == 4009
    await bystander.send("pusher:ping", {})
    assert (await bystander.recv())["event"] == "pusher:pong"


async def test_backend_event_rate_limit(node: NodeFactory, api: ApiFactory) -> None:
    """Past max_backend_events_per_sec (points = channels) the API answers 429 with headers."""
    server = await node(apps=[default_app(max_backend_events_per_sec=3)])
    http = api(server)
    body = {"name": "e", "channels": ["a", "b"], "data": "x"}
    status, _ = await http.call("POST", f"/apps/{APP_ID}/events", body)
    assert status == 200
    status, answer = await http.call("POST", f"/apps/{APP_ID}/events", body)
    assert status == 429
    assert answer["code"] == 429
    assert "per second" in answer["error"]
    async with http.session.post(
        f"{http.base}/apps/{APP_ID}/events", params={"auth_key": "x"}
    ) as resp:
        assert resp.status == 401  # unsigned requests are refused before counting
    status, _ = await http.trigger("c", "e", "x")  # one point still left
    assert status == 200


async def test_rate_limit_headers(node: NodeFactory, api: ApiFactory) -> None:
    """A 429 carries Retry-After, X-RateLimit-Limit and X-RateLimit-Remaining."""
    server = await node(apps=[default_app(max_read_req_per_sec=1)])
    http = api(server)
    status, _ = await http.call("GET", f"/apps/{APP_ID}/channels")
    assert status == 200
    status, _, headers = await http.request("GET", f"/apps/{APP_ID}/channels")
    assert status == 429
    assert headers["X-RateLimit-Limit"] == "1"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["Retry-After"] == "1"
