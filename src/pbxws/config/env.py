"""
The environment: ``PBXWS_*`` variables (ours) on top of ``SOKETI_*`` ones (compat).

``PBXWS_*`` names are generated from the model, never listed by hand:
``PBXWS_<SECTION>_<FIELD>`` for every field of every section
(``PBXWS_SERVER_PORT``, ``PBXWS_LIMITS_MAX_EVENT_BATCH_SIZE``) and
``PBXWS_DEFAULT_APP_<FIELD>`` for every field of the first app. A field added
to the model gets its variable for free.

``PBXWS_`` is our namespace, so an unknown name there is a problem (a typo
must not be silently ignored); the one extra name is ``PBXWS_CONFIG``, the
path of the config file. ``SOKETI_*`` names are handled by
:mod:`pbxws.config.soketi`; a ``PBXWS_*`` variable wins over the ``SOKETI_*``
variable that sets the same field.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .schema import (
    KeyPath,
    Setting,
    SettingError,
    app_fields,
    convert_text,
    section_fields,
    setting_type,
)
from .soketi import read_soketi

__all__ = ["CONFIG_VARIABLE", "EnvReading", "pbxws_variables", "read_environment"]

PREFIX: Final = "PBXWS_"

# Names the config file when load_config is given no path.
CONFIG_VARIABLE: Final = "PBXWS_CONFIG"


@functools.cache
def pbxws_variables() -> Mapping[str, KeyPath]:
    """Every ``PBXWS_*`` setting variable, mapped to the field it sets."""
    names: dict[str, KeyPath] = {}
    for section, fields in section_fields().items():
        for name in fields:
            names[f"{PREFIX}{section}_{name}".upper()] = (section, name)
    for name in app_fields():
        names[f"{PREFIX}DEFAULT_APP_{name}".upper()] = ("apps", 0, name)
    return names


@dataclass
class EnvReading:
    """What the environment says, before it is merged into a configuration."""

    # Field values in the order to apply them: SOKETI_* first, then PBXWS_*.
    settings: list[Setting] = field(default_factory=list)
    # Values or names that cannot be used.
    problems: list[str] = field(default_factory=list)
    # Variables that are ignored.
    warnings: list[str] = field(default_factory=list)
    # The value of PBXWS_CONFIG, if set and not empty.
    config_file: str | None = None


def _unknown(name: str) -> str:
    known = [*pbxws_variables(), CONFIG_VARIABLE]
    guesses = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {guesses[0]}?)" if guesses else ""
    return f"{name}: unknown variable{hint}"


def read_environment(environ: Mapping[str, str]) -> EnvReading:
    """
    Read every ``SOKETI_*`` and ``PBXWS_*`` variable of ``environ``.

    Values are converted to their field's type here, one variable at a time,
    so that a bad value is reported with the variable's name
    (``PBXWS_SERVER_PORT: expected int, got "abc"``).
    """
    reading = EnvReading()
    reading.settings, reading.problems, reading.warnings = read_soketi(environ)
    variables = pbxws_variables()
    for name in sorted(environ):
        if not name.startswith(PREFIX):
            continue
        text = environ[name]
        if name == CONFIG_VARIABLE:
            reading.config_file = text or None
            continue
        path = variables.get(name)
        if path is None:
            reading.problems.append(_unknown(name))
            continue
        try:
            value = convert_text(name, text, setting_type(path))
        except SettingError as exc:
            reading.problems.append(str(exc))
            continue
        reading.settings.append(Setting(name, path, value))
    return reading
