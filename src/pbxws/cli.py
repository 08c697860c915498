"""The ``pbxws`` command: the only module that reads argv, prints or exits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import structlog

from pbxws import __version__
from pbxws.config import (
    Config,
    ConfigError,
    load_config_with_warnings,
    unsupported_features,
)
from pbxws.config.cli import config as config_group
from pbxws.logs import configure_logging

__all__ = ["main"]

# Exit codes, as uvicorn names them.
CONFIG_ERROR: Final = 2
STARTUP_FAILURE: Final = 3

F = TypeVar("F", bound=Callable[..., Any])


def _serve_options(func: F) -> F:
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="TOML configuration file (default: $PBXWS_CONFIG, else none).",
        ),
        click.option("--host", help="Interface of the WebSocket/API port."),
        click.option("--port", type=int, help="WebSocket/API port (0: a free one)."),
        click.option("--metrics-port", type=int, help="Metrics/health port."),
        click.option("--path-prefix", help="Prefix of every route, e.g. /ws."),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            help="Log verbosity.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load(config_file: Path | None, flags: dict[str, Any]) -> Config:
    overrides = {
        "server.host": flags["host"],
        "server.port": flags["port"],
        "metrics.port": flags["metrics_port"],
        "server.path_prefix": flags["path_prefix"],
        "server.log_level": flags["log_level"],
    }
    try:
        config, warnings = load_config_with_warnings(
            config_file,
            os.environ,
            {k: v for k, v in overrides.items() if v is not None},
        )
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"pbxws: config: {problem}", err=True)
        sys.exit(CONFIG_ERROR)
    problems = unsupported_features(config)
    if problems:
        for problem in problems:
            click.echo(f"pbxws: config: {problem}", err=True)
        sys.exit(CONFIG_ERROR)
    configure_logging(config.server.log_level)
    for warning in warnings:
        structlog.get_logger("pbxws.config").warning("config_warning", detail=warning)
    return config


async def _run(config: Config) -> None:
    from pbxws.server import Server  # the composition root, imported when serving

    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # Second signal: leave now, without draining.
            os._exit(128 + signum)
        structlog.get_logger("pbxws").info("shutdown_requested", signal=signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    await server.stop()


def _serve(config_file: Path | None, **flags: Any) -> None:
    config = _load(config_file, flags)
    from pbxws.server import StartupError

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(_run(config))
        else:
            uvloop.run(_run(config))
    except StartupError as exc:
        click.echo(f"pbxws: cannot start: {exc}", err=True)
        sys.exit(STARTUP_FAILURE)


@click.group()
@click.version_option(__version__, prog_name="pbxws")
def main() -> None:
    """pbxws: a Pusher-protocol WebSocket server, drop-in for Soketi."""


@main.command()
@_serve_options
def serve(config_file: Path | None, **flags: Any) -> None:
    """Run the server (WebSockets and HTTP API on 6001, metrics on 9601)."""
    _serve(config_file, **flags)


@main.command()
@_serve_options
def start(config_file: Path | None, **flags: Any) -> None:
    """Run the server; Soketi's name for `serve`."""
    _serve(config_file, **flags)


main.add_command(config_group)
