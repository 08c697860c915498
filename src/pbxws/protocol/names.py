"""Channel names: kinds by anchored prefix, and the naming rules.

Prefixes are matched at the start of the name only, most specific first
(``private-encrypted-`` before ``private-``); Soketi's unanchored regexes
would treat ``foo-private-bar`` as private, which we do not.
"""

from __future__ import annotations

import enum
import re
from typing import Final

__all__ = [
    "SERVER_TO_USER_PREFIX",
    "ChannelKind",
    "channel_kind",
    "is_cache_channel",
    "requires_auth",
    "valid_channel_name",
]

SERVER_TO_USER_PREFIX: Final = "#server-to-user-"

# Pusher's allowed characters; '#' only as part of the server-to-user prefix.
_NAME_RE: Final = re.compile(r"[-a-zA-Z0-9_=@,.;]+")


class ChannelKind(enum.Enum):
    """What a channel name's prefix makes it."""

    PUBLIC = "public"
    PRIVATE = "private"
    ENCRYPTED = "private-encrypted"
    PRESENCE = "presence"
    SERVER_TO_USER = "server-to-user"


def channel_kind(name: str) -> ChannelKind:
    """Classify ``name`` by its anchored prefix."""
    if name.startswith("private-encrypted-"):
        return ChannelKind.ENCRYPTED
    if name.startswith("private-"):
        return ChannelKind.PRIVATE
    if name.startswith("presence-"):
        return ChannelKind.PRESENCE
    if name.startswith(SERVER_TO_USER_PREFIX):
        return ChannelKind.SERVER_TO_USER
    return ChannelKind.PUBLIC


def requires_auth(kind: ChannelKind) -> bool:
    """Whether subscribing needs a signature from the app's auth endpoint."""
    return kind in (ChannelKind.PRIVATE, ChannelKind.ENCRYPTED, ChannelKind.PRESENCE)


def is_cache_channel(name: str) -> bool:
    """Whether ``name`` is a cache channel (its last event is replayed)."""
    return name.startswith(
        ("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")
    )


def valid_channel_name(name: str) -> bool:
    """Whether ``name`` uses only the characters Pusher allows.

    The ``#server-to-user-`` prefix is the one place ``#`` may appear.
    """
    if name.startswith(SERVER_TO_USER_PREFIX):
        rest = name[len(SERVER_TO_USER_PREFIX) :]
        return bool(rest) and _NAME_RE.fullmatch(rest) is not None
    return _NAME_RE.fullmatch(name) is not None
