"""``pbxws config validate`` and ``pbxws config show`` through click's CliRunner."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
from click.testing import CliRunner, Result

from pbxws.config import Config
from pbxws.config.cli import config

GOOD = """
[server]
port = 7001

[redis]
password = "redis-password-123"

[ssl]
cert = "/tls/cert.pem"
key = "/tls/key.pem"
passphrase = "ssl-passphrase-456"

[[apps]]
id = "one"
key = "key-one"
secret = "app-secret-789"

[[apps]]
id = 2
key = "key-two"
secret = "second-secret-000"
"""


def _write(tmp_path: Path, text: str, name: str = "pbxws.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _run(args: list[str], **environ: str) -> Result:
    """Invoke ``pbxws config`` with exactly ``environ`` as pbxws/Soketi variables."""
    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(("SOKETI_", "PBXWS_"))
    }
    env.update(environ)
    return CliRunner().invoke(config, args, env=env)


def test_validate_good_file(tmp_path: Path) -> None:
    """A good file exits 0 and says how many apps it has."""
    result = _run(["validate", str(_write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 2 app(s)\n"
    assert result.stderr == ""


def test_validate_without_file_uses_defaults() -> None:
    """With no file and no environment the single default app is valid."""
    result = _run(["validate"])
    assert result.exit_code == 0
    assert result.stdout == "ok: 1 app(s)\n"


def test_validate_falls_back_to_pbxws_config(tmp_path: Path) -> None:
    """Without FILE, PBXWS_CONFIG names the file."""
    result = _run(["validate"], PBXWS_CONFIG=str(_write(tmp_path, GOOD)))
    assert result.stdout == "ok: 2 app(s)\n"


def test_validate_prints_warnings_to_stderr(tmp_path: Path) -> None:
    """Ignored Soketi variables are warnings on stderr; the exit status stays 0."""
    result = _run(["validate"], SOKETI_QUEUE_DRIVER="redis")
    assert result.exit_code == 0
    assert result.stdout == "ok: 1 app(s)\n"
    assert result.stderr.startswith("warning: SOKETI_QUEUE_DRIVER is ignored: ")


def test_validate_unknown_key_exits_2_naming_it(tmp_path: Path) -> None:
    """A misspelt key exits 2 with one line naming the file, the key and its path."""
    path = _write(tmp_path, "[server]\nprot = 6001\n")
    result = _run(["validate", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert str(path) in line
    assert "`prot`" in line
    assert "$.server" in line


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    """Several problems give one line each, including environment ones."""
    text = (
        '[[apps]]\nid = "a"\nkey = "same"\nsecret = "s"\n'
        '[[apps]]\nid = "b"\nkey = "same"\nsecret = "s"\n'
    )
    result = _run(["validate", str(_write(tmp_path, text))], PBXWS_SERVER_PORT="x")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0] == 'PBXWS_SERVER_PORT: expected int, got "x"'
    assert lines[1].startswith("apps[1].key: ")


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    """A missing file is a problem, not a crash."""
    path = tmp_path / "absent.toml"
    result = _run(["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr == f"{path}: no such file\n"


def test_validate_accepts_webhooks_and_redis(tmp_path: Path) -> None:
    """Webhooks and the redis adapter are supported: validate exits 0."""
    text = (
        '[adapter]\ndriver = "redis"\n'
        "[webhooks]\nbatching = true\nremoval_delay = 1.0\n"
        '[[apps]]\nid = "a"\nkey = "k"\nsecret = "s"\n'
        '[[apps.webhooks]]\nurl = "https://h"\nevent_types = ["cache_miss"]\n'
    )
    result = _run(["validate", str(_write(tmp_path, text))])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "ok: 1 app(s)\n"


def test_show_masks_every_secret(tmp_path: Path) -> None:
    """show prints the effective TOML with secrets, passwords and passphrases masked."""
    result = _run(
        ["show", str(_write(tmp_path, GOOD))],
        SOKETI_DEFAULT_APP_SECRET="env-secret-111",
        PBXWS_METRICS_PORT="9700",
    )
    assert result.exit_code == 0, result.output
    for secret in (
        "redis-password-123",
        "ssl-passphrase-456",
        "app-secret-789",
        "second-secret-000",
        "env-secret-111",
    ):
        assert secret not in result.output
    shown = msgspec.toml.decode(result.stdout.encode(), type=Config)
    assert shown.redis.password == "****"
    assert shown.ssl.passphrase == "****"
    assert [app.secret for app in shown.apps] == ["****", "****"]
    assert [app.id for app in shown.apps] == ["one", "2"]
    assert shown.server.port == 7001
    assert shown.metrics.port == 9700


def test_show_broken_file_exits_2(tmp_path: Path) -> None:
    """show refuses a broken file like validate does."""
    result = _run(["show", str(_write(tmp_path, '[server]\nport = "x"\n'))])
    assert result.exit_code == 2
    assert "$.server.port" in result.stderr
    assert result.stdout == ""
