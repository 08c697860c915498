"""The environment: SOKETI_* compatibility, PBXWS_* variables, precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from pbxws.config import (
    SOKETI_VARIABLES,
    Config,
    ConfigError,
    WebhookConfig,
    WebhookFilter,
    load_config,
    load_config_with_warnings,
    pbxws_variables,
)
from pbxws.config.soketi import CHECKED, IGNORED


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pbxws.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(environ: dict[str, str], path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ)
    return info.value.problems


def _get(config: Config, path: tuple[str | int, ...]) -> Any:
    node: Any = config
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    return node


WEBHOOKS_JSON = (
    '[{"url": "https://h.example/hook", "event_types": ["member_added"],'
    ' "headers": {"X-A": "1"}, "filter": {"channel_name_ends_with": "-x"}}]'
)

# Every mapped Soketi variable: (variable, value, field, expected value).
# All of them are set at once, as a Soketi deployment would.
SOKETI_ROWS: list[tuple[str, str, tuple[str | int, ...], Any]] = [
    ("SOKETI_HOST", "127.0.0.2", ("server", "host"), "127.0.0.2"),
    ("SOKETI_PORT", "6002", ("server", "port"), 6002),
    ("SOKETI_PATH_PREFIX", "/soketi", ("server", "path_prefix"), "/soketi"),
    ("SOKETI_SHUTDOWN_GRACE_PERIOD", "1500", ("server", "shutdown_grace_period"), 1.5),
    (
        "SOKETI_HTTP_ACCEPT_TRAFFIC_MEMORY_THRESHOLD",
        "90",
        ("server", "accept_traffic_memory_threshold"),
        90.0,
    ),
    (
        "SOKETI_USER_AUTHENTICATION_TIMEOUT",
        "5000",
        ("server", "user_authentication_timeout"),
        5.0,
    ),
    ("SOKETI_DEFAULT_APP_ID", "123", ("apps", 0, "id"), "123"),
    ("SOKETI_DEFAULT_APP_KEY", "soketi-key", ("apps", 0, "key"), "soketi-key"),
    (
        "SOKETI_DEFAULT_APP_SECRET",
        "soketi-secret",
        ("apps", 0, "secret"),
        "soketi-secret",
    ),
    ("SOKETI_DEFAULT_APP_MAX_CONNS", "10", ("apps", 0, "max_connections"), 10),
    (
        "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES",
        "true",
        ("apps", 0, "enable_client_messages"),
        True,
    ),
    ("SOKETI_DEFAULT_APP_ENABLED", "false", ("apps", 0, "enabled"), False),
    (
        "SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC",
        "5",
        ("apps", 0, "max_backend_events_per_sec"),
        5,
    ),
    (
        "SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC",
        "6",
        ("apps", 0, "max_client_events_per_sec"),
        6,
    ),
    (
        "SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC",
        "7",
        ("apps", 0, "max_read_req_per_sec"),
        7,
    ),
    (
        "SOKETI_DEFAULT_APP_USER_AUTHENTICATION",
        "true",
        ("apps", 0, "enable_user_authentication"),
        True,
    ),
    (
        "SOKETI_DEFAULT_APP_WEBHOOKS",
        WEBHOOKS_JSON,
        ("apps", 0, "webhooks"),
        [
            WebhookConfig(
                url="https://h.example/hook",
                event_types=["member_added"],
                headers={"X-A": "1"},
                filter=WebhookFilter(channel_name_ends_with="-x"),
            )
        ],
    ),
    ("SOKETI_EVENT_MAX_BATCH_SIZE", "20", ("limits", "max_event_batch_size"), 20),
    (
        "SOKETI_EVENT_MAX_CHANNELS_AT_ONCE",
        "50",
        ("limits", "max_event_channels_at_once"),
        50,
    ),
    ("SOKETI_EVENT_MAX_NAME_LENGTH", "150", ("limits", "max_event_name_length"), 150),
    ("SOKETI_EVENT_MAX_SIZE_IN_KB", "0.5", ("limits", "max_event_payload_in_kb"), 0.5),
    (
        "SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH",
        "120",
        ("limits", "max_channel_name_length"),
        120,
    ),
    ("SOKETI_CHANNEL_CACHE_TTL", "60", ("limits", "channel_cache_ttl"), 60),
    (
        "SOKETI_PRESENCE_MAX_MEMBERS",
        "10",
        ("limits", "max_presence_members_per_channel"),
        10,
    ),
    (
        "SOKETI_PRESENCE_MAX_MEMBER_SIZE",
        "4",
        ("limits", "max_presence_member_size_in_kb"),
        4.0,
    ),
    ("SOKETI_METRICS_ENABLED", "false", ("metrics", "enabled"), False),
    ("SOKETI_METRICS_HOST", "127.0.0.3", ("metrics", "host"), "127.0.0.3"),
    ("SOKETI_METRICS_SERVER_PORT", "9700", ("metrics", "port"), 9700),
    ("SOKETI_METRICS_PROMETHEUS_PREFIX", "pbx_", ("metrics", "prefix"), "pbx_"),
    (
        "SOKETI_ADAPTER_REDIS_PREFIX",
        "cluster-a",
        ("adapter", "redis_prefix"),
        "cluster-a",
    ),
    ("SOKETI_DB_REDIS_HOST", "redis", ("redis", "host"), "redis"),
    ("SOKETI_DB_REDIS_PORT", "6380", ("redis", "port"), 6380),
    ("SOKETI_DB_REDIS_DB", "2", ("redis", "db"), 2),
    ("SOKETI_DB_REDIS_USERNAME", "default", ("redis", "username"), "default"),
    ("SOKETI_DB_REDIS_PASSWORD", "12345", ("redis", "password"), "12345"),
    ("SOKETI_DB_REDIS_KEY_PREFIX", "pbx:", ("redis", "key_prefix"), "pbx:"),
    ("SOKETI_SSL_CERT", "/tls/cert.pem", ("ssl", "cert"), "/tls/cert.pem"),
    ("SOKETI_SSL_KEY", "/tls/key.pem", ("ssl", "key"), "/tls/key.pem"),
    ("SOKETI_SSL_PASS", "pp", ("ssl", "passphrase"), "pp"),
    ("SOKETI_SSL_CA", "/tls/ca.pem", ("ssl", "ca"), "/tls/ca.pem"),
    ("SOKETI_WEBHOOKS_BATCHING", "true", ("webhooks", "batching"), True),
    (
        "SOKETI_WEBHOOKS_BATCHING_DURATION",
        "200",
        ("webhooks", "batching_duration"),
        0.2,
    ),
]
SOKETI_ENV = {name: text for name, text, _, _ in SOKETI_ROWS}


def test_soketi_table_covers_every_mapped_variable() -> None:
    """The table below tests every mapped variable, and only those."""
    assert sorted(SOKETI_ENV) == sorted(SOKETI_VARIABLES)


@pytest.mark.parametrize(
    ("name", "path", "expected"),
    [(name, path, expected) for name, _, path, expected in SOKETI_ROWS],
    ids=[row[0] for row in SOKETI_ROWS],
)
def test_soketi_variable_reaches_its_field(
    name: str, path: tuple[str | int, ...], expected: Any
) -> None:
    """Each mapped Soketi variable sets its field, converted to our type and unit."""
    config, warnings = load_config_with_warnings(None, SOKETI_ENV)
    assert _get(config, path) == expected
    assert type(_get(config, path)) is type(expected)
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("SOKETI_SHUTDOWN_GRACE_PERIOD", "shutdown_grace_period"),
        ("SOKETI_USER_AUTHENTICATION_TIMEOUT", "user_authentication_timeout"),
    ],
)
def test_soketi_milliseconds_become_seconds(name: str, field: str) -> None:
    """Soketi's millisecond durations are our seconds, fractions kept."""
    config = load_config(None, {name: "1234"})
    assert getattr(config.server, field) == 1.234


def test_pbxws_durations_are_seconds() -> None:
    """PBXWS_* durations are in seconds, like the file."""
    config = load_config(None, {"PBXWS_SERVER_SHUTDOWN_GRACE_PERIOD": "1.5"})
    assert config.server.shutdown_grace_period == 1.5


@pytest.mark.parametrize(("text", "level"), [("true", "debug"), ("false", "info")])
def test_soketi_debug_sets_log_level(text: str, level: str) -> None:
    """SOKETI_DEBUG=true means log_level debug; false leaves the level alone."""
    assert load_config(None, {"SOKETI_DEBUG": text}).server.log_level == level


def test_webhooks_json_in_environment() -> None:
    """A JSON array of Soketi webhook objects becomes the default app's webhooks."""
    config = load_config(None, {"SOKETI_DEFAULT_APP_WEBHOOKS": WEBHOOKS_JSON})
    (hook,) = config.apps[0].webhooks
    assert hook.url == "https://h.example/hook"
    assert hook.event_types == ["member_added"]
    assert hook.filter == WebhookFilter(channel_name_ends_with="-x")


def test_bad_webhooks_json_names_the_variable_and_path() -> None:
    """A Soketi lambda webhook fails, naming the variable and the JSON path."""
    text = '[{"lambda_function": "f", "event_types": ["cache_miss"]}]'
    (problem,) = _problems({"SOKETI_DEFAULT_APP_WEBHOOKS": text})
    assert problem.startswith("SOKETI_DEFAULT_APP_WEBHOOKS: ")
    assert "`lambda_function`" in problem
    assert "$[0]" in problem


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SOKETI_PORT": "abc"}, 'SOKETI_PORT: expected int, got "abc"'),
        ({"SOKETI_PORT": "1.5"}, 'SOKETI_PORT: expected int, got "1.5"'),
        ({"PBXWS_SERVER_PORT": "abc"}, 'PBXWS_SERVER_PORT: expected int, got "abc"'),
        (
            {"SOKETI_METRICS_ENABLED": "yes"},
            'SOKETI_METRICS_ENABLED: expected bool, got "yes"',
        ),
        (
            {"PBXWS_SERVER_LOG_LEVEL": "verbose"},
            "PBXWS_SERVER_LOG_LEVEL: expected one of "
            '"debug", "error", "info", "warning", got "verbose"',
        ),
        (
            {"PBXWS_LIMITS_MAX_EVENT_PAYLOAD_IN_KB": "NaN"},
            'PBXWS_LIMITS_MAX_EVENT_PAYLOAD_IN_KB: expected a finite number, got "NaN"',
        ),
        (
            {"PBXWS_DEFAULT_APP_MAX_EVENT_BATCH_SIZE": "x"},
            'PBXWS_DEFAULT_APP_MAX_EVENT_BATCH_SIZE: expected int or null, got "x"',
        ),
    ],
)
def test_bad_env_value_names_the_variable(
    environ: dict[str, str], expected: str
) -> None:
    """A value that does not fit its field is reported with the variable's name."""
    assert _problems(environ) == [expected]


def test_every_bad_variable_is_reported() -> None:
    """All bad variables are reported together, not just the first."""
    problems = _problems(
        {"SOKETI_PORT": "a", "SOKETI_DB_REDIS_PORT": "b", "PBXWS_METRICS_PORT": "c"}
    )
    assert [p.split(":")[0] for p in problems] == [
        "SOKETI_DB_REDIS_PORT",
        "SOKETI_PORT",
        "PBXWS_METRICS_PORT",
    ]


def test_environment_wins_over_file(tmp_path: Path) -> None:
    """An environment variable beats the same option in the file."""
    path = _write(tmp_path, '[server]\nport = 7000\n[redis]\nhost = "file"\n')
    config = load_config(path, {"SOKETI_PORT": "7001", "PBXWS_REDIS_HOST": "env"})
    assert config.server.port == 7001
    assert config.redis.host == "env"


def test_pbxws_wins_over_soketi() -> None:
    """A PBXWS_* variable beats the SOKETI_* variable for the same field."""
    environ = {
        "SOKETI_PORT": "7001",
        "PBXWS_SERVER_PORT": "7002",
        "SOKETI_DEBUG": "true",
        "PBXWS_SERVER_LOG_LEVEL": "warning",
        "SOKETI_DEFAULT_APP_KEY": "soketi",
        "PBXWS_DEFAULT_APP_KEY": "pbxws",
    }
    config = load_config(None, environ)
    assert config.server.port == 7002
    assert config.server.log_level == "warning"
    assert config.apps[0].key == "pbxws"


def test_default_app_variables_change_the_files_first_app(tmp_path: Path) -> None:
    """SOKETI_DEFAULT_APP_* modify the file's first app rather than add one."""
    text = (
        '[[apps]]\nid = "a"\nkey = "ka"\nsecret = "sa"\n'
        '[[apps]]\nid = "b"\nkey = "kb"\nsecret = "sb"\n'
    )
    environ = {
        "SOKETI_DEFAULT_APP_SECRET": "rotated",
        "PBXWS_DEFAULT_APP_MAX_CONNECTIONS": "5",
    }
    config = load_config(_write(tmp_path, text), environ)
    assert [(a.id, a.secret, a.max_connections) for a in config.apps] == [
        ("a", "rotated", 5),
        ("b", "sb", -1),
    ]


def test_default_app_variables_can_complete_the_first_app(tmp_path: Path) -> None:
    """A secret kept out of the file can come from the environment."""
    path = _write(tmp_path, '[[apps]]\nid = "a"\nkey = "ka"\n')
    config = load_config(path, {"PBXWS_DEFAULT_APP_SECRET": "from-env"})
    assert config.apps[0].secret == "from-env"


def test_default_app_variables_change_the_builtin_app() -> None:
    """Without a file, SOKETI_DEFAULT_APP_* change Soketi's default app."""
    config = load_config(None, {"SOKETI_DEFAULT_APP_KEY": "k2"})
    assert [(a.id, a.key, a.secret) for a in config.apps] == [
        ("app-id", "k2", "app-secret")
    ]


def test_pbxws_variables_cover_every_field() -> None:
    """Every field of every section and of the default app has its PBXWS_* name."""
    names = pbxws_variables()
    for section in msgspec.structs.fields(Config):
        if section.name == "apps":
            continue
        for field in msgspec.structs.fields(section.type):
            name = f"PBXWS_{section.name}_{field.name}".upper()
            assert names[name] == (section.name, field.name)
    assert names["PBXWS_DEFAULT_APP_ENABLE_CLIENT_MESSAGES"] == (
        "apps",
        0,
        "enable_client_messages",
    )
    assert "PBXWS_METRICS_PREFIX" in names
    assert "PBXWS_REDIS_PASSWORD" in names
    assert "PBXWS_LIMITS_MAX_EVENT_BATCH_SIZE" in names


@pytest.mark.parametrize(
    ("name", "text", "path", "expected"),
    [
        ("PBXWS_SERVER_PONG_TIMEOUT", "12.5", ("server", "pong_timeout"), 12.5),
        (
            "PBXWS_SERVER_SEND_BUFFER_LIMIT",
            "2048",
            ("server", "send_buffer_limit"),
            2048,
        ),
        ("PBXWS_METRICS_PREFIX", "pbxws_", ("metrics", "prefix"), "pbxws_"),
        ("PBXWS_REDIS_PASSWORD", "s3cret", ("redis", "password"), "s3cret"),
        ("PBXWS_REDIS_TLS", "true", ("redis", "tls"), True),
        ("PBXWS_ADAPTER_DRIVER", "redis", ("adapter", "driver"), "redis"),
        (
            "PBXWS_LIMITS_MAX_EVENT_BATCH_SIZE",
            "3",
            ("limits", "max_event_batch_size"),
            3,
        ),
        (
            "PBXWS_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB",
            "7",
            ("apps", 0, "max_event_payload_in_kb"),
            7.0,
        ),
        ("PBXWS_SERVER_HOST", "null", ("server", "host"), "null"),
        ("PBXWS_WEBHOOKS_REMOVAL_DELAY", "0.5", ("webhooks", "removal_delay"), 0.5),
        ("PBXWS_WEBHOOKS_QUEUE_LIMIT", "500", ("webhooks", "queue_limit"), 500),
        (
            "PBXWS_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT",
            "true",
            ("apps", 0, "enable_subscription_count"),
            True,
        ),
        (
            "PBXWS_DEFAULT_APP_ALLOWED_ORIGINS",
            '["https://app.example.com", "*.example.com"]',
            ("apps", 0, "allowed_origins"),
            ["https://app.example.com", "*.example.com"],
        ),
        (
            "PBXWS_LIMITS_MAX_CHANNELS_PER_CONNECTION",
            "50",
            ("limits", "max_channels_per_connection"),
            50,
        ),
        (
            "PBXWS_DEFAULT_APP_MAX_CHANNELS_PER_CONNECTION",
            "20",
            ("apps", 0, "max_channels_per_connection"),
            20,
        ),
    ],
)
def test_pbxws_variable_reaches_its_field(
    name: str, text: str, path: tuple[str | int, ...], expected: Any
) -> None:
    """A PBXWS_* variable sets its field, converted to the field's type."""
    assert _get(load_config(None, {name: text}), path) == expected


def test_unknown_pbxws_variable_is_an_error() -> None:
    """A misspelt PBXWS_* name fails, with a suggestion."""
    assert _problems({"PBXWS_SERVER_PROT": "6001"}) == [
        "PBXWS_SERVER_PROT: unknown variable (did you mean PBXWS_SERVER_PORT?)"
    ]


def test_pbxws_config_names_the_file(tmp_path: Path) -> None:
    """PBXWS_CONFIG is the config file when no path is given."""
    path = _write(tmp_path, "[server]\nport = 7500\n")
    assert load_config(None, {"PBXWS_CONFIG": str(path)}).server.port == 7500


def test_explicit_path_wins_over_pbxws_config(tmp_path: Path) -> None:
    """A path given by the caller beats PBXWS_CONFIG."""
    path = _write(tmp_path, "[server]\nport = 7500\n")
    environ = {"PBXWS_CONFIG": str(tmp_path / "absent.toml")}
    assert load_config(path, environ).server.port == 7500


@pytest.mark.parametrize(
    "name",
    [
        "SOKETI_DB_MYSQL_HOST",
        "SOKETI_APP_MANAGER_DYNAMODB_TABLE",
        "SOKETI_QUEUE_DRIVER",
        "SOKETI_QUEUE_SQS_URL",
        "SOKETI_ADAPTER_NATS_SERVERS",
        "SOKETI_CLUSTER_PORT",
        "SOKETI_CACHE_DRIVER",
        "SOKETI_RATE_LIMITER_DRIVER",
        "SOKETI_HTTP_MAX_REQUEST_SIZE",
        "SOKETI_NOT_A_THING",
    ],
)
def test_irrelevant_or_unknown_soketi_variable_is_a_warning(name: str) -> None:
    """Soketi variables without a meaning here are warnings naming the variable."""
    config, warnings = load_config_with_warnings(None, {name: "x"})
    assert config == Config()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{name} is ignored: ")


def test_every_soketi_variable_is_classified() -> None:
    """All 115 variables of Soketi 1.6's cli.ts are mapped, checked or ignored."""
    groups = [set(SOKETI_VARIABLES), set(CHECKED), set(IGNORED)]
    assert sum(len(g) for g in groups) == 115
    assert len(set().union(*groups)) == 115


def test_empty_soketi_variable_is_unset() -> None:
    """An empty SOKETI_* value is ignored, as Soketi's ``|| null`` does."""
    assert load_config_with_warnings(None, {"SOKETI_PORT": "", "SOKETI_MODE": ""}) == (
        Config(),
        [],
    )


def test_soketi_null_is_text() -> None:
    """``null`` is kept as text, as Soketi's JSON.parse handling does."""
    assert (
        load_config(None, {"SOKETI_DB_REDIS_PASSWORD": "null"}).redis.password == "null"
    )


@pytest.mark.parametrize("driver", ["nats", "cluster"])
def test_unsupported_soketi_adapter_is_an_error(driver: str) -> None:
    """The nats and cluster adapters are refused, saying which ones exist."""
    assert _problems({"SOKETI_ADAPTER_DRIVER": driver}) == [
        f'SOKETI_ADAPTER_DRIVER: "{driver}" is not supported; '
        'only "local" and "redis" are supported'
    ]


def test_soketi_adapter_driver_redis_is_mapped() -> None:
    """SOKETI_ADAPTER_DRIVER=redis selects the redis adapter."""
    assert (
        load_config(None, {"SOKETI_ADAPTER_DRIVER": "redis"}).adapter.driver == "redis"
    )


@pytest.mark.parametrize(
    ("environ", "ok"),
    [
        ({"SOKETI_APP_MANAGER_DRIVER": "array"}, True),
        ({"SOKETI_APP_MANAGER_DRIVER": "mysql"}, False),
        ({"SOKETI_METRICS_DRIVER": "prometheus"}, True),
        ({"SOKETI_METRICS_DRIVER": "statsd"}, False),
        ({"SOKETI_MODE": "full"}, True),
        ({"SOKETI_MODE": "server"}, True),
        ({"SOKETI_MODE": "worker"}, False),
    ],
)
def test_soketi_feature_selectors(environ: dict[str, str], ok: bool) -> None:
    """Feature selectors we implement pass silently; the others are problems."""
    if ok:
        assert load_config_with_warnings(None, environ) == (Config(), [])
    else:
        (problem,) = _problems(environ)
        assert problem.startswith(f"{next(iter(environ))}: ")


def test_warnings_survive_a_failure() -> None:
    """A ConfigError still carries the warnings found before it."""
    with pytest.raises(ConfigError) as info:
        load_config(None, {"SOKETI_PORT": "x", "SOKETI_QUEUE_DRIVER": "sqs"})
    assert [w.split(" ")[0] for w in info.value.warnings] == ["SOKETI_QUEUE_DRIVER"]
