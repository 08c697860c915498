"""Cache channels: the last event of each channel, kept for a TTL."""

from __future__ import annotations

import msgspec

__all__ = ["CachedEvent", "EventCache"]


class CachedEvent(msgspec.Struct, frozen=True):
    """The last event published on a cache channel."""

    event: str
    data: str
    # Monotonic time after which the entry is gone.
    expires_at: float


class EventCache:
    """Last event per (app, channel), expired lazily on read and by :meth:`sweep`."""

    def __init__(self) -> None:
        # (app id, channel) -> last event.
        self._entries: dict[tuple[str, str], CachedEvent] = {}

    def put(
        self,
        app_id: str,
        channel: str,
        event: str,
        data: str,
        *,
        now: float,
        ttl: float,
    ) -> None:
        """Remember ``event`` as the last one on ``channel`` for ``ttl`` seconds."""
        self._entries[(app_id, channel)] = CachedEvent(event, data, now + ttl)

    def get(self, app_id: str, channel: str, *, now: float) -> CachedEvent | None:
        """The last event on ``channel``, or None if there is none or it expired."""
        entry = self._entries.get((app_id, channel))
        if entry is None:
            return None
        if entry.expires_at <= now:
            del self._entries[(app_id, channel)]
            return None
        return entry

    def sweep(self, now: float) -> int:
        """Drop expired entries; returns how many were dropped."""
        expired = [k for k, e in self._entries.items() if e.expires_at <= now]
        for key in expired:
            del self._entries[key]
        return len(expired)
