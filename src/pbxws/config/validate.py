"""
Checks on a decoded configuration that types alone cannot express.

Decoding already guarantees types. What remains are values: ranges, unique
app ids and keys, URLs. Every check runs, so that one pass reports every
problem, each with the key path of the offending value.
"""

from __future__ import annotations

import math
from typing import NamedTuple
from urllib.parse import urlsplit

from pbxws.protocol.origins import origin_pattern_problem

from .model import (
    AppConfig,
    Config,
    LimitsConfig,
    ServerConfig,
    WebhookDeliveryConfig,
)

__all__ = ["Problem", "validate_config"]


class Problem(NamedTuple):
    """One bad value: its key path (``apps[1].key``) and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


_PORT_MAX = 65535


class _Checker:
    """Collects problems; one small method per kind of check."""

    def __init__(self) -> None:
        # Problems found so far, in check order.
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def port(self, path: str, value: int, *, low: int = 0) -> None:
        if not low <= value <= _PORT_MAX:
            self.add(path, f"must be between {low} and {_PORT_MAX}, got {value}")

    def positive(self, path: str, value: float, *, zero_ok: bool = False) -> None:
        ok = value >= 0 if zero_ok else value > 0
        if not (math.isfinite(value) and ok):
            wanted = "zero or positive" if zero_ok else "positive"
            self.add(path, f"must be {wanted}, got {value}")

    def not_empty(self, path: str, value: str) -> None:
        if not value.strip():
            self.add(path, "must not be empty")

    def rate(self, path: str, value: int) -> None:
        if value < -1:
            self.add(path, f"must be -1 (unlimited) or more, got {value}")


def _check_server(c: _Checker, server: ServerConfig) -> None:
    c.not_empty("server.host", server.host)
    c.port("server.port", server.port)
    prefix = server.path_prefix
    if prefix and (
        not prefix.startswith("/")
        or "//" in prefix
        or any(ch.isspace() or ch in "?#" for ch in prefix)
    ):
        c.add(
            "server.path_prefix",
            f'must be "" or a path like "/ws" (no "?", "#", spaces), got {prefix!r}',
        )
    c.positive(
        "server.shutdown_grace_period", server.shutdown_grace_period, zero_ok=True
    )
    if server.drain_window is not None:
        c.positive("server.drain_window", server.drain_window, zero_ok=True)
        if server.drain_window > server.shutdown_grace_period:
            c.add(
                "server.drain_window",
                "must be at most server.shutdown_grace_period "
                f"({server.shutdown_grace_period}), got {server.drain_window}",
            )
    window = server.publish_coalescing_window
    if not (math.isfinite(window) and 0 <= window <= 0.1):
        c.add(
            "server.publish_coalescing_window",
            f"must be 0 (off) up to 0.1 seconds, got {window}",
        )
    threshold = server.accept_traffic_memory_threshold
    if not 0 < threshold <= 100:
        c.add(
            "server.accept_traffic_memory_threshold",
            f"must be a percentage above 0 and at most 100, got {threshold}",
        )
    for name in (
        "activity_timeout",
        "pong_timeout",
        "max_message_size",
        "send_buffer_limit",
        "max_request_size",
        "api_timestamp_tolerance",
        "user_authentication_timeout",
    ):
        c.positive(f"server.{name}", getattr(server, name))


def _check_limits(c: _Checker, limits: LimitsConfig) -> None:
    for name in LimitsConfig.__struct_fields__:
        c.positive(f"limits.{name}", getattr(limits, name))


def _check_webhooks(c: _Checker, where: str, app: AppConfig) -> None:
    for j, hook in enumerate(app.webhooks):
        path = f"{where}.webhooks[{j}]"
        parts = urlsplit(hook.url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or any(ch.isspace() for ch in hook.url)
        ):
            c.add(
                f"{path}.url", f"must be an http:// or https:// URL, got {hook.url!r}"
            )
        if not hook.event_types:
            c.add(f"{path}.event_types", "must list at least one event type")
        counts = app.enable_subscription_count
        if "subscription_count" in hook.event_types and not counts:
            c.add(
                f"{path}.event_types",
                f"subscription_count needs {where}.enable_subscription_count = true",
            )


def _check_webhook_delivery(c: _Checker, hooks: WebhookDeliveryConfig) -> None:
    for name in ("batching_duration", "removal_delay", "retry_period"):
        c.positive(f"webhooks.{name}", getattr(hooks, name), zero_ok=True)
    for name in (
        "retry_initial_delay",
        "retry_max_delay",
        "request_timeout",
        "queue_limit",
        "concurrency",
    ):
        c.positive(f"webhooks.{name}", getattr(hooks, name))
    if hooks.retry_max_delay < hooks.retry_initial_delay:
        c.add(
            "webhooks.retry_max_delay",
            "must be at least webhooks.retry_initial_delay "
            f"({hooks.retry_initial_delay}), got {hooks.retry_max_delay}",
        )


_APP_OVERRIDES = (
    "max_presence_members_per_channel",
    "max_presence_member_size_in_kb",
    "max_channel_name_length",
    "max_event_channels_at_once",
    "max_event_name_length",
    "max_event_payload_in_kb",
    "max_event_batch_size",
    "max_channels_per_connection",
)
_APP_RATES = (
    "max_connections",
    "max_backend_events_per_sec",
    "max_client_events_per_sec",
    "max_read_req_per_sec",
)


def _check_apps(c: _Checker, apps: list[AppConfig]) -> None:
    if not apps:
        c.add("apps", "at least one app is required")
    # Where each id and key was first seen, to name both ends of a duplicate.
    seen: dict[str, dict[str, int]] = {"id": {}, "key": {}}
    for i, app in enumerate(apps):
        where = f"apps[{i}]"
        for name in ("id", "key", "secret"):
            c.not_empty(f"{where}.{name}", getattr(app, name))
        for name, value in (("id", app.id), ("key", app.key)):
            first = seen[name].setdefault(value, i)
            if first != i:
                c.add(
                    f"{where}.{name}",
                    f"{value!r} is already the {name} of apps[{first}]; "
                    f"app {name}s must be unique",
                )
        for name in _APP_RATES:
            c.rate(f"{where}.{name}", getattr(app, name))
        for name in _APP_OVERRIDES:
            value = getattr(app, name)
            if value is not None:
                c.positive(f"{where}.{name}", value)
        for j, entry in enumerate(app.allowed_origins):
            problem = origin_pattern_problem(entry)
            if problem is not None:
                c.add(f"{where}.allowed_origins[{j}]", problem)
        _check_webhooks(c, where, app)


def _check_metrics(c: _Checker, config: Config) -> None:
    metrics = config.metrics
    c.not_empty("metrics.host", metrics.host)
    c.port("metrics.port", metrics.port)
    if metrics.enabled and metrics.port != 0 and metrics.port == config.server.port:
        c.add("metrics.port", f"must differ from server.port ({metrics.port})")


def _check_redis_and_ssl(c: _Checker, config: Config) -> None:
    c.not_empty("redis.host", config.redis.host)
    c.port("redis.port", config.redis.port, low=1)
    if config.redis.db < 0:
        c.add("redis.db", f"must be 0 or more, got {config.redis.db}")
    adapter = config.adapter
    for name in ("node_ttl", "heartbeat_interval", "outbox_limit"):
        c.positive(f"adapter.{name}", getattr(adapter, name))
    if adapter.heartbeat_interval * 2 > adapter.node_ttl:
        c.add(
            "adapter.heartbeat_interval",
            f"must be at most half of adapter.node_ttl ({adapter.node_ttl}), "
            f"got {adapter.heartbeat_interval}",
        )
    ssl = config.ssl
    if ssl.cert and not ssl.key:
        c.add("ssl.key", "must be set when ssl.cert is set")
    if ssl.key and not ssl.cert:
        c.add("ssl.cert", "must be set when ssl.key is set")


def validate_config(config: Config) -> list[Problem]:
    """Every value problem of ``config``; an empty list means it can be used."""
    checker = _Checker()
    _check_server(checker, config.server)
    _check_limits(checker, config.limits)
    _check_metrics(checker, config)
    _check_redis_and_ssl(checker, config)
    _check_webhook_delivery(checker, config.webhooks)
    _check_apps(checker, config.apps)
    return checker.problems
