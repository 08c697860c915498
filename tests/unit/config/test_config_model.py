"""The model: defaults, limits resolution, secret masking."""

from __future__ import annotations

import msgspec
import pytest

from pbxws.config import (
    AppConfig,
    AppLimits,
    Config,
    LimitsConfig,
    RedisConfig,
    ServerConfig,
    SslConfig,
    WebhookConfig,
    load_config,
    resolve_limits,
)


def test_zero_configuration_is_soketis_defaults() -> None:
    """No file and no environment give Soketi's defaults and its single default app."""
    config = load_config(None, {})
    assert config == Config()
    assert config.apps == [AppConfig(id="app-id", key="app-key", secret="app-secret")]
    server = config.server
    assert (server.host, server.port, server.path_prefix) == ("0.0.0.0", 6001, "")
    assert server.shutdown_grace_period == 3.0
    assert server.activity_timeout == 30
    assert server.pong_timeout == 30.0
    assert server.max_message_size == 262144
    assert server.send_buffer_limit == 1048576
    assert server.max_request_size == 10485760
    assert server.api_timestamp_tolerance == 600
    assert server.user_authentication_timeout == 30.0
    assert server.log_level == "info"
    assert config.limits == LimitsConfig(
        max_channel_name_length=200,
        max_event_name_length=200,
        max_event_payload_in_kb=100,
        max_event_channels_at_once=100,
        max_event_batch_size=10,
        max_presence_members_per_channel=100,
        max_presence_member_size_in_kb=2,
        channel_cache_ttl=3600,
    )
    assert (config.metrics.enabled, config.metrics.port) == (True, 9601)
    assert config.metrics.prefix == "soketi_"
    assert config.adapter.driver == "local"
    assert (config.redis.host, config.redis.port, config.redis.db) == (
        "127.0.0.1",
        6379,
        0,
    )
    assert config.redis.password is None
    assert not config.ssl.enabled


def test_app_defaults_match_soketi() -> None:
    """An app with only credentials gets Soketi's per-app defaults."""
    app = AppConfig(id="a", key="k", secret="s")
    assert app.enabled
    assert app.max_connections == -1
    assert not app.enable_client_messages
    assert not app.enable_user_authentication
    assert app.max_backend_events_per_sec == -1
    assert app.max_client_events_per_sec == -1
    assert app.max_read_req_per_sec == -1
    assert app.max_event_payload_in_kb is None
    assert app.webhooks == []
    assert not app.enable_subscription_count
    assert app.allowed_origins == []


def test_structs_are_frozen() -> None:
    """A loaded configuration cannot be changed in place."""
    config = Config()
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


def test_resolve_limits_uses_server_defaults() -> None:
    """Without overrides an app's limits are the server-wide ones, sizes in bytes."""
    limits = resolve_limits(AppConfig(id="a", key="k", secret="s"), LimitsConfig())
    assert limits == AppLimits(
        max_channel_name_length=200,
        max_event_name_length=200,
        max_event_payload_bytes=100 * 1024,
        max_event_channels_at_once=100,
        max_event_batch_size=10,
        max_presence_members=100,
        max_presence_member_bytes=2 * 1024,
        channel_cache_ttl=3600,
        max_channels_per_connection=1000,
    )


def test_resolve_limits_prefers_app_overrides() -> None:
    """Every per-app override replaces the server-wide value."""
    app = AppConfig(
        id="a",
        key="k",
        secret="s",
        max_presence_members_per_channel=5,
        max_presence_member_size_in_kb=0.5,
        max_channel_name_length=50,
        max_event_channels_at_once=3,
        max_event_name_length=40,
        max_event_payload_in_kb=1.5,
        max_event_batch_size=2,
        max_channels_per_connection=7,
    )
    limits = resolve_limits(app, LimitsConfig(channel_cache_ttl=60))
    assert limits == AppLimits(
        max_channel_name_length=50,
        max_event_name_length=40,
        max_event_payload_bytes=1536,
        max_event_channels_at_once=3,
        max_event_batch_size=2,
        max_presence_members=5,
        max_presence_member_bytes=512,
        channel_cache_ttl=60,
        max_channels_per_connection=7,
    )


def test_resolve_limits_rounds_bytes_like_soketi() -> None:
    """A fractional byte limit rounds down, matching Soketi's ``bytes / 1024 > kb``."""
    app = AppConfig(id="a", key="k", secret="s", max_event_payload_in_kb=0.0015)
    assert resolve_limits(app, LimitsConfig()).max_event_payload_bytes == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [("", ""), ("/", ""), ("/ws", "/ws"), ("/ws/", "/ws"), ("/a/b//", "/a/b")],
)
def test_path_prefix_is_normalised(given: str, expected: str) -> None:
    """Trailing slashes are dropped from the route prefix."""
    assert ServerConfig(path_prefix=given).path_prefix == expected
    config = msgspec.convert({"server": {"path_prefix": given}}, Config)
    assert config.server.path_prefix == expected


def test_repr_masks_secrets() -> None:
    """Printing a config never shows an app secret, a password or a passphrase."""
    config = Config(
        redis=RedisConfig(password="redis-pw"),
        ssl=SslConfig(cert="c", key="k", passphrase="ssl-pp"),
        apps=[
            AppConfig(
                id="a",
                key="k",
                secret="app-sec",
                webhooks=[
                    WebhookConfig(
                        url="https://h",
                        event_types=["cache_miss"],
                        headers={"Authorization": "Bearer tok", "X-Team": "blue"},
                    )
                ],
            )
        ],
    )
    text = repr(config)
    for secret in ("redis-pw", "ssl-pp", "app-sec", "Bearer tok"):
        assert secret not in text
    assert "****" in text
    assert "blue" in text
