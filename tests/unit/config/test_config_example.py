"""``config.example.toml`` stays loadable, complete and equal to the defaults."""

from __future__ import annotations

from pathlib import Path

import msgspec

from pbxws.config import (
    SOKETI_VARIABLES,
    AppConfig,
    Config,
    load_config,
    pbxws_variables,
    unsupported_features,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


def test_example_decodes_to_the_defaults_plus_a_second_app() -> None:
    """The example's values are the defaults, apart from its second app."""
    config = load_config(EXAMPLE, {})
    assert msgspec.structs.replace(config, apps=config.apps[:1]) == Config()
    assert config.apps[1] == AppConfig(
        id="chat",
        key="chat-key",
        secret="chat-secret-change-me",
        enable_client_messages=True,
        enable_user_authentication=True,
        max_connections=10000,
        max_client_events_per_sec=10,
        max_presence_members_per_channel=50,
        max_event_payload_in_kb=20.0,
    )
    assert unsupported_features(config) == []


def test_example_mentions_every_variable() -> None:
    """Every PBXWS_* and mapped SOKETI_* variable is named in the example."""
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [n for n in [*pbxws_variables(), *SOKETI_VARIABLES] if n not in text]
    assert missing == []


def test_example_shows_every_option() -> None:
    """Every field of every table appears as a (possibly commented) key line."""
    keys = {
        line.lstrip("# ").split("=")[0].strip()
        for line in EXAMPLE.read_text(encoding="utf-8").splitlines()
        if "=" in line
    }
    for section in msgspec.structs.fields(Config):
        struct = AppConfig if section.name == "apps" else section.type
        for field in msgspec.structs.fields(struct):
            assert field.name in keys, f"{section.name}.{field.name}"


def test_example_commented_webhook_is_valid(tmp_path: Path) -> None:
    """The commented-out webhook block decodes and validates once uncommented."""
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("# [[apps.webhooks]]")
    block = "\n".join(line.removeprefix("# ") for line in text[start:].splitlines())
    path = tmp_path / "with-webhooks.toml"
    path.write_text(text[:start] + block, encoding="utf-8")
    (hook,) = load_config(path, {}).apps[1].webhooks
    assert hook.url.startswith("https://")
    assert hook.filter is not None
