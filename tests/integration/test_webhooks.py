"""Webhooks reach a real receiver: signed, filtered, delayed, batched, retried.

Every request is verified by the official Python SDK (``tests/webhook_receiver``);
every test runs on the local adapter (memory store) and on the redis adapter
(Redis store).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from pbxws.config import (
    AppConfig,
    Config,
    MetricsConfig,
    ServerConfig,
    WebhookConfig,
    WebhookDeliveryConfig,
    WebhookFilter,
)
from pbxws.server import Server
from tests.webhook_receiver import ReceiverFactory

from .conftest import (
    APP_ID,
    APP_KEY,
    APP_SECRET,
    NodeFactory,
    WsClient,
    WsFactory,
    channel_auth,
    default_app,
    eventually,
    make_config,
)
from .test_ws_channels import join

ALL = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
]

# Small delays so that the tests run fast; each test says what it needs.
FAST = {
    "removal_delay": 0.3,
    "retry_initial_delay": 0.1,
    "retry_max_delay": 1.0,
    "request_timeout": 2.0,
}

HookedNode = Callable[..., Awaitable[Server]]


def hook(url: str, *events: str, **fields: Any) -> WebhookConfig:
    """A webhook of ``url`` for ``events`` (all of them by default)."""
    return WebhookConfig(url=url, event_types=list(events or ALL), **fields)


@pytest.fixture
def hooked(
    node: NodeFactory, adapter_driver: str, request: pytest.FixtureRequest
) -> HookedNode:
    """Factory: ``await hooked([webhooks], **delivery)`` -> a node of the test app."""
    redis_port = None
    if adapter_driver == "redis":
        redis_port = request.getfixturevalue("redis_server").port

    async def start(
        hooks: list[WebhookConfig],
        app: dict[str, Any] | None = None,
        **delivery: Any,
    ) -> Server:
        apps = [default_app(enable_client_messages=True, webhooks=hooks, **(app or {}))]
        # Receivers stop before the node: a short grace for what is left.
        return await node(
            make_config(
                redis_port=redis_port,
                apps=apps,
                shutdown_grace_period=0.5,
                webhooks=WebhookDeliveryConfig(**{**FAST, **delivery}),
            )
        )

    return start


async def private(client: WsClient, channel: str) -> None:
    """Subscribe ``client`` to private ``channel`` (auth signed here)."""
    ok = await client.subscribe(channel, auth=channel_auth(client.socket_id, channel))
    assert ok["event"] == "pusher_internal:subscription_succeeded", ok


async def unsubscribe(client: WsClient, channel: str) -> None:
    """Unsubscribe, then ping: the server has handled the unsubscribe."""
    await client.send("pusher:unsubscribe", {"channel": channel})
    await client.send("pusher:ping", {})
    await client.expect("pusher:pong")


async def test_occupied_and_vacated_are_signed_for_the_sdk(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Occupied at once, vacated after the delay, each signed, with an id and our headers."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    headers = {"X-Pusher-Key": "forged", "x-pusher-signature": "f", "X-Tenant": "t1"}
    server = await hooked([hook(rec.url(), headers=headers)], removal_delay=0.5)
    client = await ws(server)
    await client.subscribe("calls")
    (occupied,) = await rec.wait_events(1)
    await unsubscribe(client, "calls")
    left = time.time()
    events = await rec.wait_events(2)
    assert [(e["name"], e["channel"]) for e in events] == [
        ("channel_occupied", "calls"),
        ("channel_vacated", "calls"),
    ]
    _, second = rec.requests
    assert second.at - left >= 0.5  # held for the removal delay
    for req in rec.requests:
        assert req.verified is not None  # the SDK accepted key and signature
        assert req.headers["X-Pusher-Key"] == APP_KEY
        assert req.headers["X-Tenant"] == "t1"
        assert req.headers["Content-Type"] == "application/json"
        assert abs(json.loads(req.body)["time_ms"] / 1000 - req.at) < 5
    assert set(occupied) == {"name", "channel", "id"}
    assert occupied["id"] != events[1]["id"]


async def test_flap_within_the_delay_is_suppressed(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory, adapter_driver: str
) -> None:
    """Leave and come back within the delay: no vacated, no second occupied."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked([hook(rec.url(), "channel_occupied", "channel_vacated")])
    client = await ws(server)
    await client.subscribe("flappy")
    await rec.wait_events(1)
    await unsubscribe(client, "flappy")
    await client.subscribe("flappy")  # back within the 0.3 s delay
    # A marker: "marker" vacates after "flappy" would have; when its vacated
    # arrives (FIFO per endpoint), a vacated of "flappy" would have come first.
    await client.subscribe("marker")
    await unsubscribe(client, "marker")
    await rec.wait_until(
        lambda r: ("channel_vacated", "marker") in r.names(), "marker vacated"
    )
    assert rec.names() == [
        ("channel_occupied", "flappy"),
        ("channel_occupied", "marker"),
        ("channel_vacated", "marker"),
    ]
    if adapter_driver == "local":
        # Counted when a delayed vacated is cancelled. (The redis store may
        # get the leave and the return in one handover: nothing to cancel.)
        stats = server.runtime.metrics.app(APP_ID)
        assert stats.webhook_events["suppressed"] == 1


async def test_presence_members_once_per_user(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Two tabs of one user: one member_added; member_removed when the last tab leaves."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked([hook(rec.url(), "member_added", "member_removed")])
    tab1, tab2, other = await ws(server), await ws(server), await ws(server)
    await join(tab1, "presence-room", "u1")
    await join(tab2, "presence-room", "u1")
    await join(other, "presence-room", "u2")
    await rec.wait_events(2)
    await unsubscribe(tab1, "presence-room")
    await unsubscribe(other, "presence-room")
    await rec.wait_events(3)
    await unsubscribe(tab2, "presence-room")
    await rec.wait_events(4)
    assert rec.names() == [
        ("member_added", "presence-room/u1"),
        ("member_added", "presence-room/u2"),
        ("member_removed", "presence-room/u2"),
        ("member_removed", "presence-room/u1"),
    ]


async def test_client_events_name_socket_and_presence_user(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """client_event carries event, data verbatim and socket_id; user_id on presence only."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked([hook(rec.url(), "client_event")])
    sender = await ws(server)
    await private(sender, "private-chat")
    await join(sender, "presence-chat", "u7")
    await sender.send("client-typing", {"who": "me", "n": [1, 2]}, "private-chat")
    await sender.send("client-typing", "plain text", "presence-chat")
    events = await rec.wait_events(2)
    for event in events:
        del event["id"]
    assert events == [
        {
            "name": "client_event",
            "channel": "private-chat",
            "event": "client-typing",
            "data": {"who": "me", "n": [1, 2]},
            "socket_id": sender.socket_id,
        },
        {
            "name": "client_event",
            "channel": "presence-chat",
            "event": "client-typing",
            "data": "plain text",
            "socket_id": sender.socket_id,
            "user_id": "u7",
        },
    ]


async def test_cache_miss(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Subscribing to an empty cache channel sends cache_miss."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked([hook(rec.url(), "cache_miss")])
    client = await ws(server)
    await client.subscribe("cache-prices")
    assert (await client.expect("pusher:cache_miss"))["channel"] == "cache-prices"
    (event,) = await rec.wait_events(1)
    assert (event["name"], event["channel"]) == ("cache_miss", "cache-prices")


async def test_subscription_count(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """An app with subscription counts sends subscription_count as the count changes."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked(
        [hook(rec.url(), "subscription_count")],
        app={"enable_subscription_count": True},
    )
    a, b = await ws(server), await ws(server)
    await a.subscribe("watched")
    await b.subscribe("watched")
    await rec.wait_until(
        lambda r: any(e.get("subscription_count") == 2 for e in r.accepted()),
        "a count of 2",
    )
    for event in rec.accepted():
        assert set(event) == {"name", "channel", "subscription_count", "id"}
        assert (event["name"], event["channel"]) == ("subscription_count", "watched")
    assert rec.accepted()[-1]["subscription_count"] == 2


async def test_each_endpoint_gets_only_what_it_asked_for(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Event types and both channel filters (AND) apply per endpoint (Soketi sends all)."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    rooms = WebhookFilter(
        channel_name_starts_with="presence-", channel_name_ends_with="-room"
    )
    server = await hooked(
        [
            hook(rec.url("/rooms"), "channel_occupied", filter=rooms),
            hook(rec.url("/chat"), "client_event"),
            hook(
                rec.url("/chat"),
                "channel_occupied",
                filter=WebhookFilter(channel_name_ends_with="-chat"),
            ),
        ],
        batching=True,
        batching_duration=0.2,
    )
    client = await ws(server)
    for channel in ("presence-a-room", "presence-b", "x-room"):
        await join(client, channel, "u1")
    await private(client, "private-chat")
    await client.send("client-hi", {}, "private-chat")
    await rec.wait_events(1, "/rooms")
    await rec.wait_events(2, "/chat")
    # A marker the /rooms endpoint wants: everything before it has arrived.
    await join(client, "presence-z-room", "u1")
    await rec.wait_events(2, "/rooms")
    assert rec.names("/rooms") == [
        ("channel_occupied", "presence-a-room"),
        ("channel_occupied", "presence-z-room"),
    ]
    assert rec.names("/chat") == [
        ("channel_occupied", "private-chat"),
        ("client_event", "private-chat"),
    ]
    # Two webhooks with one URL are one endpoint: its events came in one batch.
    assert len([r for r in rec.requests if r.path == "/chat"]) == 1


async def test_failed_attempts_are_retried_with_backoff(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Three 500s, then 200: four attempts with doubling gaps, the same event each time."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    rec.fail_next = 3
    server = await hooked([hook(rec.url(), "channel_occupied")])
    client = await ws(server)
    await client.subscribe("retried")
    (event,) = await rec.wait_events(1)
    assert [r.status for r in rec.requests] == [500, 500, 500, 200]
    assert {r.events[0]["id"] for r in rec.requests} == {event["id"]}
    times = [r.at for r in rec.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(f"\nretry schedule (initial 0.1 s): gaps {[round(g, 3) for g in gaps]} s")
    for i, gap in enumerate(gaps):
        assert 0.1 * 2**i <= gap < 0.1 * 2**i * 1.1 + 0.5, gaps
    stamps = [json.loads(r.body)["time_ms"] for r in rec.requests]
    assert stamps == sorted(stamps)  # signed again at each attempt
    stats = server.runtime.metrics.app(APP_ID)
    await eventually(lambda: "delivered" in stats.webhook_events, "the ack")
    assert stats.webhook_requests == {"failed": 3, "ok": 1}
    assert stats.webhook_events == {"delivered": 1}


async def test_receiver_away_then_back_gets_everything_once(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """The receiver goes away; events wait and arrive once, in order, when it is back."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked([hook(rec.url(), "channel_occupied", "client_event")])
    client = await ws(server)
    await rec.stop()
    await private(client, "private-a")
    for i in range(5):
        await client.send("client-n", {"i": i}, "private-a")
    stats = server.runtime.metrics.app(APP_ID)
    await eventually(
        lambda: stats.webhook_requests.get("failed", 0) >= 2, "two refused attempts"
    )
    await rec.start()
    events = await rec.wait_events(6)
    assert [e["name"] for e in events] == ["channel_occupied"] + ["client_event"] * 5
    assert [e["data"]["i"] for e in events[1:]] == [0, 1, 2, 3, 4]
    assert len({e["id"] for e in events}) == 6


async def test_exhausted_retries_are_logged_and_counted(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """Past retry_period a delivery is abandoned: one error line (no secret) and a count."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    rec.fail_next = 1000
    url = rec.url().replace("http://", "http://user:pw@")
    server = await hooked([hook(url, "channel_occupied")], retry_period=0.5)
    with capture_logs() as lines:
        client = await ws(server)
        await client.subscribe("doomed")
        stats = server.runtime.metrics.app(APP_ID)
        await eventually(
            lambda: stats.webhook_events.get("exhausted") == 1, "one exhausted"
        )
    failed = [line for line in lines if line["event"] == "webhook_delivery_failed"]
    assert len(failed) == 1, lines
    assert failed[0]["app_id"] == APP_ID
    assert failed[0]["url"] == rec.url()  # without the credentials
    assert failed[0]["attempts"] == len(rec.requests) >= 3
    assert not any(APP_SECRET in json.dumps(line, default=str) for line in lines)
    assert not any("pw@" in json.dumps(line, default=str) for line in lines)
    assert rec.accepted() == []
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.metrics_port}/metrics") as resp,
    ):
        text = await resp.text()
    labels = f'app_id="{APP_ID}",port="{server.port}"'
    assert f'soketi_webhook_events_total{{{labels},outcome="exhausted"}} 1.0' in text
    failed_line = f'soketi_webhook_requests_total{{{labels},result="failed"}}'
    assert f"{failed_line} {float(len(rec.requests))}" in text


async def test_batching_collects_a_window_of_events(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """With batching, events of one window go in one request."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked(
        [hook(rec.url(), "client_event")], batching=True, batching_duration=0.3
    )
    client = await ws(server)
    await private(client, "private-b")
    for i in range(5):
        await client.send("client-n", {"i": i}, "private-b")
    events = await rec.wait_events(5)
    assert [e["data"]["i"] for e in events] == [0, 1, 2, 3, 4]
    assert len(rec.requests) == 1


@pytest.mark.parametrize("batching", [False, True])
async def test_delivery_latency(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory, batching: bool
) -> None:
    """Measures client event -> webhook received, batching off and on (50 ms)."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    server = await hooked(
        [hook(rec.url(), "client_event")], batching=batching, batching_duration=0.05
    )
    client = await ws(server)
    await private(client, "private-l")
    latencies = []
    for i in range(20):
        sent = time.time()
        await client.send("client-n", {"i": i}, "private-l")
        await rec.wait_events(i + 1)
        latencies.append(rec.requests[-1].at - sent)
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
    print(
        f"\nwebhook latency, batching {'on (50 ms)' if batching else 'off'}: "
        f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    assert p50 < (0.05 if not batching else 0.05 + 0.1)


async def test_queue_limit_bounds_what_a_dead_receiver_costs(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """A receiver that never answers holds at most queue_limit events; the rest are dropped."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    rec.hold()
    server = await hooked(
        [hook(rec.url(), "client_event")], queue_limit=3, request_timeout=30
    )
    client = await ws(server)
    await private(client, "private-q")
    await client.send("client-n", {"i": 0}, "private-q")
    await rec.wait_until(lambda r: len(r.requests) == 1, "the first request, held")
    for i in range(1, 10):
        await client.send("client-n", {"i": i}, "private-q")
    stats = server.runtime.metrics.app(APP_ID)
    await eventually(lambda: stats.webhook_events.get("dropped") == 7, "7 dropped")
    rec.release()
    events = await rec.wait_events(3)
    assert [e["data"]["i"] for e in events] == [0, 1, 2]


async def test_a_dead_receiver_does_not_slow_client_events(
    hooked: HookedNode, ws: WsFactory, receiver: ReceiverFactory
) -> None:
    """While every webhook request hangs, client events still relay at once."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    rec.hold()
    server = await hooked([hook(rec.url(), "client_event")], request_timeout=30)
    sender, listener = await ws(server), await ws(server)
    await private(sender, "private-fast")
    await private(listener, "private-fast")
    await sender.send("client-n", {"i": -1}, "private-fast")
    await listener.expect("client-n")
    await rec.wait_until(lambda r: len(r.requests) == 1, "a held request")
    # Each relay must arrive within expect()'s wait (timeout()), far below the
    # 30 s a relay blocked on the hung webhook request would take.
    for i in range(200):
        await sender.send("client-n", {"i": i}, "private-fast")
        await listener.expect("client-n")
    rec.release()
    await rec.wait_events(201)


async def test_single_node_shutdown_sends_delayed_events_at_once(
    receiver: ReceiverFactory, ws: WsFactory
) -> None:
    """Stopping a single node sends the vacated it was holding for its delay, within the grace."""
    rec = await receiver(APP_ID, APP_KEY, APP_SECRET)
    config = Config(
        server=ServerConfig(host="127.0.0.1", port=0, shutdown_grace_period=3.0),
        metrics=MetricsConfig(host="127.0.0.1", port=0),
        webhooks=WebhookDeliveryConfig(removal_delay=60.0),
        apps=[
            AppConfig(
                id=APP_ID,
                key=APP_KEY,
                secret=APP_SECRET,
                webhooks=[hook(rec.url(), "channel_occupied", "channel_vacated")],
            )
        ],
    )
    server = Server(config)
    await server.start()
    try:
        client = await ws(server)
        await client.subscribe("leaving")
        await client.subscribe("staying")
        await rec.wait_events(2)
        await unsubscribe(client, "leaving")  # vacated due in 60 s
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop())
        assert await client.closed() == 4200
        await stopping
    finally:
        await server.stop()
    assert time.monotonic() - started < 3.0
    # "staying" is vacated by the shutdown's close; both go out at once.
    assert sorted(rec.names()[2:]) == [
        ("channel_vacated", "leaving"),
        ("channel_vacated", "staying"),
    ]
