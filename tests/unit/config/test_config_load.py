"""Loading a TOML file: decoding, msgspec paths, value checks, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbxws.config import (
    AppConfig,
    Config,
    ConfigError,
    WebhookConfig,
    WebhookFilter,
    load_config,
    load_config_with_warnings,
    unsupported_features,
)


def _write(tmp_path: Path, text: str, name: str = "pbxws.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    return info.value.problems


GOOD = """
[server]
host = "127.0.0.1"
port = 7001
path_prefix = "/pusher/"
log_level = "debug"

[limits]
max_event_batch_size = 20

[metrics]
enabled = false

[adapter]
driver = "redis"
redis_prefix = "pbx"

[redis]
host = "redis.internal"
password = "hunter2"

[[apps]]
id = "one"
key = "key-one"
secret = "secret-one"
enable_client_messages = true

[[apps]]
id = "two"
key = "key-two"
secret = "secret-two"
max_event_payload_in_kb = 10

[[apps.webhooks]]
url = "https://hooks.example.com/pusher"
event_types = ["channel_occupied", "member_added"]
headers = { X-Team = "blue" }
filter = { channel_name_starts_with = "presence-" }
"""


def test_file_is_decoded(tmp_path: Path) -> None:
    """Every table of a file reaches its Struct; unset keys keep their defaults."""
    config = load_config(_write(tmp_path, GOOD), {})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 7001
    assert config.server.path_prefix == "/pusher"
    assert config.server.log_level == "debug"
    assert config.server.activity_timeout == 30
    assert config.limits.max_event_batch_size == 20
    assert config.limits.max_event_name_length == 200
    assert not config.metrics.enabled
    assert config.adapter.driver == "redis"
    assert config.redis.password == "hunter2"
    assert config.apps[0] == AppConfig(
        id="one", key="key-one", secret="secret-one", enable_client_messages=True
    )
    assert config.apps[1].max_event_payload_in_kb == 10.0
    assert config.apps[1].webhooks == [
        WebhookConfig(
            url="https://hooks.example.com/pusher",
            event_types=["channel_occupied", "member_added"],
            headers={"X-Team": "blue"},
            filter=WebhookFilter(channel_name_starts_with="presence-"),
        )
    ]


def test_file_apps_replace_the_default_app(tmp_path: Path) -> None:
    """A file with [[apps]] serves exactly those apps, not the default one too."""
    config = load_config(_write(tmp_path, GOOD), {})
    assert [app.id for app in config.apps] == ["one", "two"]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    """An empty file is a zero configuration."""
    assert load_config(_write(tmp_path, ""), {}) == Config()


def test_unknown_key_names_its_path_and_file(tmp_path: Path) -> None:
    """A misspelt key fails with msgspec's path and the file's name."""
    path = _write(
        tmp_path, '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\nmax_conections = 5\n'
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: ")
    assert "max_conections" in problem
    assert "$.apps[0]" in problem


def test_unknown_table_is_an_error(tmp_path: Path) -> None:
    """A misspelt table name fails too."""
    (problem,) = _problems(_write(tmp_path, "[sever]\nport = 1\n"))
    assert "unknown field `sever`" in problem


def test_wrong_type_names_its_path(tmp_path: Path) -> None:
    """A value of the wrong type fails with its key path."""
    (problem,) = _problems(_write(tmp_path, '[server]\nport = "6001"\n'))
    assert "Expected `int`, got `str`" in problem
    assert "$.server.port" in problem


def test_every_independent_mistake_is_reported(tmp_path: Path) -> None:
    """Mistakes in different tables and apps are all reported, not just the first."""
    text = """
[server]
port = "x"
[metrics]
enabled = "maybe"
[[apps]]
id = "a"
key = "k"
[[apps]]
id = "b"
key = "k2"
secret = "s"
color = "red"
"""
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 4
    joined = "\n".join(problems)
    for fragment in (
        "$.server.port",
        "$.metrics.enabled",
        "missing required field `secret` - at `$.apps[0]`",
        "unknown field `color` - at `$.apps[1]`",
    ):
        assert fragment in joined
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), {})
    assert str(info.value) == "\n".join(problems)


def test_numeric_app_id_becomes_a_string(tmp_path: Path) -> None:
    """``id = 123`` is the app id "123", as Soketi makes it."""
    config = load_config(
        _write(tmp_path, '[[apps]]\nid = 123\nkey = "k"\nsecret = "s"\n'), {}
    )
    assert config.apps[0].id == "123"


def test_numeric_app_key_is_a_type_error(tmp_path: Path) -> None:
    """Only ids are converted; a numeric key is a mistake."""
    (problem,) = _problems(
        _write(tmp_path, '[[apps]]\nid = "a"\nkey = 1\nsecret = "s"\n')
    )
    assert "$.apps[0].key" in problem


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    """A config file that does not exist is reported, not ignored."""
    path = tmp_path / "absent.toml"
    assert _problems(path) == [f"{path}: no such file"]


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A TOML syntax error is reported with the file's name."""
    path = _write(tmp_path, "[server\nport = 1\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: invalid TOML")


def test_duplicate_app_key_is_an_error(tmp_path: Path) -> None:
    """Two apps with one key fail, naming the second app's key path."""
    text = (
        '[[apps]]\nid = "a"\nkey = "same"\nsecret = "s"\n'
        '[[apps]]\nid = "b"\nkey = "same"\nsecret = "s"\n'
    )
    (problem,) = _problems(_write(tmp_path, text))
    assert problem.startswith("apps[1].key: ")
    assert "apps[0]" in problem


def test_duplicate_app_id_is_an_error(tmp_path: Path) -> None:
    """Two apps with one id fail, naming the second app's id path."""
    text = (
        '[[apps]]\nid = "a"\nkey = "k1"\nsecret = "s"\n'
        '[[apps]]\nid = "a"\nkey = "k2"\nsecret = "s"\n'
    )
    assert [p.split(":")[0] for p in _problems(_write(tmp_path, text))] == [
        "apps[1].id"
    ]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nport = -1\n", "server.port"),
        ("[metrics]\nport = 65536\n", "metrics.port"),
        ("[metrics]\nport = 6001\n", "metrics.port"),
        ("[redis]\nport = 0\n", "redis.port"),
        ('[server]\npath_prefix = "ws"\n', "server.path_prefix"),
        ('[server]\npath_prefix = "/a b"\n', "server.path_prefix"),
        ("[server]\nactivity_timeout = 0\n", "server.activity_timeout"),
        ("[server]\npong_timeout = -1.0\n", "server.pong_timeout"),
        ("[server]\nmax_message_size = 0\n", "server.max_message_size"),
        ("[server]\nsend_buffer_limit = 0\n", "server.send_buffer_limit"),
        ("[server]\nshutdown_grace_period = -1.0\n", "server.shutdown_grace_period"),
        (
            "[server]\npublish_coalescing_window = 0.5\n",
            "server.publish_coalescing_window",
        ),
        (
            "[server]\npublish_coalescing_window = -0.001\n",
            "server.publish_coalescing_window",
        ),
        ("[limits]\nmax_event_payload_in_kb = 0\n", "limits.max_event_payload_in_kb"),
        (
            "[limits]\nmax_presence_member_size_in_kb = nan\n",
            "limits.max_presence_member_size_in_kb",
        ),
        ('[ssl]\ncert = "c.pem"\n', "ssl.key"),
        ('[[apps]]\nid = ""\nkey = "k"\nsecret = "s"\n', "apps[0].id"),
        ('[[apps]]\nid = "a"\nkey = " "\nsecret = "s"\n', "apps[0].key"),
        ('[[apps]]\nid = "a"\nkey = "k"\nsecret = ""\n', "apps[0].secret"),
        (
            '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\nmax_connections = -2\n',
            "apps[0].max_connections",
        ),
        (
            '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\nmax_event_batch_size = 0\n',
            "apps[0].max_event_batch_size",
        ),
        (
            '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
            '[[apps.webhooks]]\nurl = "ftp://x"\nevent_types = ["cache_miss"]\n',
            "apps[0].webhooks[0].url",
        ),
        (
            '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
            '[[apps.webhooks]]\nurl = "https://x"\nevent_types = []\n',
            "apps[0].webhooks[0].event_types",
        ),
        (
            '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
            'allowed_origins = ["https://ok.example", "https://bad/path"]\n',
            "apps[0].allowed_origins[1]",
        ),
        (
            "[limits]\nmax_channels_per_connection = 0\n",
            "limits.max_channels_per_connection",
        ),
        (
            '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
            '[[apps.webhooks]]\nurl = "https://x/a b"\nevent_types = ["cache_miss"]\n',
            "apps[0].webhooks[0].url",
        ),
        (
            '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
            '[[apps.webhooks]]\nurl = "https://x"\n'
            'event_types = ["subscription_count"]\n',
            "apps[0].webhooks[0].event_types",
        ),
        ("[webhooks]\nremoval_delay = -1.0\n", "webhooks.removal_delay"),
        ("[webhooks]\nbatching_duration = nan\n", "webhooks.batching_duration"),
        ("[webhooks]\nretry_initial_delay = 0.0\n", "webhooks.retry_initial_delay"),
        ("[webhooks]\nretry_max_delay = 0.5\n", "webhooks.retry_max_delay"),
        ("[webhooks]\nrequest_timeout = 0.0\n", "webhooks.request_timeout"),
        ("[webhooks]\nqueue_limit = 0\n", "webhooks.queue_limit"),
        ("[webhooks]\nconcurrency = 0\n", "webhooks.concurrency"),
        ("apps = []\n", "apps"),
    ],
)
def test_bad_value_names_its_key_path(tmp_path: Path, text: str, path: str) -> None:
    """Each value check reports the key path of the offending value."""
    problems = _problems(_write(tmp_path, text))
    assert [p.split(": ")[0] for p in problems] == [path]


def test_port_zero_is_allowed(tmp_path: Path) -> None:
    """Port 0 (any free port) is accepted for both listeners: tests rely on it."""
    config = load_config(
        _write(tmp_path, "[server]\nport = 0\n[metrics]\nport = 0\n"), {}
    )
    assert (config.server.port, config.metrics.port) == (0, 0)


def test_webhook_event_type_must_be_known(tmp_path: Path) -> None:
    """An unknown webhook event type fails with its path."""
    text = (
        '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
        '[[apps.webhooks]]\nurl = "https://x"\nevent_types = ["channel_ocupied"]\n'
    )
    (problem,) = _problems(_write(tmp_path, text))
    assert "$.apps[0].webhooks[0].event_types[0]" in problem


def test_overrides_win_over_environment_and_file(tmp_path: Path) -> None:
    """CLI overrides beat the environment, which beats the file."""
    path = _write(tmp_path, '[server]\nport = 7000\nhost = "10.0.0.1"\n')
    environ = {"PBXWS_SERVER_PORT": "7100", "SOKETI_HOST": "10.0.0.2"}
    config = load_config(path, environ, {"server.port": 7200, "apps.0.key": "cli-key"})
    assert config.server.port == 7200
    assert config.server.host == "10.0.0.2"
    assert config.apps[0].key == "cli-key"


def test_override_text_is_converted() -> None:
    """Overrides given as text are converted like environment values."""
    config = load_config(None, {}, {"server.port": "7300", "metrics.enabled": "false"})
    assert config.server.port == 7300
    assert not config.metrics.enabled


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"server.prot": 1}, "override server.prot: unknown setting"),
        ({"port": 1}, "override port: unknown setting"),
        ({"server.port": "abc"}, 'override server.port: expected int, got "abc"'),
        ({"apps[3].key": "k"}, "override apps[3].key: there is no app apps[3]"),
    ],
)
def test_bad_override_names_the_override(
    overrides: dict[str, object], expected: str
) -> None:
    """A bad override is reported with its dotted path."""
    assert _problems_with(overrides) == [expected]


def _problems_with(overrides: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, overrides)
    return info.value.problems


def test_value_problem_names_its_source() -> None:
    """A bad value set by a variable names the variable after the key path."""
    with pytest.raises(ConfigError) as info:
        load_config(None, {"SOKETI_PORT": "70000"})
    assert info.value.problems == [
        "server.port: must be between 0 and 65535, got 70000 (from SOKETI_PORT)"
    ]


def test_load_config_with_warnings_returns_them() -> None:
    """Warnings come back next to the configuration."""
    config, warnings = load_config_with_warnings(None, {"SOKETI_QUEUE_DRIVER": "redis"})
    assert config == Config()
    assert len(warnings) == 1
    assert warnings[0].startswith("SOKETI_QUEUE_DRIVER is ignored")


def test_no_feature_is_unsupported(tmp_path: Path) -> None:
    """Webhooks run: a config with them has no unsupported feature."""
    config = load_config(_write(tmp_path, GOOD), {})
    assert config.apps[1].webhooks
    assert unsupported_features(config) == []
    assert unsupported_features(Config()) == []
