"""
Print a configuration: as plain data or TOML, with every secret masked.

Secrets are the fields named ``secret``, ``password`` and ``passphrase``
wherever they appear, and webhook header values whose name looks like a
credential (``Authorization``, ``X-Api-Key``, …). A set secret prints as
``"****"``; an unset one (``None`` or ``""``) prints as it is, since it hides
nothing.

The TOML writer is a small one of our own: ``msgspec.toml.encode`` needs the
``tomli_w`` package, which is not a dependency. It writes exactly the shapes
the model has (tables, arrays of tables, scalars, arrays and tables of
strings) and leaves out ``None`` values, which TOML cannot express and which
mean "the default" for every optional field. Its output loads back with
``msgspec.toml.decode``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

from .model import MASK, Config, mask_headers

__all__ = ["SECRET_FIELDS", "redacted", "render_toml"]

# Field names whose values are secrets, in any table.
SECRET_FIELDS = frozenset({"secret", "password", "passphrase"})


def _mask(value: Any) -> Any:
    return MASK if value else value


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for name, value in node.items():
            if name in SECRET_FIELDS and isinstance(value, str):
                out[name] = _mask(value)
            elif name == "headers" and isinstance(value, dict):
                out[name] = mask_headers(value)
            else:
                out[name] = _redact(value)
        return out
    if isinstance(node, list):
        return [_redact(item) for item in node]
    return node


def redacted(config: Config) -> dict[str, Any]:
    """``config`` as plain data (``msgspec.to_builtins``) with every secret masked."""
    data: dict[str, Any] = _redact(msgspec.to_builtins(config))
    return data


# ---------------------------------------------------------------------------
# TOML writer

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(value: Any) -> str:
    """A TOML value written inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError(
        f"cannot write {type(value).__name__} as TOML: {json.dumps(repr(value))}"
    )


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) for v in value)
    )


def _table(lines: list[str], header: str, name: str, table: dict[str, Any]) -> None:
    """Write ``table``: plain keys, then sub-tables, then arrays of tables."""
    if header:
        lines.append("")
        lines.append(header)
    for key, value in table.items():
        if value is None or _is_table(value) or _is_table_array(value):
            continue
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        path = f"{name}.{_key(key)}" if name else _key(key)
        if _is_table(value):
            _table(lines, f"[{path}]", path, value)
        elif _is_table_array(value):
            for item in value:
                _table(lines, f"[[{path}]]", path, item)


def render_toml(config: Config) -> str:
    """``config`` as TOML, secrets masked: what ``pbxws config show`` prints."""
    lines: list[str] = []
    _table(lines, "", "", redacted(config))
    return "\n".join(lines).lstrip("\n") + "\n"
