"""The limits of one app, resolved once from its overrides and the server defaults."""

from __future__ import annotations

import math
from typing import TypeVar

import msgspec

from .model import AppConfig, LimitsConfig

__all__ = ["AppLimits", "resolve_limits"]

_T = TypeVar("_T")


class AppLimits(msgspec.Struct, frozen=True, kw_only=True):
    """
    The limits the runtime checks for one app, in the units it checks them in.

    Sizes are in bytes: a payload of *more than* ``max_event_payload_bytes``
    bytes is refused, which is exactly Soketi's ``bytes / 1024 > kb`` test.
    """

    max_channel_name_length: int
    max_event_name_length: int
    max_event_payload_bytes: int
    max_event_channels_at_once: int
    max_event_batch_size: int
    max_presence_members: int
    max_presence_member_bytes: int
    channel_cache_ttl: int
    max_channels_per_connection: int


def _kb_to_bytes(kb: float) -> int:
    """KiB to a byte limit: ``n > result`` iff ``n / 1024 > kb``, for whole n."""
    return math.floor(kb * 1024)


def _pick(override: _T | None, default: _T) -> _T:
    return default if override is None else override


def resolve_limits(app: AppConfig, limits: LimitsConfig) -> AppLimits:
    """Apply ``app``'s overrides on top of the server-wide ``limits``."""
    return AppLimits(
        max_channel_name_length=_pick(
            app.max_channel_name_length, limits.max_channel_name_length
        ),
        max_event_name_length=_pick(
            app.max_event_name_length, limits.max_event_name_length
        ),
        max_event_payload_bytes=_kb_to_bytes(
            _pick(app.max_event_payload_in_kb, limits.max_event_payload_in_kb)
        ),
        max_event_channels_at_once=_pick(
            app.max_event_channels_at_once, limits.max_event_channels_at_once
        ),
        max_event_batch_size=_pick(
            app.max_event_batch_size, limits.max_event_batch_size
        ),
        max_presence_members=_pick(
            app.max_presence_members_per_channel,
            limits.max_presence_members_per_channel,
        ),
        max_presence_member_bytes=_kb_to_bytes(
            _pick(
                app.max_presence_member_size_in_kb,
                limits.max_presence_member_size_in_kb,
            )
        ),
        channel_cache_ttl=limits.channel_cache_ttl,
        max_channels_per_connection=_pick(
            app.max_channels_per_connection, limits.max_channels_per_connection
        ),
    )
