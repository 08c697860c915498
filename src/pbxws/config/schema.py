"""
Settings addressed by key path: where a value goes, what type it must have.

Environment variables and CLI overrides both name one setting: a field of a
section (``("server", "port")``) or a field of one app (``("apps", 0, "key")``).
This module finds the field's type from the model (never from a hand-kept
list), converts a value to it, and words the problem when that fails so that
it names the variable or flag the value came from.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, NamedTuple

import msgspec
import msgspec.inspect as mi

from .model import AppConfig, Config

__all__ = [
    "KeyPath",
    "Setting",
    "SettingError",
    "app_fields",
    "convert_text",
    "convert_value",
    "describe_type",
    "format_key_path",
    "parse_like_soketi",
    "section_fields",
    "setting_type",
]

# ("server", "port") or ("apps", 0, "key").
KeyPath = tuple[str | int, ...]


class Setting(NamedTuple):
    """One value for one field, and where it came from (a variable, a flag)."""

    source: str
    path: KeyPath
    value: Any


class SettingError(ValueError):
    """One setting's value cannot be used; the message names its source."""


def format_key_path(path: KeyPath) -> str:
    """A key path as problems show it: ``("apps", 1, "key")`` → ``apps[1].key``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@functools.cache
def section_fields() -> dict[str, dict[str, Any]]:
    """Every section of :class:`Config` but ``apps``, mapped to its fields' types."""
    sections: dict[str, dict[str, Any]] = {}
    for section in msgspec.structs.fields(Config):
        if section.name == "apps":
            continue
        sections[section.name] = {
            f.name: f.type for f in msgspec.structs.fields(section.type)
        }
    return sections


@functools.cache
def app_fields() -> dict[str, Any]:
    """Every field of :class:`AppConfig`, mapped to its type."""
    return {f.name: f.type for f in msgspec.structs.fields(AppConfig)}


def setting_type(path: KeyPath) -> Any:
    """
    The type of the field at ``path``.

    Raises:
        KeyError: If ``path`` names no field; then the caller reports an
            unknown setting.
    """
    match path:
        case (str(section), str(name)) if section != "apps":
            return section_fields()[section][name]
        case ("apps", int(), str(name)):
            return app_fields()[name]
    raise KeyError(format_key_path(path))


def describe_type(tp: Any) -> str:
    """A short human name of a field type: ``int``, ``one of "local", "redis"``."""
    return _describe(mi.type_info(tp))


def _describe(info: mi.Type) -> str:
    match info:
        case mi.IntType():
            return "int"
        case mi.FloatType():
            return "float"
        case mi.BoolType():
            return "bool"
        case mi.StrType():
            return "str"
        case mi.NoneType():
            return "null"
        case mi.LiteralType(values=values):
            return "one of " + ", ".join(json.dumps(v) for v in values)
        case mi.UnionType(types=types):
            return " or ".join(_describe(t) for t in types)
        case mi.ListType(item_type=item):
            return f"list of {_describe(item)}"
        case mi.StructType() | mi.DictType():
            return "table"
    return str(info)


def _accepts_str(tp: Any) -> bool:
    info = mi.type_info(tp)
    if isinstance(info, mi.UnionType):
        return any(isinstance(t, mi.StrType) for t in info.types)
    return isinstance(info, mi.StrType)


def _reject_constant(name: str) -> float:
    # JavaScript's JSON.parse refuses NaN and Infinity; so do we.
    raise ValueError(name)


def parse_like_soketi(text: str) -> Any:
    """
    Read an environment value as Soketi does: ``JSON.parse`` if it parses, else text.

    Like Soketi, ``null`` stays the text ``"null"`` (its ``json !== null`` test).
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text
    return text if value is None else value


def _shown(value: Any) -> str:
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def _convert(source: str, value: Any, tp: Any, shown: str) -> Any:
    try:
        converted = msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if " - at `$" in message:
            # A nested value (webhooks): msgspec's own path says where.
            raise SettingError(f"{source}: {message}") from None
        raise SettingError(
            f"{source}: expected {describe_type(tp)}, got {shown}"
        ) from None
    if isinstance(converted, float) and not math.isfinite(converted):
        raise SettingError(f"{source}: expected a finite number, got {shown}")
    return msgspec.to_builtins(converted)


def convert_text(source: str, text: str, tp: Any) -> Any:
    """
    Convert an environment-style text to ``tp``; return builtins for the raw dict.

    The text is read as Soketi does (:func:`parse_like_soketi`), except that a
    field that takes a string keeps the text as written (``SOKETI_DEFAULT_APP_ID=123``
    is the id ``"123"``, as Soketi makes it).

    Raises:
        SettingError: If the value does not fit; its message starts with
            ``source`` and shows the text:
            ``SOKETI_PORT: expected int, got "abc"``.
    """
    value = parse_like_soketi(text)
    if _accepts_str(tp) and not isinstance(value, str):
        value = text
    return _convert(source, value, tp, json.dumps(text))


def convert_value(source: str, value: Any, tp: Any) -> Any:
    """
    Convert a Python value (a CLI override) to ``tp``.

    Strings are read as by :func:`convert_text`.

    Raises:
        SettingError: If the value does not fit; its message starts with ``source``.
    """
    if isinstance(value, str):
        return convert_text(source, value, tp)
    return _convert(source, value, tp, _shown(value))
