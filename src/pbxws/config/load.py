"""
Build the one :class:`Config` of a process from its four sources.

Precedence, lowest first: the model's defaults < the TOML file < the
environment (``SOKETI_*``, then ``PBXWS_*``) < overrides (CLI flags, given as
dotted paths such as ``"server.port"``).

The sources are merged into one raw dict, which ``msgspec.convert`` turns into
a Config once. Environment values and overrides are converted one by one
*before* the merge, so that a bad value is reported with its variable or flag;
whatever still fails in the final conversion came from the file and is
reported with the file's name and msgspec's ``$.apps[0]`` path. Value checks
(:mod:`pbxws.config.validate`) run last. Every problem found is reported in one
:class:`ConfigError`, not just the first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec

from .env import read_environment
from .errors import ConfigError
from .model import (
    DEFAULT_APP_ID,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    AppConfig,
    Config,
)
from .schema import (
    KeyPath,
    Setting,
    SettingError,
    convert_value,
    format_key_path,
    setting_type,
)
from .validate import validate_config

__all__ = ["load_config", "load_config_with_warnings"]

_NO_OVERRIDES: Mapping[str, object] = MappingProxyType({})

# "server.port", "apps.1.key" or "apps[1].key".
_OVERRIDE = re.compile(r"(?:apps(?:\.(\d+)|\[(\d+)\])|([a-z_]+))\.([a-z_]+)")

Raw = dict[str, Any]


def _read_file(path: Path, problems: list[str]) -> Raw | None:
    """The file's TOML as plain data, or None (and a problem) if it can't be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{path}: no such file")
        return None
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}")
        return None
    try:
        raw: Raw = msgspec.toml.decode(data)
    except msgspec.DecodeError as exc:
        problems.append(f"{path}: invalid TOML: {exc}")
        return None
    return raw


def _override_path(key: str) -> KeyPath | None:
    """The field an override key names, or None if it names none."""
    match = _OVERRIDE.fullmatch(key)
    if match is None:
        return None
    dotted, bracketed, section, name = match.groups()
    index = dotted or bracketed
    path: KeyPath = ("apps", int(index), name) if index else (section, name)
    try:
        setting_type(path)
    except KeyError:
        return None
    return path


def _parse_overrides(
    overrides: Mapping[str, object], problems: list[str]
) -> list[Setting]:
    settings: list[Setting] = []
    for key, value in overrides.items():
        source = f"override {key}"
        path = _override_path(key)
        if path is None:
            problems.append(f"{source}: unknown setting")
            continue
        try:
            value = convert_value(source, value, setting_type(path))
        except SettingError as exc:
            problems.append(str(exc))
            continue
        settings.append(Setting(source, path, value))
    return settings


def _default_app() -> Raw:
    return {"id": DEFAULT_APP_ID, "key": DEFAULT_APP_KEY, "secret": DEFAULT_APP_SECRET}


def _apply(raw: Raw, setting: Setting, problems: list[str]) -> None:
    """
    Put one setting into the raw dict.

    An ``apps[0]`` setting changes the file's first app, or the built-in
    default app when the file has none (Soketi's ``appManager.array.apps.0``).
    Values that don't fit the file's shape (a section that is not a table) are
    left alone: the final conversion reports the file's mistake.
    """
    path = setting.path
    if path[0] == "apps":
        index, name = path[1], path[2]
        apps = raw.get("apps")
        if not apps:
            apps = [_default_app()]
            if index == 0:
                raw["apps"] = apps
        if not isinstance(apps, list):
            return
        if not isinstance(index, int) or index >= len(apps):
            problems.append(
                f"{setting.source}: there is no app {format_key_path(path[:2])}"
            )
            return
        if isinstance(apps[index], dict):
            apps[index][name] = setting.value
        return
    section = raw.setdefault(str(path[0]), {})
    if isinstance(section, dict):
        section[path[1]] = setting.value


def _stringify_app_ids(raw: Raw) -> None:
    """Whole-number app ids become strings, as Soketi's ``setOptions`` does."""
    apps = raw.get("apps")
    if not isinstance(apps, list):
        return
    for app in apps:
        if not isinstance(app, dict):
            continue
        app_id = app.get("id")
        if isinstance(app_id, int) and not isinstance(app_id, bool):
            app["id"] = str(app_id)
        elif isinstance(app_id, float) and app_id.is_integer():
            app["id"] = str(int(app_id))


def _rebase(message: str, prefix: str) -> str:
    """Move a msgspec message's ``$`` path under ``prefix`` (``$.apps[1]``)."""
    head, at, tail = message.rpartition(" - at `$")
    if at:
        return f"{head} - at `{prefix}{tail}"
    return f"{message} - at `{prefix}`"


def _diagnose(raw: Raw) -> list[str]:
    """
    Every conversion error of ``raw``, not just msgspec's first one.

    Converts each top-level key on its own, and each app on its own, so that
    independent mistakes are all reported, still with msgspec's paths.
    """
    found: list[str] = []
    for name, value in raw.items():
        if name == "apps" and isinstance(value, list):
            for i, app in enumerate(value):
                try:
                    msgspec.convert(app, AppConfig)
                except msgspec.ValidationError as exc:
                    found.append(_rebase(str(exc), f"$.apps[{i}]"))
            continue
        try:
            msgspec.convert({name: value}, Config)
        except msgspec.ValidationError as exc:
            found.append(str(exc))
    return found


def _convert(raw: Raw, file: Path | None, problems: list[str]) -> Config | None:
    try:
        return msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        where = f"{file}: " if file is not None else ""
        problems.extend(where + message for message in _diagnose(raw) or [str(exc)])
        return None


def load_config_with_warnings(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, object] = _NO_OVERRIDES,
) -> tuple[Config, list[str]]:
    """
    Load, merge and check the configuration; also return the warnings.

    Args:
        path: The TOML file; None means ``$PBXWS_CONFIG``, or no file if unset.
        environ: The environment, usually ``os.environ``.
        overrides: Values of CLI flags by dotted path (``"server.port"``,
            ``"apps.0.key"``); they win over everything else.

    Returns:
        The configuration, and the warnings about ignored ``SOKETI_*``
        variables, one line each, for the caller to log.

    Raises:
        ConfigError: If anything is wrong; ``problems`` lists every problem
            found, each naming its file, key path or variable. The process
            must not start.
    """
    env = read_environment(environ)
    problems = list(env.problems)
    file = path
    if file is None and env.config_file:
        file = Path(env.config_file)

    raw: Raw | None = {}
    if file is not None:
        raw = _read_file(file, problems)
    settings = env.settings + _parse_overrides(overrides, problems)
    config: Config | None = None
    if raw is not None:
        for setting in settings:
            _apply(raw, setting, problems)
        _stringify_app_ids(raw)
        config = _convert(raw, file, problems)
    if config is not None:
        # The last source to set a field is the one to blame for its value.
        sources = {format_key_path(s.path): s.source for s in settings}
        for problem in validate_config(config):
            source = sources.get(problem.path)
            problems.append(f"{problem} (from {source})" if source else str(problem))
    if problems or config is None:
        raise ConfigError(problems, env.warnings)
    return config, env.warnings


def load_config(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, object] = _NO_OVERRIDES,
) -> Config:
    """
    Load, merge and check the configuration (see :func:`load_config_with_warnings`).

    Raises:
        ConfigError: If anything is wrong; the process must not start.
    """
    return load_config_with_warnings(path, environ, overrides)[0]
