"""Apps (tenants) as the runtime sees them: configuration resolved once.

The config package describes what the operator wrote; an :class:`App` is what
the hot path reads, with every per-app limit already merged with the
server-wide default (:func:`pbxws.config.resolve_limits`).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from pbxws.config import AppConfig, AppLimits, LimitsConfig, resolve_limits

__all__ = ["App", "AppDirectory"]


class App(msgspec.Struct, frozen=True, kw_only=True):
    """One tenant: credentials, flags and resolved limits."""

    id: str
    key: str
    secret: str
    enabled: bool
    # Concurrent connections allowed; -1 means no limit.
    max_connections: int
    enable_client_messages: bool
    enable_user_authentication: bool
    enable_subscription_count: bool
    # Browser origins allowed to connect; empty means any.
    allowed_origins: tuple[str, ...]
    # Client events per connection per second; -1 means no limit.
    max_client_events_per_sec: int
    # HTTP publishes (points = channels) per second, cluster-wide; -1: no limit.
    max_backend_events_per_sec: int
    # HTTP API reads per second, cluster-wide; -1: no limit.
    max_read_req_per_sec: int
    limits: AppLimits

    @classmethod
    def from_config(cls, app: AppConfig, defaults: LimitsConfig) -> App:
        """Resolve ``app``'s overrides against the server-wide ``defaults``."""
        return cls(
            id=app.id,
            key=app.key,
            secret=app.secret,
            enabled=app.enabled,
            max_connections=app.max_connections,
            enable_client_messages=app.enable_client_messages,
            enable_user_authentication=app.enable_user_authentication,
            enable_subscription_count=app.enable_subscription_count,
            allowed_origins=tuple(app.allowed_origins),
            max_client_events_per_sec=app.max_client_events_per_sec,
            max_backend_events_per_sec=app.max_backend_events_per_sec,
            max_read_req_per_sec=app.max_read_req_per_sec,
            limits=resolve_limits(app, defaults),
        )


class AppDirectory:
    """Apps by id (HTTP API) and by key (WebSocket URL)."""

    def __init__(self, apps: Iterable[App]) -> None:
        apps = list(apps)
        # For /apps/{id}/... routes.
        self.by_id: dict[str, App] = {app.id: app for app in apps}
        # For /app/{key} WebSocket URLs.
        self.by_key: dict[str, App] = {app.key: app for app in apps}
