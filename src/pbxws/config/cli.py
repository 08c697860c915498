"""
``pbxws config``: check and print the effective configuration.

The group is attached to the main ``pbxws`` command by :mod:`pbxws.cli`. Both
commands read the same sources as ``pbxws start``: FILE (or ``$PBXWS_CONFIG``)
and the environment. Problems go to stderr, one per line, and exit with 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import click

from .errors import ConfigError
from .features import unsupported_features
from .load import load_config_with_warnings
from .model import Config
from .render import render_toml

__all__ = ["EXIT_INVALID", "config"]

# Exit status of a configuration that cannot be used (as click's usage errors).
EXIT_INVALID = 2

_FILE = click.argument(
    "file",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)


def _fail(problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(problem, err=True)
    raise click.exceptions.Exit(EXIT_INVALID)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def _load(file: Path | None) -> Config:
    """The effective configuration; prints the problems and exits 2 if there is none."""
    try:
        config, warnings = load_config_with_warnings(file, os.environ)
    except ConfigError as exc:
        _warn(exc.warnings)
        _fail(exc.problems)
    _warn(warnings)
    return config


@click.group(name="config")
def config() -> None:
    """Check or print the configuration (FILE, else $PBXWS_CONFIG, plus environment)."""


@config.command()
@_FILE
def validate(file: Path | None) -> None:
    """Check the configuration; exit 0 if a server would start with it, else 2."""
    loaded = _load(file)
    problems = unsupported_features(loaded)
    if problems:
        _fail(problems)
    click.echo(f"ok: {len(loaded.apps)} app(s)")


@config.command()
@_FILE
def show(file: Path | None) -> None:
    """Print the effective configuration as TOML, with every secret masked."""
    click.echo(render_toml(_load(file)), nl=False)
