"""Structured logs: JSON lines for machines, readable lines on a terminal.

Every line about a connection carries ``app_id`` and ``socket_id``, and
``channel`` when it is about a channel. Secrets never reach a line: the call
sites log no credential, signature or ``auth`` string (a test checks them),
and :func:`mask_secrets` masks any such key a future call site might add.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

import msgspec
import structlog

__all__ = ["SECRET_KEYS", "configure_logging", "mask_secrets"]

#: Event keys whose values are credentials; their values are never written.
SECRET_KEYS: Final = frozenset(
    {
        "auth",
        "auth_signature",
        "authorization",
        "passphrase",
        "password",
        "secret",
        "signature",
        "token",
    }
)
_MASK: Final = "****"

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_encoder: Final = msgspec.json.Encoder(enc_hook=repr)


def _serialize(obj: Any, **_: Any) -> bytes:
    # JSONRenderer passes default=...; msgspec's enc_hook plays that role.
    return _encoder.encode(obj)


def mask_secrets(
    logger: object, method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Processor: replace the value of every :data:`SECRET_KEYS` key by ``****``."""
    for key in SECRET_KEYS.intersection(event_dict):
        if event_dict[key]:
            event_dict[key] = _MASK
    return event_dict


def configure_logging(level: str, *, json: bool | None = None) -> None:
    """Configure structlog once per process.

    ``json`` defaults to "stdout is not a terminal", the container case.
    """
    if json is None:
        json = not sys.stdout.isatty()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    if json:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_serialize),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
            logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
            logger_factory=structlog.PrintLoggerFactory(sys.stdout),
            cache_logger_on_first_use=True,
        )
