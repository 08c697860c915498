"""Webhooks of a cluster: once per cluster-wide transition, and none lost with a node.

Nodes share one redis-server; the receiver verifies every request with the
official Python SDK (``tests/webhook_receiver``).
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pbxws.config import AdapterConfig, WebhookConfig, WebhookDeliveryConfig
from pbxws.server import Server
from tests.conftest import RedisServer, timeout
from tests.integration.conftest import (
    APP_ID,
    APP_KEY,
    APP_SECRET,
    WsClient,
    WsFactory,
    channel_auth,
    default_app,
)
from tests.integration.test_webhooks import FAST
from tests.integration.test_ws_channels import join
from tests.webhook_receiver import ReceiverFactory

from .conftest import ClusterFactory
from .test_node_failure import (
    FAST_LEASE,
    FAST_LEASE_ENV,
    StartProcess,
    _Port,
    node_env,
)

EVENTS = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]
DELIVERY = {**FAST, "retry_max_delay": 0.5}

HookedNode = Callable[..., Awaitable[Server]]


@pytest.fixture
def hooked_node(cluster_node: ClusterFactory) -> HookedNode:
    """Factory: ``await hooked_node(url, events)`` -> a cluster node with that webhook."""

    async def start(
        url: str | list[str], events: list[str] = EVENTS, **delivery: Any
    ) -> Server:
        urls = [url] if isinstance(url, str) else url
        app = default_app(
            enable_client_messages=True,
            webhooks=[WebhookConfig(url=u, event_types=events) for u in urls],  # type: ignore[arg-type]
        )
        return await cluster_node(
            adapter=AdapterConfig(driver="redis", **FAST_LEASE),
            apps=[app],
            shutdown_grace_period=0.5,
            webhooks=WebhookDeliveryConfig(**{**DELIVERY, **delivery}),
        )

    return start


async def unsubscribe(client: WsClient, channel: str) -> None:
    """Unsubscribe, then ping: the server has handled the unsubscribe."""
    await client.send("pusher:unsubscribe", {"channel": channel})
    await client.send("pusher:ping", {})
    await client.expect("pusher:pong")


async def test_occupied_and_vacated_once_per_cluster_transition(
    hooked_node: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Subscribers on two nodes: one occupied, one vacated; a cross-node flap is hidden."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    n1, n2 = await hooked_node(rec.url()), await hooked_node(rec.url())
    a, b = await ws(n1), await ws(n2)
    await a.subscribe("shared")
    await b.subscribe("shared")
    await unsubscribe(a, "shared")  # b still holds it: nothing
    await unsubscribe(b, "shared")  # vacated on n2, delayed...
    await a.subscribe("shared")  # ...and cancelled from n1
    # Marker: vacated after "shared" would have been; FIFO per endpoint.
    await b.subscribe("marker")
    await unsubscribe(b, "marker")
    await rec.wait_until(
        lambda r: ("channel_vacated", "marker") in r.names(), "marker vacated"
    )
    await unsubscribe(a, "shared")
    await rec.wait_events(4)
    # Nodes hand over independently: order holds per channel, not across them.
    per_channel: dict[str, list[str]] = {}
    for name, channel in rec.names():
        per_channel.setdefault(channel, []).append(name)
    assert per_channel == {
        "shared": ["channel_occupied", "channel_vacated"],
        "marker": ["channel_occupied", "channel_vacated"],
    }
    assert rec.names()[-1] == ("channel_vacated", "shared")


async def test_members_once_per_user_across_nodes(
    hooked_node: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """A user with a tab on each node: one member_added, one member_removed."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    n1 = await hooked_node(rec.url(), ["member_added", "member_removed"])
    n2 = await hooked_node(rec.url(), ["member_added", "member_removed"])
    tab1, tab2 = await ws(n1), await ws(n2)
    await join(tab1, "presence-team", "u1")
    await join(tab2, "presence-team", "u1")
    await unsubscribe(tab1, "presence-team")
    other = await ws(n1)
    await join(other, "presence-team", "u2")
    await unsubscribe(other, "presence-team")  # a marker, on the other node
    await rec.wait_events(3)
    await unsubscribe(tab2, "presence-team")
    await rec.wait_events(4)
    assert rec.names() == [
        ("member_added", "presence-team/u1"),
        ("member_added", "presence-team/u2"),
        ("member_removed", "presence-team/u2"),
        ("member_removed", "presence-team/u1"),
    ]


async def test_killed_node_loses_no_pending_delivery(
    redis_server: RedisServer,
    pbxws_process: StartProcess,
    hooked_node: HookedNode,
    ws: WsFactory,
    receiver: ReceiverFactory,
) -> None:
    """SIGKILL a node mid-request with deliveries queued: a survivor delivers them all.

    The receiver fails the victim's first two attempts and holds its third;
    more events queue behind it. The victim is killed; the survivor removes
    its member (as the node that ran the cleanup), takes the held delivery over
    when its claim runs out, and every event arrives exactly once.
    """
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    rec.plan.extend(["fail", "fail", "hold"])
    hooks = [{"url": rec.url(), "event_types": [*EVENTS, "client_event"]}]
    victim = await pbxws_process(
        env=node_env(
            redis_server,
            SOKETI_DEFAULT_APP_WEBHOOKS=json.dumps(hooks),
            SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES="true",
            **FAST_LEASE_ENV,
            **{f"PBXWS_WEBHOOKS_{k.upper()}": str(v) for k, v in DELIVERY.items()},
        )
    )
    ghost = await ws(_Port(victim.port))  # type: ignore[arg-type]
    await join(ghost, "presence-org", "ghost")
    await rec.wait_until(lambda r: len(r.requests) == 3, "the third attempt, held")
    for i in range(3):
        await ghost.send("client-note", {"i": i}, "presence-org")
    survivor = await hooked_node(rec.url(), [*EVENTS, "client_event"])
    observer = await ws(survivor)
    await join(observer, "presence-org", "obs")
    victim.kill(signal.SIGKILL)
    await victim.wait()
    rec.release()
    events = await rec.wait_events(7, wait=timeout(4))
    described = [
        (e["name"], e["data"]["i"] if "data" in e else e.get("user_id")) for e in events
    ]
    assert described == [
        ("channel_occupied", None),
        ("member_added", "ghost"),
        ("client_event", 0),
        ("client_event", 1),
        ("client_event", 2),
        ("member_added", "obs"),
        ("member_removed", "ghost"),
    ]
    assert max(Counter(e["id"] for e in events).values()) == 1
    statuses = [r.status for r in rec.requests]
    assert statuses[:3] == [500, 500, -1], rec.describe()  # the victim's attempts
    print(f"\nrequests: {statuses}\n{rec.describe()}")


async def test_a_node_without_a_new_webhook_leaves_its_deliveries(
    hooked_node: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Rolling deploy adding a webhook: an old node never drops the new URL's deliveries."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    old_url, new_url = rec.url("/old"), rec.url("/new")
    rec.plan.extend(["fail"])  # the first request (to /new): retried later
    new = await hooked_node([new_url, old_url], retry_initial_delay=0.3)
    old = await hooked_node(old_url, retry_max_delay=0.2)
    client = await ws(new)
    await client.subscribe("deployed")
    await rec.wait_until(lambda r: len(r.requests) == 2, "both first requests")
    await new.stop()  # only the old node is left while /new waits
    # The vacated of the stop reaches /old through the old node: it has been
    # working the queues, and has left /new alone.
    await rec.wait_events(2, "/old")
    assert rec.names("/new") == []
    newer = await hooked_node([new_url, old_url])
    await rec.wait_events(2, "/new")
    assert rec.names("/new") == [
        ("channel_occupied", "deployed"),
        ("channel_vacated", "deployed"),
    ]
    assert rec.names("/old") == [
        ("channel_occupied", "deployed"),
        ("channel_vacated", "deployed"),
    ]
    assert newer.runtime.metrics.app(APP_ID).webhook_events["delivered"] >= 1
    assert "exhausted" not in old.runtime.metrics.app(APP_ID).webhook_events


async def test_events_reported_during_a_redis_outage_arrive_after_it(
    redis_server: RedisServer,
    hooked_node: HookedNode,
    ws: WsFactory,
    receiver: ReceiverFactory,
) -> None:
    """Redis down: client events wait in the bounded intake; Redis back: they arrive."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    node = await hooked_node(rec.url(), ["channel_occupied", "client_event"])
    sender, listener = await ws(node), await ws(node)
    for client in (sender, listener):
        auth = channel_auth(client.socket_id, "private-o")
        await client.subscribe("private-o", auth=auth)
    await rec.wait_events(1)
    redis_server.kill()
    for i in range(3):
        await sender.send("client-n", {"i": i}, "private-o")
        await listener.expect("client-n")  # relayed here while Redis is down
    redis_server.start()  # empty: Redis lost everything
    await rec.wait_until(
        lambda r: sum(e["name"] == "client_event" for e in r.accepted()) == 3,
        "the three client events",
        wait=timeout(3),
    )
    notes = [e["data"]["i"] for e in rec.accepted() if e["name"] == "client_event"]
    assert notes == [0, 1, 2]
    # Redis lost what was announced: the channel may be announced again
    # (receivers see it occupied twice, never vacated while occupied).
    assert {e["name"] for e in rec.accepted()} == {"channel_occupied", "client_event"}
