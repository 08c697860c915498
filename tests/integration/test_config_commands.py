"""``pbxws config validate`` and ``show`` as real processes, the way CI runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, hermetic_env, pbxws_executable

EXAMPLE = ROOT / "config.example.toml"
CONFIG_ERROR = 2


def pbxws(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``pbxws ARGS`` with only the given pbxws/Soketi variables set."""
    return subprocess.run(
        [*pbxws_executable(), *args],
        capture_output=True,
        text=True,
        env=hermetic_env({"SOKETI_SHUTDOWN_GRACE_PERIOD": "", **(env or {})}),
        timeout=60,
        check=False,
    )


def test_the_example_config_validates() -> None:
    """CI's check: config.example.toml is a configuration a server starts with."""
    done = pbxws("config", "validate", str(EXAMPLE))
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok: 2 app(s)\n", "")


def test_show_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    """`config show` prints TOML that loads again, and never a secret."""
    done = pbxws(
        "config",
        "show",
        str(EXAMPLE),
        env={"SOKETI_DB_REDIS_PASSWORD": "redis-pw-1", "SOKETI_SSL_PASS": "tls-pw-2"},
    )
    assert done.returncode == 0, done.stderr
    for secret in ("app-secret", "chat-secret-change-me", "redis-pw-1", "tls-pw-2"):
        assert secret not in done.stdout
    assert 'secret = "****"' in done.stdout
    shown = tmp_path / "shown.toml"
    shown.write_text(done.stdout)
    # The masked output is itself a valid configuration.
    again = pbxws("config", "validate", str(shown))
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        pytest.param(
            "[server]\nprot = 6001\n",
            {},
            "Object contains unknown field `prot` - at `$.server`",
            id="unknown-key",
        ),
        pytest.param(
            '[server]\nport = "six thousand"\n',
            {},
            "Expected `int`, got `str` - at `$.server.port`",
            id="wrong-type",
        ),
        pytest.param(
            "",
            {"SOKETI_PORT": "not-a-port"},
            "SOKETI_PORT",
            id="bad-soketi-env-value",
        ),
        pytest.param(
            "",
            {"PBXWS_SERVER_DRAIN_WINDOW": "soon"},
            "PBXWS_SERVER_DRAIN_WINDOW",
            id="bad-pbxws-env-value",
        ),
        pytest.param(
            "[server]\nshutdown_grace_period = 2.0\ndrain_window = 5.0\n",
            {},
            "server.drain_window: must be at most server.shutdown_grace_period",
            id="drain-window-longer-than-grace",
        ),
    ],
)
def test_validate_names_the_problem_and_exits_2(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    """A broken file or variable exits 2 with one line naming the key and the problem."""
    path = tmp_path / "broken.toml"
    path.write_text(text)
    done = pbxws("config", "validate", str(path), env=env)
    assert done.returncode == CONFIG_ERROR
    assert done.stdout == ""
    problems = done.stderr.splitlines()
    assert any(expected in line for line in problems), done.stderr


def test_validate_reports_every_problem_at_once(tmp_path: Path) -> None:
    """Several bad values give several lines, not just the first."""
    path = tmp_path / "broken.toml"
    path.write_text(
        "[server]\nport = 70000\naccept_traffic_memory_threshold = 150.0\n"
        "[metrics]\nport = -1\n"
    )
    done = pbxws("config", "validate", str(path))
    assert done.returncode == CONFIG_ERROR
    lines = done.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("server.port: ")
    assert any(
        line.startswith("server.accept_traffic_memory_threshold: ") for line in lines
    )
    assert any(line.startswith("metrics.port: ") for line in lines)


def test_serve_refuses_a_broken_config(tmp_path: Path) -> None:
    """`pbxws serve` with a broken file exits 2 before binding anything."""
    path = tmp_path / "broken.toml"
    path.write_text("[server]\nprot = 6001\n")
    done = pbxws("serve", "--config", str(path))
    assert done.returncode == CONFIG_ERROR
    assert "unknown field `prot`" in done.stderr
