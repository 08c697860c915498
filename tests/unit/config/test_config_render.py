"""Printing a configuration: masking and the TOML writer."""

from __future__ import annotations

import msgspec

from pbxws.config import (
    AppConfig,
    Config,
    RedisConfig,
    ServerConfig,
    SslConfig,
    WebhookConfig,
    WebhookFilter,
    redacted,
    render_toml,
)

TRICKY = Config(
    server=ServerConfig(path_prefix="/p", host='h"o\\s\tt\x01', pong_timeout=0.25),
    redis=RedisConfig(password="pw", username="u"),
    ssl=SslConfig(cert="c", key="k", passphrase=""),
    apps=[
        AppConfig(id="a", key="k", secret="s1", max_event_payload_in_kb=1.5),
        AppConfig(
            id="é",
            key="k2",
            secret="s2",
            webhooks=[
                WebhookConfig(
                    url="https://h/1",
                    event_types=["client_event", "member_added"],
                    headers={"X-Api-Key": "abc", "X-Team": "blue", "a b": "c"},
                    filter=WebhookFilter(channel_name_starts_with="private-"),
                ),
                WebhookConfig(url="https://h/2", event_types=["cache_miss"]),
            ],
        ),
    ],
)


def _unmasked(config: Config) -> Config:
    """``config`` with its secrets replaced as ``show`` replaces them."""
    apps = [msgspec.structs.replace(a, secret="****") for a in config.apps]
    hooks = apps[1].webhooks
    hooks[0] = msgspec.structs.replace(
        hooks[0], headers={**hooks[0].headers, "X-Api-Key": "****"}
    )
    return msgspec.structs.replace(
        config,
        redis=msgspec.structs.replace(config.redis, password="****"),
        apps=apps,
    )


def test_rendered_toml_loads_back() -> None:
    """The TOML written for a config decodes to the same config, secrets masked."""
    text = render_toml(TRICKY)
    assert msgspec.toml.decode(text.encode(), type=Config) == _unmasked(TRICKY)


def test_default_config_round_trips_except_the_secret() -> None:
    """The default configuration's TOML is the defaults with the secret masked."""
    shown = msgspec.toml.decode(render_toml(Config()).encode(), type=Config)
    assert shown.apps[0].secret == "****"
    assert msgspec.structs.replace(shown, apps=Config().apps) == Config()


def test_unset_secrets_stay_unset() -> None:
    """An empty passphrase and a None password are shown as unset, not masked."""
    data = redacted(Config())
    assert data["ssl"]["passphrase"] == ""
    assert data["redis"]["password"] is None
    assert "password" not in render_toml(Config())


def test_credential_headers_are_masked() -> None:
    """Webhook header values that look like credentials are masked; others are not."""
    headers = redacted(TRICKY)["apps"][1]["webhooks"][0]["headers"]
    assert headers == {"X-Api-Key": "****", "X-Team": "blue", "a b": "c"}
