"""
The configuration model: frozen msgspec Structs, one per TOML table.

The TOML keys are the Python field names (snake_case, no renaming), so that
``grep max_connections`` finds the field, the example file and the docs alike.
Every Struct refuses unknown keys: a typo in a config file must fail with the
key path (``Object contains unknown field `max_conections` - at `$.apps[0]```)
rather than be silently ignored.

Decoding only checks types. The checks that need values (ranges, unique app
keys, URLs) live in :mod:`pbxws.config.validate` so that they can report every
problem at once, each with its key path.

Note for subclasses: mypy does not inherit ``frozen`` from a base Struct, so
every Struct below repeats ``frozen=True``.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_APP_KEY",
    "DEFAULT_APP_SECRET",
    "MASK",
    "SECRET_HEADER",
    "AdapterConfig",
    "AppConfig",
    "Config",
    "LimitsConfig",
    "LogLevel",
    "MetricsConfig",
    "RedisConfig",
    "ServerConfig",
    "SslConfig",
    "WebhookConfig",
    "WebhookDeliveryConfig",
    "WebhookEventType",
    "WebhookFilter",
    "default_apps",
    "mask_headers",
    "normalize_path_prefix",
]

# The app Soketi serves when nothing is configured (SOKETI_DEFAULT_APP_*).
DEFAULT_APP_ID = "app-id"
DEFAULT_APP_KEY = "app-key"
DEFAULT_APP_SECRET = "app-secret"  # noqa: S105 - Soketi's public, documented default

# What secrets look like whenever a configuration is printed.
MASK = "****"

LogLevel = Literal["debug", "info", "warning", "error"]

WebhookEventType = Literal[
    "client_event",
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "cache_miss",
    "subscription_count",
]


# Webhook header names whose values are credentials; masked when printed.
SECRET_HEADER = re.compile(r"authorization|token|secret|passw|api[-_]?key|cookie", re.I)


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the values of credential headers replaced by ``MASK``."""
    return {h: MASK if SECRET_HEADER.search(h) else v for h, v in headers.items()}


def _masked_repr(struct: msgspec.Struct, secret: str = "") -> str:
    """``repr(struct)`` with the ``secret`` field and credential headers masked."""
    parts = []
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if name == secret and value:
            value = MASK
        elif name == "headers":
            value = mask_headers(value)
        parts.append(f"{name}={value!r}")
    return f"{type(struct).__name__}({', '.join(parts)})"


def normalize_path_prefix(prefix: str) -> str:
    """
    Drop trailing slashes from a route prefix: ``"/ws/"`` → ``"/ws"``, ``"/"`` → ``""``.

    Whether the result is valid (empty, or starting with ``/``) is checked by
    :func:`pbxws.config.validate.validate_config`.
    """
    return prefix.rstrip("/")


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """
    Shared settings of every config table.

    ``forbid_unknown_fields``: typos are errors, not silently ignored keys.
    ``frozen``: a loaded configuration is a value; nobody changes it at run time.
    ``kw_only``: fields are named at every construction site, so adding one
    never shifts the others.
    """


class ServerConfig(Base, frozen=True):
    """The WebSocket + HTTP API listener and its protocol timings."""

    # Interface to bind (SOKETI_HOST).
    host: str = "0.0.0.0"
    # TCP port of WebSockets and the HTTP API (SOKETI_PORT); 0 picks a free port.
    port: int = 6001
    # Prefix of every route, "" or "/x" (SOKETI_PATH_PREFIX); trailing "/" dropped.
    path_prefix: str = ""
    # Seconds a shutdown takes at most, from the signal to the exit: clients
    # are closed with 4200 (over drain_window), then the node stops
    # (SOKETI_SHUTDOWN_GRACE_PERIOD, in ms).
    shutdown_grace_period: float = 3.0
    # Seconds over which a shutdown spreads its 4200 closes, so that a fleet's
    # clients don't all reconnect at once; None means half the grace period.
    # At most shutdown_grace_period.
    drain_window: float | None = None
    # Percentage of the memory available to the process (the container's
    # limit, else the machine's) above which /accept-traffic answers 503
    # (SOKETI_HTTP_ACCEPT_TRAFFIC_MEMORY_THRESHOLD).
    accept_traffic_memory_threshold: float = 85.0
    # Seconds of silence before the server pings; advertised in connection_established.
    activity_timeout: int = 30
    # Seconds to wait for a pong before closing the connection.
    pong_timeout: float = 30.0
    # Largest inbound WebSocket message, in bytes.
    max_message_size: int = 262144
    # Bytes queued for one connection before it is closed as a slow consumer.
    send_buffer_limit: int = 1048576
    # Largest HTTP API request body, in bytes.
    max_request_size: int = 10485760
    # Seconds an HTTP API auth_timestamp may differ from our clock.
    api_timestamp_tolerance: int = 600
    # Seconds a user-authentication app gives a socket to sign in
    # (SOKETI_USER_AUTHENTICATION_TIMEOUT, in ms).
    user_authentication_timeout: float = 30.0
    # Serve WebSocket upgrades on pbxws's own lean protocol (less memory and
    # CPU per connection); false hands every upgrade to aiohttp instead.
    lean_websockets: bool = True
    # Seconds a publish may wait so that the event loop serves the requests of
    # one window per wake-up, at 4+ per window with API connections to spare
    # (less CPU per event at thousands of events/s; see coalesce.py); 0: off.
    publish_coalescing_window: float = 0.001
    # Log verbosity (SOKETI_DEBUG=true means "debug").
    log_level: LogLevel = "info"

    def __post_init__(self) -> None:
        # Normalised once here so that every consumer can concatenate routes.
        msgspec.structs.force_setattr(
            self, "path_prefix", normalize_path_prefix(self.path_prefix)
        )


class LimitsConfig(Base, frozen=True):
    """Server-wide defaults of the per-app limits (Soketi's defaults)."""

    # Longest channel name (SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH).
    max_channel_name_length: int = 200
    # Longest event name, HTTP and client events (SOKETI_EVENT_MAX_NAME_LENGTH).
    max_event_name_length: int = 200
    # Largest event ``data``, in KiB (SOKETI_EVENT_MAX_SIZE_IN_KB).
    max_event_payload_in_kb: float = 100.0
    # Most channels in one /events publish (SOKETI_EVENT_MAX_CHANNELS_AT_ONCE).
    max_event_channels_at_once: int = 100
    # Most events in one /batch_events call (SOKETI_EVENT_MAX_BATCH_SIZE).
    max_event_batch_size: int = 10
    # Most distinct users in one presence channel (SOKETI_PRESENCE_MAX_MEMBERS).
    max_presence_members_per_channel: int = 100
    # Largest presence ``user_info``, in KiB (SOKETI_PRESENCE_MAX_MEMBER_SIZE).
    max_presence_member_size_in_kb: float = 2.0
    # Seconds a cache channel keeps its last event (SOKETI_CHANNEL_CACHE_TTL).
    channel_cache_ttl: int = 3600
    # Most channels one connection may be subscribed to at once; more are
    # refused with a LimitReached subscription_error (Soketi has no limit).
    max_channels_per_connection: int = 1000


class MetricsConfig(Base, frozen=True):
    """The Prometheus / health listener (Soketi's port 9601)."""

    # Serve /metrics, /usage and /ready on their own port (SOKETI_METRICS_ENABLED).
    enabled: bool = True
    # Interface to bind (SOKETI_METRICS_HOST).
    host: str = "0.0.0.0"
    # TCP port (SOKETI_METRICS_SERVER_PORT); 0 picks a free port.
    port: int = 9601
    # Prefix of every metric name (SOKETI_METRICS_PROMETHEUS_PREFIX).
    prefix: str = "soketi_"


class AdapterConfig(Base, frozen=True):
    """How nodes share channels and presence: alone (local) or through Redis."""

    # "local" (one node) or "redis" (SOKETI_ADAPTER_DRIVER).
    driver: Literal["local", "redis"] = "local"
    # Prefix of the adapter's pub/sub channel names (SOKETI_ADAPTER_REDIS_PREFIX).
    redis_prefix: str = ""
    # Seconds a node's lease lives without renewal; a node silent that long is
    # dead and its members are removed by the survivors (redis driver).
    node_ttl: float = 5.0
    # Seconds between lease renewals, janitor sweeps and reconnect attempts.
    heartbeat_interval: float = 1.0
    # Publications kept for the other nodes while Redis is unreachable; past
    # this the HTTP API answers 503 so the publisher retries.
    outbox_limit: int = 10000


class RedisConfig(Base, frozen=True):
    """The Redis server used by the redis adapter (Soketi's ``database.redis``)."""

    # SOKETI_DB_REDIS_HOST.
    host: str = "127.0.0.1"
    # SOKETI_DB_REDIS_PORT.
    port: int = 6379
    # Database number (SOKETI_DB_REDIS_DB).
    db: int = 0
    # ACL user name, None for none (SOKETI_DB_REDIS_USERNAME).
    username: str | None = None
    # Password, None for none (SOKETI_DB_REDIS_PASSWORD). Masked when printed.
    password: str | None = None
    # Prefix of every key (SOKETI_DB_REDIS_KEY_PREFIX).
    key_prefix: str = ""
    # Connect with TLS (rediss://).
    tls: bool = False

    def __repr__(self) -> str:
        return _masked_repr(self, "password")


class SslConfig(Base, frozen=True):
    """TLS for the main listener; enabled when ``cert`` and ``key`` are set."""

    # Certificate chain file, PEM (SOKETI_SSL_CERT).
    cert: str = ""
    # Private key file, PEM (SOKETI_SSL_KEY).
    key: str = ""
    # Passphrase of the key, "" for none (SOKETI_SSL_PASS). Masked when printed.
    passphrase: str = ""
    # CA bundle file (SOKETI_SSL_CA).
    ca: str = ""

    @property
    def enabled(self) -> bool:
        """Whether the main listener speaks TLS."""
        return bool(self.cert and self.key)

    def __repr__(self) -> str:
        return _masked_repr(self, "passphrase")


class WebhookFilter(Base, frozen=True):
    """Channel-name conditions of a webhook; all given conditions must hold."""

    channel_name_starts_with: str | None = None
    channel_name_ends_with: str | None = None


class WebhookConfig(Base, frozen=True):
    """One webhook endpoint of an app (Soketi's webhook object, ``url`` form)."""

    # http(s) endpoint receiving signed POSTs.
    url: str
    # Events sent to this endpoint.
    event_types: list[WebhookEventType]
    # Extra request headers (cannot replace X-Pusher-Key / X-Pusher-Signature).
    headers: dict[str, str] = {}
    # Only channels that match; None for every channel.
    filter: WebhookFilter | None = None

    def __repr__(self) -> str:
        return _masked_repr(self)


class WebhookDeliveryConfig(Base, frozen=True):
    """How every app's webhooks are delivered (the ``[webhooks]`` table)."""

    # Hold events for batching_duration so that they go out together; without
    # it they go out at once (a backlog behind a slow receiver is still sent
    # in batches) (SOKETI_WEBHOOKS_BATCHING).
    batching: bool = False
    # Seconds a batch collects events (SOKETI_WEBHOOKS_BATCHING_DURATION, in ms).
    batching_duration: float = 0.05
    # Seconds channel_vacated and member_removed wait; dropped if the channel
    # is occupied again (the user back) by then, as Pusher does.
    removal_delay: float = 3.0
    # Seconds a delivery is retried, counted from its first attempt.
    retry_period: float = 300.0
    # Seconds before the first retry; doubled at each retry up to retry_max_delay.
    retry_initial_delay: float = 1.0
    retry_max_delay: float = 60.0
    # Seconds a receiver has to answer one request.
    request_timeout: float = 5.0
    # Events waiting for delivery at most (in memory, or in Redis with the
    # redis adapter); events beyond it are dropped, logged and counted.
    queue_limit: int = 10000
    # Requests in flight at once from this node (one per endpoint at a time).
    concurrency: int = 16


class AppConfig(Base, frozen=True):
    """
    One tenant: credentials, switches, rate limits and per-app limit overrides.

    The limit fields that default to None fall back to :class:`LimitsConfig`;
    :func:`pbxws.config.limits.resolve_limits` does that once per app.
    ``repr()`` masks the secret, so an app can be logged.
    """

    id: str
    key: str
    # HMAC key of every signature. Masked when printed.
    secret: str
    # Disabled apps refuse connections (4003).
    enabled: bool = True
    # Concurrent connections, -1 for unlimited (4100 beyond).
    max_connections: int = -1
    # Allow ``client-*`` events from sockets.
    enable_client_messages: bool = False
    # Enable pusher:signin and the user authentication timeout.
    enable_user_authentication: bool = False
    # Send pusher_internal:subscription_count to subscribers of non-presence
    # channels when their cluster-wide subscription count changes.
    enable_subscription_count: bool = False
    # Origins browsers may connect from ("https://app.example.com",
    # "*.example.com", "*"); empty allows any. Others are closed with 4009.
    allowed_origins: list[str] = []
    # HTTP publishes per second, counted per channel; -1 for unlimited.
    max_backend_events_per_sec: int = -1
    # Client events per socket per second; -1 for unlimited (4301 beyond).
    max_client_events_per_sec: int = -1
    # HTTP API reads per second; -1 for unlimited (429 beyond).
    max_read_req_per_sec: int = -1
    # Overrides of LimitsConfig; None means "use the server-wide value".
    max_presence_members_per_channel: int | None = None
    max_presence_member_size_in_kb: float | None = None
    max_channel_name_length: int | None = None
    max_event_channels_at_once: int | None = None
    max_event_name_length: int | None = None
    max_event_payload_in_kb: float | None = None
    max_event_batch_size: int | None = None
    max_channels_per_connection: int | None = None
    # Webhook endpoints of this app.
    webhooks: list[WebhookConfig] = []

    def __repr__(self) -> str:
        return _masked_repr(self, "secret")


def default_apps() -> list[AppConfig]:
    """The app list of a zero configuration: Soketi's single default app."""
    return [
        AppConfig(id=DEFAULT_APP_ID, key=DEFAULT_APP_KEY, secret=DEFAULT_APP_SECRET)
    ]


class Config(Base, frozen=True):
    """The whole configuration of one pbxws process."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    adapter: AdapterConfig = msgspec.field(default_factory=AdapterConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    ssl: SslConfig = msgspec.field(default_factory=SslConfig)
    webhooks: WebhookDeliveryConfig = msgspec.field(
        default_factory=WebhookDeliveryConfig
    )
    # The tenants; the first one is the one SOKETI_DEFAULT_APP_* variables change.
    apps: list[AppConfig] = msgspec.field(default_factory=default_apps)
