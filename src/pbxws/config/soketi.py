"""
Soketi's ``SOKETI_*`` environment variables, read the way Soketi 1.6 reads them.

A Docker Compose file written for Soketi must keep working. Soketi's
``src/cli/cli.ts`` knows 115 variables; each one is, here, exactly one of:

* **mapped** (:data:`MAPPED`): it sets one field of the model, with a unit
  conversion where Soketi counts milliseconds and we count seconds;
* **checked** (:data:`CHECKED`): it selects a Soketi feature (adapter, app
  manager, mode, metrics driver); values we implement are accepted, the others
  are problems, because ignoring them would run a different server than the
  operator asked for;
* **ignored** (:data:`IGNORED`): it tunes a Soketi component pbxws does not
  have (MySQL, DynamoDB, SQS, NATS, UDP discovery, queues, …); it gives a
  warning and nothing else.

Any other ``SOKETI_*`` name gives a warning too: Soketi itself ignores names it
does not know, so we must not refuse to start over one.

Values are read like Soketi (``JSON.parse`` when it parses, else the text; an
empty variable counts as unset), then converted to the field's type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from .schema import KeyPath, Setting, SettingError, convert_text, setting_type

__all__ = [
    "CHECKED",
    "DOCUMENTED_ONLY",
    "IGNORED",
    "MAPPED",
    "SoketiVariable",
    "read_soketi",
]

PREFIX: Final = "SOKETI_"


class SoketiVariable(NamedTuple):
    """Where a mapped Soketi variable goes, and how its unit converts."""

    path: KeyPath
    # Soketi's value divided by this is ours: 1000 for milliseconds → seconds.
    divisor: int = 1


def _server(name: str, divisor: int = 1) -> SoketiVariable:
    return SoketiVariable(("server", name), divisor)


def _app(name: str) -> SoketiVariable:
    return SoketiVariable(("apps", 0, name))


MAPPED: Final[Mapping[str, SoketiVariable]] = {
    # Server / misc
    "SOKETI_HOST": _server("host"),
    "SOKETI_PORT": _server("port"),
    "SOKETI_PATH_PREFIX": _server("path_prefix"),
    "SOKETI_SHUTDOWN_GRACE_PERIOD": _server("shutdown_grace_period", 1000),
    "SOKETI_HTTP_ACCEPT_TRAFFIC_MEMORY_THRESHOLD": _server(
        "accept_traffic_memory_threshold"
    ),
    "SOKETI_USER_AUTHENTICATION_TIMEOUT": _server("user_authentication_timeout", 1000),
    # Default app: Soketi's appManager.array.apps.0.*
    "SOKETI_DEFAULT_APP_ID": _app("id"),
    "SOKETI_DEFAULT_APP_KEY": _app("key"),
    "SOKETI_DEFAULT_APP_SECRET": _app("secret"),
    "SOKETI_DEFAULT_APP_MAX_CONNS": _app("max_connections"),
    "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": _app("enable_client_messages"),
    "SOKETI_DEFAULT_APP_ENABLED": _app("enabled"),
    "SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC": _app("max_backend_events_per_sec"),
    "SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC": _app("max_client_events_per_sec"),
    "SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC": _app("max_read_req_per_sec"),
    "SOKETI_DEFAULT_APP_USER_AUTHENTICATION": _app("enable_user_authentication"),
    "SOKETI_DEFAULT_APP_WEBHOOKS": _app("webhooks"),
    # Event, channel and presence limits
    "SOKETI_EVENT_MAX_BATCH_SIZE": SoketiVariable(("limits", "max_event_batch_size")),
    "SOKETI_EVENT_MAX_CHANNELS_AT_ONCE": SoketiVariable(
        ("limits", "max_event_channels_at_once")
    ),
    "SOKETI_EVENT_MAX_NAME_LENGTH": SoketiVariable(("limits", "max_event_name_length")),
    "SOKETI_EVENT_MAX_SIZE_IN_KB": SoketiVariable(
        ("limits", "max_event_payload_in_kb")
    ),
    "SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH": SoketiVariable(
        ("limits", "max_channel_name_length")
    ),
    "SOKETI_CHANNEL_CACHE_TTL": SoketiVariable(("limits", "channel_cache_ttl")),
    "SOKETI_PRESENCE_MAX_MEMBERS": SoketiVariable(
        ("limits", "max_presence_members_per_channel")
    ),
    "SOKETI_PRESENCE_MAX_MEMBER_SIZE": SoketiVariable(
        ("limits", "max_presence_member_size_in_kb")
    ),
    # Metrics
    "SOKETI_METRICS_ENABLED": SoketiVariable(("metrics", "enabled")),
    "SOKETI_METRICS_HOST": SoketiVariable(("metrics", "host")),
    "SOKETI_METRICS_SERVER_PORT": SoketiVariable(("metrics", "port")),
    "SOKETI_METRICS_PROMETHEUS_PREFIX": SoketiVariable(("metrics", "prefix")),
    # Adapter and its Redis server
    "SOKETI_ADAPTER_REDIS_PREFIX": SoketiVariable(("adapter", "redis_prefix")),
    "SOKETI_DB_REDIS_HOST": SoketiVariable(("redis", "host")),
    "SOKETI_DB_REDIS_PORT": SoketiVariable(("redis", "port")),
    "SOKETI_DB_REDIS_DB": SoketiVariable(("redis", "db")),
    "SOKETI_DB_REDIS_USERNAME": SoketiVariable(("redis", "username")),
    "SOKETI_DB_REDIS_PASSWORD": SoketiVariable(("redis", "password")),
    "SOKETI_DB_REDIS_KEY_PREFIX": SoketiVariable(("redis", "key_prefix")),
    # Webhooks
    "SOKETI_WEBHOOKS_BATCHING": SoketiVariable(("webhooks", "batching")),
    "SOKETI_WEBHOOKS_BATCHING_DURATION": SoketiVariable(
        ("webhooks", "batching_duration"), 1000
    ),
    # TLS
    "SOKETI_SSL_CERT": SoketiVariable(("ssl", "cert")),
    "SOKETI_SSL_KEY": SoketiVariable(("ssl", "key")),
    "SOKETI_SSL_PASS": SoketiVariable(("ssl", "passphrase")),
    "SOKETI_SSL_CA": SoketiVariable(("ssl", "ca")),
}

# Variables whose value is checked by code below; the text says what they do here.
CHECKED: Final[Mapping[str, str]] = {
    "SOKETI_DEBUG": "true sets server.log_level to debug",
    "SOKETI_ADAPTER_DRIVER": "adapter.driver; local or redis",
    "SOKETI_APP_MANAGER_DRIVER": "only array (apps from the config file)",
    "SOKETI_METRICS_DRIVER": "only prometheus",
    "SOKETI_MODE": "full or server (the same thing here); worker is refused",
}

_NATS = "the nats adapter is not supported (adapter.driver is local or redis)"
_CLUSTER = (
    "UDP cluster discovery is not supported; nodes meet through the redis adapter"
)
_SQL = "apps come from the config file; SQL app managers are not supported"
_DYNAMO = "apps come from the config file; the DynamoDB app manager is not supported"
_APP_CACHE = "apps come from the config file and are never looked up, so never cached"
_CACHE = "there is no separate cache driver; cache channels live with the adapter"
_QUEUE = (
    "there is no queue driver; webhooks wait in memory, or in Redis with the "
    "redis adapter"
)
_RATE = "there is no rate limiter driver setting"
_REDIS_EXTRA = "this Redis option is not supported; one plain Redis server is used"

IGNORED: Final[Mapping[str, str]] = {
    "SOKETI_ADAPTER_CLUSTER_REQUESTS_TIMEOUT": "the cluster adapter is not supported",
    "SOKETI_ADAPTER_REDIS_CLUSTER_MODE": _REDIS_EXTRA,
    "SOKETI_ADAPTER_REDIS_REQUESTS_TIMEOUT": _REDIS_EXTRA,
    "SOKETI_ADAPTER_REDIS_SUB_OPTIONS": _REDIS_EXTRA,
    "SOKETI_ADAPTER_REDIS_PUB_OPTIONS": _REDIS_EXTRA,
    "SOKETI_ADAPTER_NATS_PREFIX": _NATS,
    "SOKETI_ADAPTER_NATS_SERVERS": _NATS,
    "SOKETI_ADAPTER_NATS_USER": _NATS,
    "SOKETI_ADAPTER_NATS_PASSWORD": _NATS,
    "SOKETI_ADAPTER_NATS_TOKEN": _NATS,
    "SOKETI_ADAPTER_NATS_TIMEOUT": _NATS,
    "SOKETI_ADAPTER_NATS_REQUESTS_TIMEOUT": _NATS,
    "SOKETI_ADAPTER_NATS_NODES_NUMBER": _NATS,
    "SOKETI_APP_MANAGER_CACHE_ENABLED": _APP_CACHE,
    "SOKETI_APP_MANAGER_CACHE_TTL": _APP_CACHE,
    "SOKETI_APP_MANAGER_DYNAMODB_TABLE": _DYNAMO,
    "SOKETI_APP_MANAGER_DYNAMODB_REGION": _DYNAMO,
    "SOKETI_APP_MANAGER_DYNAMODB_ENDPOINT": _DYNAMO,
    "SOKETI_APP_MANAGER_MYSQL_TABLE": _SQL,
    "SOKETI_APP_MANAGER_MYSQL_VERSION": _SQL,
    "SOKETI_APP_MANAGER_POSTGRES_TABLE": _SQL,
    "SOKETI_APP_MANAGER_POSTGRES_VERSION": _SQL,
    "SOKETI_APP_MANAGER_MYSQL_USE_V2": _SQL,
    "SOKETI_CACHE_DRIVER": _CACHE,
    "SOKETI_CACHE_REDIS_CLUSTER_MODE": _CACHE,
    "SOKETI_CACHE_REDIS_OPTIONS": _CACHE,
    "SOKETI_CLUSTER_CHECK_INTERVAL": _CLUSTER,
    "SOKETI_CLUSTER_HOST": _CLUSTER,
    "SOKETI_CLUSTER_IGNORE_PROCESS": _CLUSTER,
    "SOKETI_CLUSTER_BROADCAST_ADDRESS": _CLUSTER,
    "SOKETI_CLUSTER_KEEPALIVE_INTERVAL": _CLUSTER,
    "SOKETI_CLUSTER_MASTER_TIMEOUT": _CLUSTER,
    "SOKETI_CLUSTER_MULTICAST_ADDRESS": _CLUSTER,
    "SOKETI_CLUSTER_NODE_TIMEOUT": _CLUSTER,
    "SOKETI_CLUSTER_PORT": _CLUSTER,
    "SOKETI_CLUSTER_PREFIX": _CLUSTER,
    "SOKETI_CLUSTER_UNICAST_ADDRESSES": _CLUSTER,
    "SOKETI_DB_POOLING_ENABLED": _SQL,
    "SOKETI_DB_POOLING_MIN": _SQL,
    "SOKETI_DB_POOLING_MAX": _SQL,
    "SOKETI_DB_MYSQL_HOST": _SQL,
    "SOKETI_DB_MYSQL_PORT": _SQL,
    "SOKETI_DB_MYSQL_USERNAME": _SQL,
    "SOKETI_DB_MYSQL_PASSWORD": _SQL,
    "SOKETI_DB_MYSQL_DATABASE": _SQL,
    "SOKETI_DB_POSTGRES_HOST": _SQL,
    "SOKETI_DB_POSTGRES_PORT": _SQL,
    "SOKETI_DB_POSTGRES_USERNAME": _SQL,
    "SOKETI_DB_POSTGRES_PASSWORD": _SQL,
    "SOKETI_DB_POSTGRES_DATABASE": _SQL,
    "SOKETI_DB_REDIS_SENTINELS": _REDIS_EXTRA,
    "SOKETI_DB_REDIS_SENTINEL_PASSWORD": _REDIS_EXTRA,
    "SOKETI_DB_REDIS_CLUSTER_NODES": _REDIS_EXTRA,
    "SOKETI_DB_REDIS_INSTANCE_NAME": _REDIS_EXTRA,
    "SOKETI_QUEUE_DRIVER": _QUEUE,
    "SOKETI_QUEUE_REDIS_CONCURRENCY": _QUEUE,
    "SOKETI_QUEUE_REDIS_OPTIONS": _QUEUE,
    "SOKETI_QUEUE_REDIS_CLUSTER_MODE": _QUEUE,
    "SOKETI_QUEUE_SQS_REGION": _QUEUE,
    "SOKETI_QUEUE_SQS_CLIENT_OPTIONS": _QUEUE,
    "SOKETI_QUEUE_SQS_URL": _QUEUE,
    "SOKETI_QUEUE_SQS_ENDPOINT": _QUEUE,
    "SOKETI_QUEUE_SQS_PROCESS_BATCH": _QUEUE,
    "SOKETI_QUEUE_SQS_BATCH_SIZE": _QUEUE,
    "SOKETI_QUEUE_SQS_POLLING_WAIT_TIME_MS": _QUEUE,
    "SOKETI_RATE_LIMITER_DRIVER": _RATE,
    "SOKETI_RATE_LIMITER_REDIS_OPTIONS": _RATE,
    "SOKETI_RATE_LIMITER_REDIS_CLUSTER_MODE": _RATE,
}

# Names Soketi's docs advertise but its code never reads (inventory §14).
DOCUMENTED_ONLY: Final[Mapping[str, str]] = {
    "SOKETI_HTTP_MAX_REQUEST_SIZE": (
        "Soketi documents it but never reads it; "
        "use PBXWS_SERVER_MAX_REQUEST_SIZE (bytes)"
    ),
}


def _quoted(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def _read_checked(
    name: str, text: str, settings: list[Setting], problems: list[str]
) -> None:
    """Apply one variable of :data:`CHECKED`."""
    match name:
        case "SOKETI_DEBUG":
            if convert_text(name, text, bool):
                settings.append(Setting(name, ("server", "log_level"), "debug"))
        case "SOKETI_ADAPTER_DRIVER":
            if text in ("nats", "cluster"):
                problems.append(
                    f"{name}: {_quoted(text)} is not supported; "
                    'only "local" and "redis" are supported'
                )
                return
            path = ("adapter", "driver")
            settings.append(
                Setting(name, path, convert_text(name, text, setting_type(path)))
            )
        case "SOKETI_APP_MANAGER_DRIVER":
            if text != "array":
                problems.append(
                    f"{name}: {_quoted(text)} is not supported; only "
                    '"array" is (apps are configured in the [[apps]] tables)'
                )
        case "SOKETI_METRICS_DRIVER":
            if text != "prometheus":
                problems.append(
                    f'{name}: {_quoted(text)} is not supported; only "prometheus" is'
                )
        case "SOKETI_MODE":
            if text == "worker":
                problems.append(
                    f'{name}: "worker" is not supported: pbxws has no queue '
                    'workers; use "full" or "server"'
                )
            elif text not in ("full", "server"):
                problems.append(
                    f'{name}: expected one of "full", "server", got {json.dumps(text)}'
                )


def read_soketi(
    environ: Mapping[str, str],
) -> tuple[list[Setting], list[str], list[str]]:
    """
    Read every ``SOKETI_*`` variable of ``environ``.

    Returns:
        ``(settings, problems, warnings)``: the field values to apply (in
        variable-name order), the values that cannot be used, and the
        variables that are ignored.
    """
    settings: list[Setting] = []
    problems: list[str] = []
    warnings: list[str] = []
    for name in sorted(environ):
        if not name.startswith(PREFIX):
            continue
        text = environ[name]
        if text == "":
            # Soketi reads `process.env[name] || null`: empty means unset.
            continue
        try:
            if name in MAPPED:
                path, divisor = MAPPED[name]
                value = convert_text(name, text, setting_type(path))
                if divisor != 1:
                    value = value / divisor
                settings.append(Setting(name, path, value))
            elif name in CHECKED:
                _read_checked(name, text, settings, problems)
            elif name in IGNORED:
                warnings.append(f"{name} is ignored: {IGNORED[name]}")
            elif name in DOCUMENTED_ONLY:
                warnings.append(f"{name} is ignored: {DOCUMENTED_ONLY[name]}")
            else:
                warnings.append(f"{name} is ignored: not a Soketi variable")
        except SettingError as exc:
            problems.append(str(exc))
    return settings, problems, warnings
