"""Prometheus metrics of one node: Soketi's series, and the ones Soketi lacks.

Theory of operation: the hot path never calls prometheus-client. Each app has
an :class:`AppStats` of plain integers that the code seeing an event bumps:
once per inbound frame, once per reply, once per *publish*. A fan-out to n
sockets adds n messages and n x len(frame) bytes in one call, never one call
per subscriber. Everything runs on the event-loop thread, so no lock is
needed. When Prometheus scrapes, :class:`_Collector` turns the integers into
metric families and reads channel, subscription and presence counts from the
adapter's registries at that moment, so those gauges cost nothing between
scrapes.

With ``metrics.enabled = false`` every app gets :data:`NULL_STATS`, whose
methods do nothing, and ``/metrics`` answers 404.

Series (``soketi_`` stands for ``metrics.prefix``; labels ``app_id`` and
``port`` unless another set is given)::

    Soketi's names, types and labels, so existing dashboards keep working:
      soketi_connected                      gauge
      soketi_new_connections_total          counter
      soketi_new_disconnections_total       counter
      soketi_socket_received_bytes          counter  (WebSocket frame bytes)
      soketi_socket_transmitted_bytes       counter  (WebSocket frame bytes)
      soketi_ws_messages_received_total     counter
      soketi_ws_messages_sent_total         counter  (one per socket written to)
      soketi_http_received_bytes            counter  (HTTP API request bodies)
      soketi_http_transmitted_bytes         counter  (HTTP API response bodies)
      soketi_http_calls_received_total      counter  (HTTP API calls)
      soketi_process_*                      prometheus-client's, no labels
    pbxws's own:
      soketi_channels                       gauge    occupied on this node
      soketi_subscriptions                  gauge    socket-channel pairs here
      soketi_presence_members               gauge    users, summed over channels
      soketi_publish_to_write_seconds       histogram  request in → frames written
      soketi_slow_consumers_closed_total    counter  closed 4100, send buffer full
      soketi_rejections_total               counter  {app_id, port, kind, code}
      soketi_rate_limited_total             counter  {app_id, port, limit}
      soketi_webhook_events_total           counter  {app_id, port, outcome}
      soketi_webhook_requests_total         counter  {app_id, port, result}
      soketi_event_loop_lag_seconds         histogram  {port}
      soketi_publish_coalescing_seconds_total  counter  {port} slept to batch publishes
      soketi_publish_coalescing_sleeps_total   counter  {port}
      soketi_ready                          gauge    {port} 1 accepting, 0 not
      soketi_build_info                     gauge    {port, version, node}

Hooks for adapters (the Redis adapter's series come later):

* an adapter that fans out frames published on *other* nodes reports each such
  fan-out with :meth:`Metrics.delivered` (one call per frame, not per socket);
* an adapter with series of its own (reconnects, command latency, outbox)
  implements :class:`MetricsSource`; its families are added to every scrape;
* an adapter that keeps this node's subscribers in
  :class:`~pbxws.channels.registry.AppChannels` implements
  :class:`LocalRegistries`, and the channel gauges are read from them
  (otherwise they are counted from the open connections, which costs more).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from pbxws import __version__
from pbxws.config import MetricsConfig

if TYPE_CHECKING:
    from pbxws.channels.registry import AppChannels
    from pbxws.runtime import Runtime

__all__ = [
    "CONTENT_TYPE",
    "NULL_STATS",
    "AppStats",
    "LocalRegistries",
    "Metrics",
    "MetricsSource",
]

#: Content type of the Prometheus text exposition format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds (seconds) of the publish-to-write histogram: 100 µs to 2.5 s.
PUBLISH_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
# Upper bounds (seconds) of the event-loop lag histogram: 1 ms to 5 s.
LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Seconds between two event-loop lag measurements.
LAG_INTERVAL: Final = 0.5


class Buckets:
    """A histogram as plain numbers: one observation is a bisect and two adds."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        # Upper bounds, ascending; +Inf is implicit.
        self.bounds = bounds
        # Observations per bucket (not cumulative); the last one is +Inf.
        self.counts = [0] * (len(bounds) + 1)
        # Sum of every observed value.
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value (a value equal to a bound falls in that bucket)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class AppStats:
    """What one app did on this node, as counters bumped on the event loop."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "connections",
        "disconnections",
        "http_bytes_received",
        "http_bytes_sent",
        "http_calls",
        "latency",
        "messages_received",
        "messages_sent",
        "rate_limited",
        "rejections",
        "slow_consumers",
        "webhook_events",
        "webhook_requests",
    )

    def __init__(self) -> None:
        # Connections accepted, and connections ended (their difference is live).
        self.connections = 0
        self.disconnections = 0
        # WebSocket messages and bytes read from clients.
        self.messages_received = 0
        self.bytes_received = 0
        # WebSocket messages and frame bytes written, one per socket written to.
        self.messages_sent = 0
        self.bytes_sent = 0
        # HTTP API calls, request body bytes and response body bytes.
        self.http_calls = 0
        self.http_bytes_received = 0
        self.http_bytes_sent = 0
        # Clients closed 4100 because their send buffer passed the limit.
        self.slow_consumers = 0
        # Refusals by (kind, code): kind is connection, subscription,
        # client_event, signin or http; code the Pusher code or HTTP status.
        self.rejections: dict[tuple[str, int], int] = {}
        # Requests refused by a rate limit, by limit name.
        self.rate_limited: dict[str, int] = {}
        # Seconds from a publication arriving to its frames being written here.
        self.latency = Buckets(PUBLISH_BUCKETS)
        # Webhook events by outcome: delivered, exhausted (retries ran out),
        # dropped (queue full), suppressed (a delayed vacated/removed cancelled).
        self.webhook_events: dict[str, int] = {}
        # Webhook requests by result: ok (2xx) or failed.
        self.webhook_requests: dict[str, int] = {}

    def connected(self) -> None:
        """A connection was accepted."""
        self.connections += 1

    def disconnected(self) -> None:
        """An accepted connection ended."""
        self.disconnections += 1

    def received(self, nbytes: int) -> None:
        """One WebSocket message of ``nbytes`` was read from a client."""
        self.messages_received += 1
        self.bytes_received += nbytes

    def sent(self, nbytes: int) -> None:
        """One frame of ``nbytes`` was written to one client."""
        self.messages_sent += 1
        self.bytes_sent += nbytes

    def delivered(self, sockets: int, nbytes: int) -> None:
        """One frame of ``nbytes`` was written to ``sockets`` clients (a fan-out)."""
        self.messages_sent += sockets
        self.bytes_sent += sockets * nbytes

    def published(self, sockets: int, nbytes: int, started: float) -> None:
        """A publication that arrived at ``started`` was fanned out.

        ``started`` is a ``time.perf_counter()`` value. Counts the fan-out
        like :meth:`delivered` and observes the publish-to-write latency once.
        """
        self.messages_sent += sockets
        self.bytes_sent += sockets * nbytes
        self.latency.observe(time.perf_counter() - started)

    def http_call(self, received: int, sent: int) -> None:
        """One HTTP API call: ``received`` body bytes in, ``sent`` bytes out."""
        self.http_calls += 1
        self.http_bytes_received += received
        self.http_bytes_sent += sent

    def slow_consumer(self) -> None:
        """A client was closed because it did not read fast enough."""
        self.slow_consumers += 1

    def rejected(self, kind: str, code: int) -> None:
        """Something a client or the API asked for was refused with ``code``."""
        key = (kind, int(code))
        self.rejections[key] = self.rejections.get(key, 0) + 1

    def limited(self, limit: str) -> None:
        """A rate limit (``client_events``, ...) refused a request."""
        self.rate_limited[limit] = self.rate_limited.get(limit, 0) + 1

    def webhook_event(self, outcome: str, n: int = 1) -> None:
        """``n`` webhook events ended with ``outcome`` (see ``webhook_events``)."""
        self.webhook_events[outcome] = self.webhook_events.get(outcome, 0) + n

    def webhook_request(self, *, ok: bool) -> None:
        """One webhook request got a 2xx answer (``ok``) or did not."""
        result = "ok" if ok else "failed"
        self.webhook_requests[result] = self.webhook_requests.get(result, 0) + 1


class _NullStats(AppStats):
    """The stats of every app when metrics are disabled: every call does nothing."""

    __slots__ = ()

    def connected(self) -> None:
        pass

    def disconnected(self) -> None:
        pass

    def received(self, nbytes: int) -> None:
        pass

    def sent(self, nbytes: int) -> None:
        pass

    def delivered(self, sockets: int, nbytes: int) -> None:
        pass

    def published(self, sockets: int, nbytes: int, started: float) -> None:
        pass

    def http_call(self, received: int, sent: int) -> None:
        pass

    def slow_consumer(self) -> None:
        pass

    def rejected(self, kind: str, code: int) -> None:
        pass

    def limited(self, limit: str) -> None:
        pass

    def webhook_event(self, outcome: str, n: int = 1) -> None:
        pass

    def webhook_request(self, *, ok: bool) -> None:
        pass


#: Shared by every app when metrics are disabled.
NULL_STATS: Final[AppStats] = _NullStats()


@runtime_checkable
class LocalRegistries(Protocol):
    """An adapter that keeps this node's subscribers in per-app registries."""

    def local_registries(self) -> Mapping[str, AppChannels]:
        """This node's registries by app id (read only; not copied)."""


@runtime_checkable
class MetricsSource(Protocol):
    """An adapter (or any part of the node) with metric families of its own."""

    def collect_metrics(self, prefix: str, port: str) -> Iterable[Metric]:
        """Families to add to a scrape; names start with ``prefix``."""


class Metrics:
    """The metrics of one node: per-app stats, the loop-lag probe and the registry."""

    def __init__(self, config: MetricsConfig, app_ids: Iterable[str]) -> None:
        self.enabled = config.enabled
        # Prefix of every series name ("soketi_" by default).
        self.prefix = config.prefix
        # The `port` label: the WebSocket port, known once it is bound.
        self.port = ""
        # The node id, for build_info.
        self.node = ""
        self._apps: dict[str, AppStats] = {
            app_id: AppStats() if self.enabled else NULL_STATS for app_id in app_ids
        }
        # Refusals of connections and API calls naming no configured app;
        # exported as app_id="" so unknown ids never create series.
        self._unknown = AppStats() if self.enabled else NULL_STATS
        # Scheduling delay of the event loop, sampled every LAG_INTERVAL.
        self.loop_lag = Buckets(LAG_BUCKETS)
        # Read at scrape time; set by bind().
        self._runtime: Runtime | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        if self.enabled:
            self.registry.register(_Collector(self))
            namespace = self.prefix.removesuffix("_")
            self.registry.register(ProcessCollector(namespace=namespace, registry=None))

    def bind(self, runtime: Runtime, port: int) -> None:
        """Read the node's state from ``runtime``; label series with ``port``."""
        self._runtime = runtime
        self.port = str(port)
        self.node = runtime.socket_ids.node

    def app(self, app_id: str) -> AppStats:
        """The stats of ``app_id`` (those of "no such app" for an unknown id)."""
        return self._apps.get(app_id, self._unknown)

    def delivered(self, app_id: str, sockets: int, nbytes: int) -> None:
        """A frame of ``nbytes`` published elsewhere was written to ``sockets`` here.

        For adapters that fan out other nodes' publications; call it once per
        frame, with the count :meth:`AppChannels.fan_out` returned.
        """
        self.app(app_id).delivered(sockets, nbytes)

    async def watch_loop_lag(self, interval: float = LAG_INTERVAL) -> None:
        """Measure forever how late the loop wakes a task that slept ``interval``."""
        clock = time.perf_counter
        observe = self.loop_lag.observe
        while True:
            before = clock()
            await asyncio.sleep(interval)
            observe(max(0.0, clock() - before - interval))

    # --- exposition -----------------------------------------------------------

    def render_text(self) -> bytes:
        """Every series in the Prometheus text format (version 0.0.4)."""
        return "".join(_text_lines(self.registry.collect())).encode()

    def render_json(self) -> list[dict[str, Any]]:
        """Every series as prom-client's ``getMetricsAsJSON`` (Soketi's ``?json=1``)."""
        return [
            {
                "name": metric.name,
                "help": metric.documentation,
                "type": metric.type,
                "values": [
                    {"metricName": s.name, "labels": s.labels, "value": s.value}
                    for s in metric.samples
                ],
            }
            for metric in self.registry.collect()
        ]


# --------------------------------------------------------------------- collection
class _Collector(Collector):
    """Builds every pbxws family from the stats and the runtime, at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        p, port = m.prefix, m.port
        apps = list(m._apps.items())

        def per_app(
            name: str, doc: str, typ: str, value: Any, *, unknown: bool = False
        ) -> Metric:
            family = Metric(p + name, doc, typ)
            rows = [*apps, ("", m._unknown)] if unknown else apps
            for app_id, stats in rows:
                family.add_sample(
                    p + name, {"app_id": app_id, "port": port}, value(stats)
                )
            return family

        yield per_app(
            "connected",
            "The number of currently connected sockets.",
            "gauge",
            lambda s: s.connections - s.disconnections,
        )
        yield per_app(
            "new_connections_total",
            "Total amount of soketi connection requests.",
            "counter",
            lambda s: s.connections,
        )
        yield per_app(
            "new_disconnections_total",
            "Total amount of soketi disconnections.",
            "counter",
            lambda s: s.disconnections,
        )
        yield per_app(
            "socket_received_bytes",
            "Total amount of bytes that soketi received.",
            "counter",
            lambda s: s.bytes_received,
        )
        yield per_app(
            "socket_transmitted_bytes",
            "Total amount of bytes that soketi transmitted.",
            "counter",
            lambda s: s.bytes_sent,
        )
        yield per_app(
            "ws_messages_received_total",
            "The total amount of WS messages received from connections by the server.",
            "counter",
            lambda s: s.messages_received,
        )
        yield per_app(
            "ws_messages_sent_total",
            "The total amount of WS messages sent to the connections from the server.",
            "counter",
            lambda s: s.messages_sent,
        )
        yield per_app(
            "http_received_bytes",
            "Total amount of bytes that soketi's REST API received.",
            "counter",
            lambda s: s.http_bytes_received,
        )
        yield per_app(
            "http_transmitted_bytes",
            "Total amount of bytes that soketi's REST API sent back.",
            "counter",
            lambda s: s.http_bytes_sent,
        )
        yield per_app(
            "http_calls_received_total",
            "Total amount of received REST API calls.",
            "counter",
            lambda s: s.http_calls,
        )
        yield per_app(
            "slow_consumers_closed_total",
            "Connections closed with 4100 because they did not read fast enough.",
            "counter",
            lambda s: s.slow_consumers,
        )
        yield from self._occupancy()
        yield self._latency(apps)
        yield self._rejections([*apps, ("", m._unknown)])
        limited = Metric(
            p + "rate_limited_total", "Requests refused by a rate limit.", "counter"
        )
        for app_id, stats in apps:
            for limit, n in stats.rate_limited.items():
                limited.add_sample(
                    p + "rate_limited_total",
                    {"app_id": app_id, "port": port, "limit": limit},
                    n,
                )
        yield limited
        yield from self._webhooks(apps)
        yield self._node_families()
        yield from self._coalescing()
        yield from self._ready_and_info()
        rt = m._runtime
        if rt is not None and isinstance(rt.adapter, MetricsSource):
            yield from rt.adapter.collect_metrics(p, port)

    def _occupancy(self) -> Iterator[Metric]:
        """Channels, subscriptions and presence members on this node, now."""
        m = self._m
        p, port = m.prefix, m.port
        counts = _occupancy(m._runtime, m._apps)
        docs = (
            ("channels", "Channels with at least one subscriber on this node."),
            ("subscriptions", "Channel subscriptions of this node's connections."),
            (
                "presence_members",
                "Presence members on this node, summed over channels.",
            ),
        )
        for i, (name, doc) in enumerate(docs):
            family = Metric(p + name, doc, "gauge")
            for app_id, values in counts.items():
                family.add_sample(p + name, {"app_id": app_id, "port": port}, values[i])
            yield family

    def _latency(self, apps: list[tuple[str, AppStats]]) -> Metric:
        p, port = self._m.prefix, self._m.port
        family = Metric(
            p + "publish_to_write_seconds",
            "Seconds from a publication arriving (HTTP API request or client event) "
            "to its frame being written to every subscriber on this node.",
            "histogram",
        )
        for app_id, stats in apps:
            _add_histogram(
                family,
                p + "publish_to_write_seconds",
                stats.latency,
                {"app_id": app_id, "port": port},
            )
        return family

    def _rejections(self, apps: list[tuple[str, AppStats]]) -> Metric:
        p, port = self._m.prefix, self._m.port
        family = Metric(
            p + "rejections_total",
            "Refusals by kind (connection, subscription, client_event, signin, http) "
            "and code (Pusher code or HTTP status).",
            "counter",
        )
        for app_id, stats in apps:
            for (kind, code), n in stats.rejections.items():
                family.add_sample(
                    p + "rejections_total",
                    {"app_id": app_id, "port": port, "kind": kind, "code": str(code)},
                    n,
                )
        return family

    def _webhooks(self, apps: list[tuple[str, AppStats]]) -> Iterator[Metric]:
        p, port = self._m.prefix, self._m.port
        for name, label, doc, attr in (
            (
                "webhook_events_total",
                "outcome",
                "Webhook events by outcome: delivered, exhausted (retries ran out), "
                "dropped (queue full), suppressed (vacated/removed cancelled "
                "because the channel or user came back).",
                "webhook_events",
            ),
            (
                "webhook_requests_total",
                "result",
                "Webhook requests by result: ok (2xx) or failed (retried).",
                "webhook_requests",
            ),
        ):
            family = Metric(p + name, doc, "counter")
            for app_id, stats in apps:
                counts: dict[str, int] = getattr(stats, attr)
                for value, n in counts.items():
                    family.add_sample(
                        p + name, {"app_id": app_id, "port": port, label: value}, n
                    )
            yield family

    def _node_families(self) -> Metric:
        p, port = self._m.prefix, self._m.port
        family = Metric(
            p + "event_loop_lag_seconds",
            f"How late the event loop ran a task that slept {LAG_INTERVAL} s.",
            "histogram",
        )
        _add_histogram(
            family, p + "event_loop_lag_seconds", self._m.loop_lag, {"port": port}
        )
        return family

    def _coalescing(self) -> Iterator[Metric]:
        rt = self._m._runtime
        if rt is None:
            return
        p, port = self._m.prefix, self._m.port
        coalescer = rt.coalescer
        for name, doc, value in (
            (
                "publish_coalescing_seconds_total",
                "Seconds the event loop slept to serve several publishes per wake-up.",
                coalescer.slept,
            ),
            (
                "publish_coalescing_sleeps_total",
                "Times the event loop slept to serve several publishes per wake-up.",
                float(coalescer.naps),
            ),
        ):
            family = Metric(p + name, doc, "counter")
            family.add_sample(p + name, {"port": port}, value)
            yield family

    def _ready_and_info(self) -> Iterator[Metric]:
        m = self._m
        p, port = m.prefix, m.port
        ready = Metric(
            p + "ready", "1 while the node accepts new connections, else 0.", "gauge"
        )
        accepting = m._runtime is not None and m._runtime.accepting
        ready.add_sample(p + "ready", {"port": port}, 1.0 if accepting else 0.0)
        yield ready
        info = Metric(p + "build_info", "pbxws version and node id.", "gauge")
        info.add_sample(
            p + "build_info",
            {"port": port, "version": __version__, "node": m.node},
            1.0,
        )
        yield info


def _add_histogram(
    family: Metric, name: str, buckets: Buckets, labels: dict[str, str]
) -> None:
    """Add the cumulative ``_bucket``, ``_sum`` and ``_count`` samples."""
    cumulative = 0
    for bound, count in zip(buckets.bounds, buckets.counts, strict=False):
        cumulative += count
        family.add_sample(
            name + "_bucket", {**labels, "le": _number(bound)}, cumulative
        )
    cumulative += buckets.counts[-1]
    family.add_sample(name + "_bucket", {**labels, "le": "+Inf"}, cumulative)
    family.add_sample(name + "_sum", labels, buckets.total)
    family.add_sample(name + "_count", labels, cumulative)


def _occupancy(
    rt: Runtime | None, apps: Mapping[str, AppStats]
) -> dict[str, tuple[int, int, int]]:
    """(channels, subscriptions, presence members) per app id, on this node."""
    counts = dict.fromkeys(apps, (0, 0, 0))
    if rt is None:
        return counts
    adapter = rt.adapter
    if isinstance(adapter, LocalRegistries):
        # O(channels): the registries already group subscribers by channel.
        for app_id, reg in adapter.local_registries().items():
            if app_id in counts:
                channels = reg.channels.values()
                counts[app_id] = (
                    len(reg.channels),
                    sum(len(ch.subscribers) for ch in channels),
                    sum(len(ch.members) for ch in channels),
                )
        return counts
    # O(subscriptions): walk the connections when the adapter has no registries.
    names: dict[str, set[str]] = {app_id: set() for app_id in counts}
    members: dict[str, set[tuple[str, str]]] = {app_id: set() for app_id in counts}
    subscriptions = dict.fromkeys(counts, 0)
    for conn in rt.connections.values():
        app_id = conn.app.id
        if app_id not in names:
            continue
        subscriptions[app_id] += len(conn.channels)
        names[app_id].update(conn.channels)
        members[app_id].update(
            (channel, user) for channel, user in conn.channels.items() if user
        )
    for app_id in counts:
        counts[app_id] = (
            len(names[app_id]),
            subscriptions[app_id],
            len(members[app_id]),
        )
    return counts


# --------------------------------------------------------------------- exposition
def _number(value: float) -> str:
    """A sample value or bound as Prometheus parses it (``+Inf``, ``NaN``, ``1.5``)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


_TYPES: Final = {"unknown": "untyped", "info": "gauge", "stateset": "gauge"}


def _text_lines(metrics: Iterable[Metric]) -> Iterator[str]:
    """The text format, with every sample under the name it was given.

    prometheus-client's own writer renames a counter ``x`` to ``x_total`` in
    its ``# TYPE`` line; Soketi's ``socket_received_bytes`` (a counter without
    the suffix) must keep its name, so the family name is used as given
    unless its samples carry the suffix (prometheus-client's process counters).
    """
    for metric in metrics:
        name = metric.name
        if metric.type == "counter" and any(
            s.name == name + "_total" for s in metric.samples
        ):
            name += "_total"
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        yield f"# HELP {name} {doc}\n"
        yield f"# TYPE {name} {_TYPES.get(metric.type, metric.type)}\n"
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            labels = ",".join(
                f'{key}="{_escape(value)}"' for key, value in sample.labels.items()
            )
            head = f"{sample.name}{{{labels}}}" if labels else sample.name
            yield f"{head} {_number(sample.value)}\n"
