"""Two or more nodes on one Redis behave as one server."""

from __future__ import annotations

import asyncio
import json

from pbxws.config import AdapterConfig
from tests.conftest import RedisServer, timeout
from tests.integration.conftest import (
    APP_ID,
    ApiFactory,
    WsClient,
    WsFactory,
    default_app,
    eventually,
)
from tests.integration.test_ws_channels import join, roster, user_auth

from .conftest import ClusterFactory


async def quiet(client: WsClient) -> None:
    """Assert nothing but our own pong is pending for ``client``."""
    await client.send("pusher:ping", {})
    msg = await client.recv()
    assert msg["event"] == "pusher:pong", msg


async def test_event_reaches_every_node_once(
    cluster_node: ClusterFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """A trigger on one node reaches subscribers on both nodes exactly once."""
    n1, n2 = await cluster_node(), await cluster_node()
    a, b = await ws(n1), await ws(n2)
    await a.subscribe("calls")
    await b.subscribe("calls")
    status, _ = await api(n2).trigger("calls", "call.initiated", "x")
    assert status == 200
    for client in (a, b):
        assert (await client.expect("call.initiated"))["data"] == "x"
        await quiet(client)


async def test_socket_exclusion_across_nodes(
    cluster_node: ClusterFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """socket_id excludes that socket even when it lives on another node."""
    n1, n2 = await cluster_node(), await cluster_node()
    a, b = await ws(n1), await ws(n2)
    await a.subscribe("c")
    await b.subscribe("c")
    await api(n2).trigger("c", "e", "x", socket_id=a.socket_id)
    assert (await b.expect("e"))["data"] == "x"
    await quiet(a)


async def test_socket_ids_are_unique_across_nodes(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """Nodes have different socket-id prefixes."""
    n1, n2 = await cluster_node(), await cluster_node()
    a, b = await ws(n1), await ws(n2)
    assert a.socket_id.split(".")[0] != b.socket_id.split(".")[0]


async def test_presence_is_one_truth(
    cluster_node: ClusterFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """Rosters, member_added and member_removed are cluster-wide and happen once per user."""
    n1, n2 = await cluster_node(), await cluster_node()
    ch = "presence-org.1"
    alice_tab1, alice_tab2 = await ws(n1), await ws(n2)
    observer = await ws(n2)
    assert roster(await join(observer, ch, "obs"))["count"] == 1
    await join(alice_tab1, ch, "alice", {"name": "Alice"})
    added = await observer.expect("pusher_internal:member_added")
    assert json.loads(added["data"])["user_id"] == "alice"
    # Alice's tab on the other node: already a member, nobody is told.
    r = roster(await join(alice_tab2, ch, "alice", {"name": "Alice"}))
    assert r["hash"] == {"obs": None, "alice": {"name": "Alice"}}
    await quiet(observer)
    # Queries from either node see the whole cluster.
    for node in (n1, n2):
        status, answer = await api(node).call(
            "GET", f"/apps/{APP_ID}/channels/{ch}/users"
        )
        assert status == 200, answer
        assert sorted(u["id"] for u in answer["users"]) == ["alice", "obs"]
        status, answer = await api(node).call(
            "GET",
            f"/apps/{APP_ID}/channels/{ch}",
            params={"info": "user_count,subscription_count"},
        )
        assert status == 200, answer
        assert answer == {"occupied": True, "user_count": 2, "subscription_count": 3}
    # First tab leaves: still a member. Second tab leaves: removed once.
    await alice_tab1.ws.close()
    await quiet(observer)
    await alice_tab2.send("pusher:unsubscribe", {"channel": ch})
    removed = await observer.expect("pusher_internal:member_removed")
    assert json.loads(removed["data"]) == {"user_id": "alice"}
    await quiet(observer)


async def test_concurrent_joins_of_one_user_add_once(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """Ten tabs of one user joining at once on two nodes produce one member_added."""
    n1, n2 = await cluster_node(), await cluster_node()
    ch = "presence-race"
    observer = await ws(n1)
    await join(observer, ch, "obs")
    tabs = [await ws(n1 if i % 2 else n2) for i in range(10)]
    await asyncio.gather(*(join(tab, ch, "u") for tab in tabs))
    added = await observer.expect("pusher_internal:member_added")
    assert json.loads(added["data"])["user_id"] == "u"
    await quiet(observer)
    await asyncio.gather(*(tab.ws.close() for tab in tabs))
    removed = await observer.expect("pusher_internal:member_removed")
    assert json.loads(removed["data"])["user_id"] == "u"
    await quiet(observer)


async def test_channels_query_is_cluster_wide(
    cluster_node: ClusterFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """GET /channels lists channels occupied on any node, with total counts."""
    n1, n2 = await cluster_node(), await cluster_node()
    a, b = await ws(n1), await ws(n2)
    await a.subscribe("shared")
    await b.subscribe("shared")
    await b.subscribe("only-b")
    status, answer = await api(n1).call(
        "GET", f"/apps/{APP_ID}/channels", params={"info": "subscription_count"}
    )
    assert status == 200, answer
    assert answer == {
        "channels": {
            "shared": {"subscription_count": 2},
            "only-b": {"subscription_count": 1},
        }
    }


async def test_terminate_across_nodes(
    cluster_node: ClusterFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """terminate_connections on one node closes the user's sockets on another."""
    n1, n2 = await cluster_node(), await cluster_node()
    user = await ws(n1)
    data = '{"id":"9"}'
    await user.send(
        "pusher:signin", {"auth": user_auth(user.socket_id, data), "user_data": data}
    )
    await user.expect("pusher:signin_success")
    status, _ = await api(n2).call(
        "POST", f"/apps/{APP_ID}/users/9/terminate_connections", {}
    )
    assert status == 200
    assert await user.closed() == 4009


async def test_server_to_user_across_nodes(
    cluster_node: ClusterFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """An event to #server-to-user-{id} reaches the user's sockets on every node."""
    n1, n2 = await cluster_node(), await cluster_node()
    tabs = [await ws(n1), await ws(n2)]
    data = '{"id":"5"}'
    for tab in tabs:
        await tab.send(
            "pusher:signin", {"auth": user_auth(tab.socket_id, data), "user_data": data}
        )
        await tab.expect("pusher:signin_success")
        await tab.subscribe("#server-to-user-5")
    await api(n1).trigger("#server-to-user-5", "notice", "hi")
    for tab in tabs:
        assert (await tab.expect("notice"))["data"] == "hi"


async def test_client_events_across_nodes(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """A client event on one node reaches the channel's members on another, with user_id."""
    apps = [default_app(enable_client_messages=True)]
    n1, n2 = await cluster_node(apps=apps), await cluster_node(apps=apps)
    a, b = await ws(n1), await ws(n2)
    await join(a, "presence-r", "ua")
    await join(b, "presence-r", "ub")
    await a.send("client-hi", {"x": 1}, channel="presence-r")
    got = await b.expect("client-hi")
    assert got["user_id"] == "ua"


async def test_cache_channel_across_nodes(
    cluster_node: ClusterFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """The last event of a cache channel published on one node replays on another."""
    n1, n2 = await cluster_node(), await cluster_node()
    await api(n1).trigger("cache-status", "e", "last")
    late = await ws(n2)
    await late.subscribe("cache-status")
    assert (await late.recv())["data"] == "last"


async def test_connection_quota_is_cluster_wide(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """max_connections counts sockets on every node."""
    apps = [default_app(max_connections=2)]
    n1, n2 = await cluster_node(apps=apps), await cluster_node(apps=apps)
    keep = [await ws(n1), await ws(n2)]
    refused = await ws(n2, established=False)
    assert (await refused.recv())["data"]["code"] == 4004
    assert len(keep) == 2


async def test_clean_shutdown_removes_members_at_once(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """A node that stops cleanly takes its members with it: member_removed, once."""
    n1, n2 = await cluster_node(), await cluster_node()
    observer, leaving = await ws(n1), await ws(n2)
    await join(observer, "presence-s", "obs")
    await join(leaving, "presence-s", "bye")
    await observer.expect("pusher_internal:member_added")
    await n2.stop()
    removed = await observer.expect("pusher_internal:member_removed")
    assert json.loads(removed["data"])["user_id"] == "bye"
    await quiet(observer)


async def test_redis_outage_outbox(
    cluster_node: ClusterFactory,
    ws: WsFactory,
    api: ApiFactory,
    redis_server: RedisServer,
) -> None:
    """During an outage: local delivery at once, remote after Redis returns, 503 when full."""
    adapter = AdapterConfig(
        driver="redis", node_ttl=2.0, heartbeat_interval=0.2, outbox_limit=2
    )
    n1, n2 = await cluster_node(adapter=adapter), await cluster_node(adapter=adapter)
    local, remote = await ws(n1), await ws(n2)
    await local.subscribe("feed")
    await remote.subscribe("feed")
    redis_server.kill()
    for i in range(2):
        status, _ = await api(n1).trigger("feed", "e", str(i))
        assert status == 200
        assert (await local.expect("e"))["data"] == str(i)
    status, answer = await api(n1).trigger("feed", "e", "overflow")
    assert status == 503
    assert "Retry" in answer["error"]
    redis_server.start()
    got = [(await remote.expect("e"))["data"] for _ in range(2)]
    assert got == ["0", "1"]
    await eventually(lambda: n1.runtime.adapter.online, "node 1 back online")  # type: ignore[attr-defined]
    status, _ = await api(n1).trigger("feed", "e", "after")
    assert status == 200
    assert (await remote.expect("e"))["data"] == "after"


async def test_presence_survives_redis_restart(
    cluster_node: ClusterFactory,
    ws: WsFactory,
    api: ApiFactory,
    redis_server: RedisServer,
) -> None:
    """After Redis loses its data, nodes re-assert their members without fake events."""
    n1, n2 = await cluster_node(), await cluster_node()
    a, b = await ws(n1), await ws(n2)
    await join(a, "presence-p", "ua")
    await join(b, "presence-p", "ub")
    await a.expect("pusher_internal:member_added")
    redis_server.restart()

    async def users() -> list[str]:
        status, answer = await api(n1).call(
            "GET", f"/apps/{APP_ID}/channels/presence-p/users"
        )
        assert status == 200, answer
        return sorted(u["id"] for u in answer["users"])

    async with asyncio.timeout(timeout(2)):
        while await users() != ["ua", "ub"] or not all(
            n.runtime.adapter.online and not n.runtime.adapter._dirty  # type: ignore[attr-defined]
            for n in (n1, n2)
        ):
            await asyncio.sleep(0.05)
    await quiet(a)
    await quiet(b)


async def test_rate_limits_are_cluster_wide(
    cluster_node: ClusterFactory, api: ApiFactory
) -> None:
    """max_backend_events_per_sec counts publishes on every node together."""
    apps = [default_app(max_backend_events_per_sec=2)]
    n1, n2 = await cluster_node(apps=apps), await cluster_node(apps=apps)
    assert (await api(n1).trigger("a", "e", "x"))[0] == 200
    assert (await api(n2).trigger("a", "e", "x"))[0] == 200
    statuses = {(await api(n).trigger("a", "e", "x"))[0] for n in (n1, n2)}
    assert statuses == {429}


async def test_metrics_show_the_redis_adapter(
    cluster_node: ClusterFactory,
    ws: WsFactory,
    api: ApiFactory,
    redis_server: RedisServer,
) -> None:
    """/metrics reports Redis state, remote deliveries and outages."""
    import aiohttp

    n1, n2 = await cluster_node(), await cluster_node()
    remote = await ws(n2)
    await remote.subscribe("m")
    await api(n1).trigger("m", "e", "x")
    await remote.expect("e")

    async def scrape(node: object) -> str:
        port = node.metrics_port  # type: ignore[attr-defined]
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{port}/metrics") as r,
        ):
            return await r.text()

    text = await scrape(n2)
    assert f'soketi_redis_connected{{port="{n2.port}"}} 1.0' in text
    assert 'soketi_ws_messages_sent_total{app_id="1"' in text
    sent = [
        line
        for line in text.splitlines()
        if line.startswith("soketi_ws_messages_sent_total{")
    ]
    assert any(float(line.rsplit(" ", 1)[1]) >= 2 for line in sent), (
        sent
    )  # sub ok + remote event
    redis_server.kill()
    await eventually(lambda: not n2.runtime.adapter.online, "outage seen")  # type: ignore[attr-defined]
    assert f'soketi_redis_connected{{port="{n2.port}"}} 0.0' in await scrape(n2)
    redis_server.start()  # nodes stop cleanly with Redis back
    await eventually(lambda: n2.runtime.adapter.online, "back online")  # type: ignore[attr-defined]
