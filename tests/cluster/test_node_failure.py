"""Real node processes die or stall; the survivors clean up exactly once."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import RedisServer
from tests.integration.conftest import APP_ID, ApiFactory, WsFactory
from tests.integration.test_ws_channels import join

from .conftest import ClusterFactory
from .test_cluster import quiet

StartProcess = Callable[..., Awaitable[Any]]


def node_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    """Soketi-style environment of a clustered node with default lease settings."""
    return {
        "SOKETI_DEFAULT_APP_ID": APP_ID,
        "SOKETI_ADAPTER_DRIVER": "redis",
        "SOKETI_DB_REDIS_HOST": "127.0.0.1",
        "SOKETI_DB_REDIS_PORT": str(redis.port),
        **extra,
    }


# Lease settings that make a dead node's cleanup take about a second.
FAST_LEASE = {"node_ttl": 1.0, "heartbeat_interval": 0.2}
FAST_LEASE_ENV = {
    "PBXWS_ADAPTER_NODE_TTL": "1.0",
    "PBXWS_ADAPTER_HEARTBEAT_INTERVAL": "0.2",
}


class _Port:
    """What the ws fixture needs of a node: its port."""

    def __init__(self, port: int) -> None:
        self.port = port


async def test_sigkill_removes_members_once(
    redis_server: RedisServer,
    pbxws_process: StartProcess,
    cluster_node: ClusterFactory,
    ws: WsFactory,
    api: ApiFactory,
) -> None:
    """SIGKILL a node: its members are removed once, by one survivor, in bounded time."""
    from pbxws.config import AdapterConfig

    defaults = AdapterConfig(driver="redis")  # node_ttl 5 s, heartbeat 1 s
    survivors = [
        await cluster_node(adapter=defaults),
        await cluster_node(adapter=defaults),
    ]
    victim = await pbxws_process(env=node_env(redis_server))
    observers = [await ws(s) for s in survivors]
    for i, observer in enumerate(observers):
        await join(observer, "presence-org.1", f"obs{i}")
    ghost = await ws(_Port(victim.port))  # type: ignore[arg-type]
    await join(ghost, "presence-org.1", "ghost")
    for observer in observers:
        added = await observer.expect("pusher_internal:member_added")
        while json.loads(added["data"])["user_id"] != "ghost":
            added = await observer.expect("pusher_internal:member_added")
    killed_at = time.monotonic()
    victim.kill(signal.SIGKILL)
    for observer in observers:
        removed = await observer.expect_within("pusher_internal:member_removed", 30)
        assert json.loads(removed["data"]) == {"user_id": "ghost"}
    elapsed = time.monotonic() - killed_at
    print(f"\nSIGKILL -> member_removed on survivors: {elapsed:.2f} s (node_ttl 5 s)")
    for observer in observers:
        await quiet(observer)  # exactly once: nothing more arrived
    status, answer = await api(survivors[0]).call(
        "GET", f"/apps/{APP_ID}/channels/presence-org.1/users"
    )
    assert status == 200, answer
    assert sorted(u["id"] for u in answer["users"]) == ["obs0", "obs1"]


async def test_stalled_node_rejoins_cleanly(
    redis_server: RedisServer,
    pbxws_process: StartProcess,
    cluster_node: ClusterFactory,
    ws: WsFactory,
    api: ApiFactory,
) -> None:
    """A node stalled past its lease is cleaned up, then re-asserts its live sockets."""
    from pbxws.config import AdapterConfig

    survivor = await cluster_node(adapter=AdapterConfig(driver="redis", **FAST_LEASE))
    stalled = await pbxws_process(env=node_env(redis_server, **FAST_LEASE_ENV))
    observer = await ws(survivor)
    await join(observer, "presence-x", "obs")
    sleeper = await ws(_Port(stalled.port))  # type: ignore[arg-type]
    await join(sleeper, "presence-x", "sleeper")
    await observer.expect("pusher_internal:member_added")
    stalled.kill(signal.SIGSTOP)
    removed = await observer.expect_within("pusher_internal:member_removed", 30)
    assert json.loads(removed["data"])["user_id"] == "sleeper"
    stalled.kill(signal.SIGCONT)
    added = await observer.expect_within("pusher_internal:member_added", 30)
    assert json.loads(added["data"])["user_id"] == "sleeper"
    await quiet(observer)
    status, answer = await api(survivor).call(
        "GET", f"/apps/{APP_ID}/channels/presence-x/users"
    )
    assert status == 200, answer
    assert sorted(u["id"] for u in answer["users"]) == ["obs", "sleeper"]
    await sleeper.send("pusher:ping", {})
    assert (await sleeper.expect("pusher:pong"))["event"] == "pusher:pong"
