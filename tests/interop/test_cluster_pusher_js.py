"""pusher-js and Laravel Echo against a cluster of real ``pbxws serve`` processes.

Two nodes share one redis-server; clients are spread over both. What every
surviving subscriber sees is asserted through the official clients.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from tests.conftest import RedisServer


async def _nodes(
    pbxws_process: Any, redis_server: RedisServer, app: Any, n: int
) -> list[Any]:
    env = {
        **app.as_env(),
        "SOKETI_ADAPTER_DRIVER": "redis",
        "SOKETI_DB_REDIS_PORT": str(redis_server.port),
    }
    return [await pbxws_process(env=env) for _ in range(n)]


async def test_presence_and_events_across_nodes(
    node_driver: Any,
    pbxws_process: Any,
    redis_server: RedisServer,
    app: Any,
    python_sdk: Any,
) -> None:
    """Members on two nodes see each other once; an event published on one reaches both."""
    node_driver.app = app
    n1, n2 = await _nodes(pbxws_process, redis_server, app, 2)
    await node_driver.connect(
        "ann", n1.port, auth={"user_id": "1", "user_info": {"n": "Ann"}}
    )
    await node_driver.connect(
        "bob", n2.port, auth={"user_id": "2", "user_info": {"n": "Bob"}}
    )
    await node_driver.connect(
        "bob2", n1.port, auth={"user_id": "2", "user_info": {"n": "Bob"}}
    )
    await node_driver.subscribe("ann", "presence-org.1")
    joined = await node_driver.subscribe("bob", "presence-org.1")
    assert joined["data"]["members"] == {"1": {"n": "Ann"}, "2": {"n": "Bob"}}
    await node_driver.expect(
        client="ann", type="member_added", channel="presence-org.1"
    )
    again = await node_driver.subscribe("bob2", "presence-org.1")
    assert again["data"]["count"] == 2
    await node_driver.sync("ann")
    assert len(node_driver.matching(type="member_added", client="ann")) == 1

    sdk = python_sdk(port=n2.port)  # publish on the other node
    await asyncio.to_thread(
        sdk.trigger, "presence-org.1", "call.initiated", {"call_id": "c1"}
    )
    for client in ("ann", "bob", "bob2"):
        got = await node_driver.expect(
            client=client,
            type="event",
            channel="presence-org.1",
            event="call.initiated",
        )
        assert got["data"] == {"call_id": "c1"}

    await node_driver.send("disconnect", client="bob")
    await node_driver.sync("ann")
    assert not node_driver.matching(type="member_removed", client="ann")
    await node_driver.send("disconnect", client="bob2")
    removed = await node_driver.expect(
        client="ann", type="member_removed", channel="presence-org.1"
    )
    assert removed["data"]["id"] == "2"


async def test_killed_node_members_leave_echo_once(
    node_driver: Any, pbxws_process: Any, redis_server: RedisServer, app: Any
) -> None:
    """SIGKILL a node: Echo's leaving() fires once on the survivor for its user."""
    node_driver.app = app
    survivor, victim = await _nodes(pbxws_process, redis_server, app, 2)
    channel = "presence-org.1"
    await node_driver.connect(
        "stay",
        survivor.port,
        auth={"user_id": "s", "user_info": {"id": "s"}},
        echo=True,
    )
    await node_driver.send("echo_channel", client="stay", kind="join", name="org.1")
    await node_driver.expect(client="stay", type="here", channel=channel)
    await node_driver.connect(
        "gone", victim.port, auth={"user_id": "g", "user_info": {"id": "g"}}, echo=True
    )
    await node_driver.send("echo_channel", client="gone", kind="join", name="org.1")
    joining = await node_driver.expect(client="stay", type="joining", channel=channel)
    assert joining["member"]["id"] == "g", joining
    victim.kill(signal.SIGKILL)
    leaving = await node_driver.expect(
        client="stay", type="leaving", channel=channel, wait=30
    )
    assert leaving["member"]["id"] == "g", leaving
    await node_driver.sync("stay")
    assert len(node_driver.matching(type="leaving", client="stay")) == 1
