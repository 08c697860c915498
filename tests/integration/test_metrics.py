"""``/metrics``: Soketi's series and pbxws's own move as clients and the API act."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from pbxws.config import Config, MetricsConfig
from pbxws.metrics import AppStats, Metrics
from pbxws.protocol.frames import text_frame
from pbxws.server import Server
from tests.conftest import timeout

from .conftest import (
    APP_ID,
    ApiFactory,
    NodeFactory,
    WsFactory,
    channel_auth,
    default_app,
    eventually,
    make_config,
)

#: Soketi's series (prometheus-metrics-driver.ts) and their types.
SOKETI_SERIES = {
    "soketi_connected": "gauge",
    "soketi_new_connections_total": "counter",
    "soketi_new_disconnections_total": "counter",
    "soketi_socket_received_bytes": "counter",
    "soketi_socket_transmitted_bytes": "counter",
    "soketi_ws_messages_received_total": "counter",
    "soketi_ws_messages_sent_total": "counter",
    "soketi_http_received_bytes": "counter",
    "soketi_http_transmitted_bytes": "counter",
    "soketi_http_calls_received_total": "counter",
}


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Scrape:
    """One /metrics answer: every sample under the exact name it was written with.

    (prometheus-client's parser renames counters to ``*_total``, so it can't
    check Soketi's names; the real Prometheus reads it in tests/deploy.)
    """

    def __init__(self, text: str, port: int) -> None:
        self.text = text
        self.port = str(port)
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            pairs = frozenset(_LABEL.findall(labels or ""))
            self.samples[(name, pairs)] = float(value)

    def __call__(
        self, name: str, *, app_id: str | None = APP_ID, **labels: str
    ) -> float:
        """The value of one sample (0 when absent); ``port`` is always matched."""
        wanted = {"port": self.port, **labels}
        if app_id is not None:
            wanted["app_id"] = app_id
        return self.samples.get((name, frozenset(wanted.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


async def scrape(server: Server, query: str = "") -> Scrape:
    """GET /metrics on the node's metrics port."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.metrics_port}/metrics{query}") as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(await resp.text(), server.port)


async def test_soketi_series_keep_their_names_types_and_labels(
    node: NodeFactory,
) -> None:
    """Every Soketi series is exported under its own name and type, labelled app_id and port."""
    server = await node()
    metrics = await scrape(server)
    for name, kind in SOKETI_SERIES.items():
        assert f"# TYPE {name} {kind}\n" in metrics.text
        assert (name, frozenset({("app_id", APP_ID), ("port", str(server.port))})) in (
            metrics.samples
        ), name
    assert "soketi_process_resident_memory_bytes" in metrics.names()
    assert metrics("soketi_ready", app_id=None) == 1


async def test_connections_and_messages_move_the_series(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Connecting, sending and disconnecting change the connection and message series."""
    server = await node()
    before = await scrape(server)
    alice = await ws(server)
    bob = await ws(server)
    await alice.subscribe("news")
    await bob.subscribe("news")
    await alice.send("pusher:ping")
    await alice.expect("pusher:pong")
    during = await scrape(server)
    assert during("soketi_connected") == 2
    assert during("soketi_new_connections_total") == 2
    assert during("soketi_channels") == 1
    assert during("soketi_subscriptions") == 2
    # Two subscribes and a ping from the clients...
    assert during("soketi_ws_messages_received_total") == 3
    assert during("soketi_socket_received_bytes") > 0
    # ...and to them: two connection_established, two subscription_succeeded, a pong.
    assert during("soketi_ws_messages_sent_total") == 5
    assert during("soketi_socket_transmitted_bytes") > before(
        "soketi_socket_transmitted_bytes"
    )
    await bob.ws.close()
    await eventually(lambda: len(server.runtime.connections) == 1, "bob still open")
    after = await scrape(server)
    assert after("soketi_connected") == 1
    assert after("soketi_new_disconnections_total") == 1
    assert after("soketi_subscriptions") == 1


async def test_a_publish_counts_every_socket_it_reached(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """An API publish to n sockets adds n messages, n frames of bytes and one latency sample."""
    server = await node()
    clients = [await ws(server) for _ in range(3)]
    for client in clients:
        await client.subscribe("feed")
    before = await scrape(server)
    status, _ = await api(server).trigger("feed", "tick", "hello")
    assert status == 200
    frames = [
        text_frame(json.dumps(await c.expect("tick"), separators=(",", ":")).encode())
        for c in clients
    ]
    after = await scrape(server)
    sent = after("soketi_ws_messages_sent_total") - before(
        "soketi_ws_messages_sent_total"
    )
    assert sent == 3
    transmitted = after("soketi_socket_transmitted_bytes") - before(
        "soketi_socket_transmitted_bytes"
    )
    assert transmitted == sum(len(f) for f in frames)
    assert after("soketi_publish_to_write_seconds_count") == 1
    assert after("soketi_publish_to_write_seconds_sum") > 0
    assert after("soketi_publish_to_write_seconds_bucket", le="+Inf") == 1
    assert after("soketi_http_calls_received_total") == 1
    assert after("soketi_http_received_bytes") > 0
    assert after("soketi_http_transmitted_bytes") == len(b"{}")


async def test_fan_out_costs_one_metrics_call_per_publish(
    node: NodeFactory, ws: WsFactory, api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many subscribers a publish reaches, the metrics hear of it once."""
    server = await node()
    clients = [await ws(server) for _ in range(20)]
    for client in clients:
        await client.subscribe("crowd")
    calls: list[str] = []
    for name in ("sent", "delivered", "published"):
        original = getattr(AppStats, name)

        def spy(
            self: AppStats, *args: Any, _name: str = name, _f: Any = original
        ) -> None:
            calls.append(_name)
            _f(self, *args)

        monkeypatch.setattr(AppStats, name, spy)
    status, _ = await api(server).trigger("crowd", "e", "x")
    assert status == 200
    for client in clients:
        await client.expect("e")
    assert calls == ["published"]


async def test_rejections_are_counted_by_kind_and_code(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """Refused connections, subscriptions, client events and API calls each show up."""
    server = await node(
        apps=[default_app(enable_client_messages=True, max_client_events_per_sec=1)]
    )
    stranger = await ws(server, key="no-such-key", established=False)
    assert (await stranger.recv())["event"] == "pusher:error"
    client = await ws(server)
    refused = await client.subscribe("private-room", auth="app-key:bad")
    assert refused["event"] == "pusher:subscription_error"
    await client.send("client-hi", {}, channel="private-room")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4301
    auth = channel_auth(client.socket_id, "private-ok")
    await client.subscribe("private-ok", auth=auth)
    await client.send("client-a", {}, channel="private-ok")
    await client.send("client-b", {}, channel="private-ok")
    assert (await client.expect("pusher:error"))["data"]["code"] == 4301
    http = api(server)
    status, _ = await http.call("GET", f"/apps/{APP_ID}/channels", secret="wrong")
    assert status == 401
    status, _ = await http.call("GET", "/apps/999/channels")
    assert status == 404
    metrics = await scrape(server)
    rejected = "soketi_rejections_total"
    assert metrics(rejected, app_id="", kind="connection", code="4001") == 1
    assert metrics(rejected, kind="subscription", code="401") == 1
    assert metrics(rejected, kind="client_event", code="4301") == 2
    assert metrics("soketi_rate_limited_total", limit="client_events") == 1
    assert metrics(rejected, kind="http", code="401") == 1
    assert metrics(rejected, app_id="", kind="http", code="404") == 1


async def test_presence_members_are_counted_per_user(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Two sockets of one user and one of another make two presence members."""
    server = await node()
    clients = []
    for user in ("1", "1", "2"):
        client = await ws(server)
        clients.append(client)  # keep it open
        data = json.dumps({"user_id": user})
        auth = channel_auth(client.socket_id, "presence-room", data)
        reply = await client.subscribe("presence-room", auth=auth, channel_data=data)
        assert reply["event"] == "pusher_internal:subscription_succeeded"
    metrics = await scrape(server)
    assert metrics("soketi_presence_members") == 2
    assert metrics("soketi_subscriptions") == 3
    assert metrics("soketi_channels") == 1


async def test_slow_consumer_is_counted(node: NodeFactory, api: ApiFactory) -> None:
    """A client cut off with 4100 adds one to slow_consumers_closed_total."""
    from .test_slow_consumer import _masked_text, _raw_client

    server = await node(send_buffer_limit=64 * 1024)
    loop = asyncio.get_running_loop()
    sock = await _raw_client(server.port)
    subscribe = b'{"event":"pusher:subscribe","data":{"channel":"feed"}}'
    await loop.sock_sendall(sock, _masked_text(subscribe))
    http = api(server)
    async with asyncio.timeout(timeout(4)):
        while (await scrape(server))("soketi_slow_consumers_closed_total") == 0:
            status, _ = await http.trigger("feed", "e", "x" * 9000)
            assert status == 200
    sock.close()


async def test_disabled_metrics_answer_404(node: NodeFactory) -> None:
    """With metrics.enabled = false, /metrics is 404 and the other probes still answer."""
    config = make_config()
    server = await node(
        Config(
            server=config.server,
            metrics=MetricsConfig(enabled=False, host="127.0.0.1", port=0),
            adapter=config.adapter,
            redis=config.redis,
            apps=config.apps,
        )
    )
    base = f"http://127.0.0.1:{server.metrics_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics") as resp:
            assert resp.status == 404
        async with session.get(f"{base}/ready") as resp:
            assert resp.status == 200


async def test_json_and_prefix(node: NodeFactory, ws: WsFactory) -> None:
    """``?json=1`` answers prom-client's JSON, and the prefix renames every series."""
    config = make_config()
    server = await node(
        Config(
            server=config.server,
            metrics=MetricsConfig(host="127.0.0.1", port=0, prefix="pbx_"),
            adapter=config.adapter,
            redis=config.redis,
            apps=config.apps,
        )
    )
    client = await ws(server)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.metrics_port}/metrics?json=1") as resp,
    ):
        body = await resp.json()
    families = {f["name"]: f for f in body}
    assert families["pbx_connected"]["type"] == "gauge"
    (value,) = families["pbx_connected"]["values"]
    assert value["labels"] == {"app_id": APP_ID, "port": str(server.port)}
    assert value["value"] == 1
    assert "pbx_process_cpu_seconds" in families
    assert not any(name.startswith("soketi_") for name in families)
    await client.ws.close()


async def test_event_loop_lag_is_measured() -> None:
    """A loop blocked for 50 ms shows up in the event-loop lag histogram."""
    metrics = Metrics(MetricsConfig(), [APP_ID])
    probe = asyncio.create_task(metrics.watch_loop_lag(interval=0.001))
    try:
        await eventually(lambda: sum(metrics.loop_lag.counts) > 0, "no lag sample")
        time.sleep(0.05)  # block the loop on purpose: this is the lag to measure
        await eventually(
            lambda: sum(metrics.loop_lag.counts[4:]) > 0, "the 50 ms block was missed"
        )
    finally:
        probe.cancel()


async def test_accept_traffic(node: NodeFactory) -> None:
    """/accept-traffic: 200 with memory figures, 503 over the memory threshold."""
    healthy = await node()
    starved = await node(accept_traffic_memory_threshold=1e-9)
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"http://127.0.0.1:{healthy.port}/accept-traffic"
        ) as resp:
            assert resp.status == 200
            memory = (await resp.json())["memory"]
            assert memory["usedSize"] > 0
            assert 0 < memory["percentUsage"] < 100
        async with session.get(
            f"http://127.0.0.1:{starved.port}/accept-traffic"
        ) as resp:
            assert resp.status == 503
            assert "memory" in (await resp.json())["error"]


def _labels(samples: dict[Any, float]) -> Iterator[dict[str, str]]:
    for _, labels in samples:
        yield dict(labels)


async def test_unknown_app_key_never_creates_series(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Keys and ids sent by clients never become label values."""
    server = await node()
    for key in ("a", "b", "c"):
        client = await ws(server, key=key, established=False)
        await client.recv()
    metrics = await scrape(server)
    assert {labels.get("app_id") for labels in _labels(metrics.samples)} <= {
        None,
        "",
        APP_ID,
    }
