"""Fixed one-second windows for the per-app rate limits (Soketi's model)."""

from __future__ import annotations

import math

import msgspec

__all__ = ["FixedWindows", "RateDecision"]


class RateDecision(msgspec.Struct, frozen=True):
    """Whether a request may go on, and what to tell it."""

    allowed: bool
    # Points left in the current window after this request.
    remaining: int
    # Seconds until the window resets (for Retry-After).
    reset_after: float

    @property
    def retry_after(self) -> int:
        """Whole seconds for the Retry-After header (at least 1)."""
        return max(1, math.ceil(self.reset_after))


class FixedWindows:
    """Counters per key in windows of ``window`` seconds.

    A refused request costs nothing, so a client retrying too fast is not
    punished beyond the current window.
    """

    def __init__(self, window: float = 1.0) -> None:
        self._window = window
        # key -> (window start, points used in it).
        self._used: dict[str, tuple[float, int]] = {}

    def consume(self, key: str, points: int, limit: int, now: float) -> RateDecision:
        """Take ``points`` from ``key``'s window if ``limit`` allows it."""
        start, used = self._used.get(key, (now, 0))
        if now - start >= self._window:
            start, used = now, 0
        reset_after = start + self._window - now
        if used + points > limit:
            self._used[key] = (start, used)
            return RateDecision(False, max(0, limit - used), reset_after)
        self._used[key] = (start, used + points)
        return RateDecision(True, limit - used - points, reset_after)

    def sweep(self, now: float) -> None:
        """Forget windows that ended (bounded memory with many apps)."""
        stale = [
            k for k, (start, _) in self._used.items() if now - start >= self._window
        ]
        for key in stale:
            del self._used[key]
