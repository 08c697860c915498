"""Signed-in users, watchlists and subscription counts across nodes on one Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pbxws.config import AdapterConfig
from tests.conftest import RedisServer, timeout
from tests.integration.conftest import WsFactory, default_app, eventually
from tests.integration.test_subscription_count import count_of
from tests.integration.test_users import next_watch, signin

from .conftest import ClusterFactory
from .test_cluster import quiet
from .test_node_failure import FAST_LEASE, FAST_LEASE_ENV, _Port, node_env

StartProcess = Callable[..., Awaitable[Any]]


async def test_watchlist_is_cluster_wide(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """Online once the first tab on any node signs in; offline after the last one."""
    n1, n2 = await cluster_node(), await cluster_node()
    watcher = await ws(n1)
    await signin(watcher, "w", watchlist=["bob"])
    assert await next_watch(watcher) == {"offline": ["bob"]}
    tab1 = await ws(n2)
    await signin(tab1, "bob")
    assert await next_watch(watcher) == {"online": ["bob"]}
    tab2 = await ws(n1)
    await signin(tab2, "bob")
    await tab1.ws.close()  # bob still has a tab on the other node
    await quiet(tab2)
    await quiet(watcher)
    late = await ws(n2)  # a watcher arriving now, on the other node, sees bob online
    await signin(late, "l", watchlist=["bob"])
    assert await next_watch(late) == {"online": ["bob"]}
    await tab2.ws.close()
    assert await next_watch(watcher) == {"offline": ["bob"]}
    assert await next_watch(late) == {"offline": ["bob"]}
    await quiet(watcher)


async def test_concurrent_signins_on_two_nodes_announce_once(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """Two tabs signing in at the same moment on two nodes: one online event."""
    n1, n2 = await cluster_node(), await cluster_node()
    watchers = [await ws(n1), await ws(n2)]
    for i, watcher in enumerate(watchers):
        await signin(watcher, f"w{i}", watchlist=["u"])
        assert await next_watch(watcher) == {"offline": ["u"]}
    tabs = [await ws(n1), await ws(n2)]
    await asyncio.gather(*(signin(tab, "u") for tab in tabs))
    for watcher in watchers:
        assert await next_watch(watcher) == {"online": ["u"]}
        await quiet(watcher)


async def test_dead_nodes_users_go_offline(
    redis_server: RedisServer,
    pbxws_process: StartProcess,
    cluster_node: ClusterFactory,
    ws: WsFactory,
) -> None:
    """SIGKILL the node a user is signed in on: survivors' watchers see it offline."""
    survivor = await cluster_node(adapter=AdapterConfig(driver="redis", **FAST_LEASE))
    victim = await pbxws_process(env=node_env(redis_server, **FAST_LEASE_ENV))
    watcher = await ws(survivor)
    await signin(watcher, "w", watchlist=["ghost"])
    assert await next_watch(watcher) == {"offline": ["ghost"]}
    ghost = await ws(_Port(victim.port))  # type: ignore[arg-type]
    await signin(ghost, "ghost")
    assert await next_watch(watcher) == {"online": ["ghost"]}
    killed_at = time.monotonic()
    victim.kill(signal.SIGKILL)
    msg = await watcher.expect_within("pusher_internal:watchlist_events", 30)
    assert json.loads(msg["data"]) == {
        "events": [{"name": "offline", "user_ids": ["ghost"]}]
    }
    print(f"\nSIGKILL -> offline on survivors: {time.monotonic() - killed_at:.2f} s")
    await quiet(watcher)


async def test_watchlist_after_redis_loses_its_data(
    cluster_node: ClusterFactory, ws: WsFactory, redis_server: RedisServer
) -> None:
    """Redis restarts empty: users are re-asserted, and a change after it still arrives."""
    n1, n2 = await cluster_node(), await cluster_node()
    watcher = await ws(n1)
    await signin(watcher, "w", watchlist=["a", "b"])
    assert await next_watch(watcher) == {"offline": ["a", "b"]}
    a = await ws(n2)
    await signin(a, "a")
    assert await next_watch(watcher) == {"online": ["a"]}
    adapters: list[Any] = [n1.runtime.adapter, n2.runtime.adapter]
    resyncs = [adapter._resyncs for adapter in adapters]
    redis_server.restart()
    await eventually(
        lambda: all(
            adapter.online and not adapter._dirty and adapter._resyncs > before
            for adapter, before in zip(adapters, resyncs, strict=True)
        ),
        "both nodes resynced",
    )
    late = await ws(n1)  # Redis knows a is online again (re-asserted by n2)
    async with asyncio.timeout(timeout(2)):
        while True:
            await signin(late, "l", watchlist=["a"])
            if await next_watch(late) == {"online": ["a"]}:
                break
            await asyncio.sleep(0.05)
    b = await ws(n2)
    await signin(b, "b")
    msg = await watcher.expect("pusher_internal:watchlist_events")
    while json.loads(msg["data"]) != {
        "events": [{"name": "online", "user_ids": ["b"]}]
    }:
        # Only a flicker of "a" is allowed before (Redis lost everything).
        assert "a" in msg["data"], msg
        msg = await watcher.expect("pusher_internal:watchlist_events")


async def test_subscription_counts_are_cluster_wide(
    cluster_node: ClusterFactory, ws: WsFactory
) -> None:
    """Subscribers on every node get the cluster-wide count."""
    apps = [default_app(enable_subscription_count=True)]
    n1, n2 = await cluster_node(apps=apps), await cluster_node(apps=apps)
    a, b = await ws(n1), await ws(n2)
    await a.subscribe("news")
    await count_of(a, "news", 1)
    await b.subscribe("news")
    await count_of(a, "news", 2)
    await count_of(b, "news", 2)
    await a.ws.close()
    await count_of(b, "news", 1)
