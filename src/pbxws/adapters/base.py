"""The adapter interface: the one seam between a node and its cluster.

The WebSocket and HTTP layers never touch channel state directly; they ask the
adapter, which decides occupancy and presence transitions and delivers frames.
The ``local`` adapter answers from this node's registry; a Redis adapter keeps
the same contract with Redis as the single source of truth ("handle here, then
tell the others").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from pbxws.channels.cache import CachedEvent
from pbxws.channels.ratelimit import RateDecision
from pbxws.channels.registry import Subscriber

if TYPE_CHECKING:
    from pbxws.metrics import Metrics

# Told of a cluster-wide transition the adapter finds by itself (a dead node's
# cleanup, a resync): (app id, channel, user id or None, up).
TransitionHook = Callable[[str, str, "str | None", bool], None]

__all__ = [
    "Adapter",
    "AdapterUnavailable",
    "ChannelCounts",
    "JoinResult",
    "LeaveResult",
    "PresenceFull",
]


class ChannelCounts(msgspec.Struct, frozen=True):
    """What the HTTP API reports about a channel."""

    subscription_count: int
    # Unique users; meaningful for presence channels only.
    user_count: int


class JoinResult(msgspec.Struct, frozen=True):
    """Outcome of a presence join."""

    # The channel had no subscriber before (cluster-wide).
    occupied: bool
    # The user had no socket in the channel before (cluster-wide): send member_added.
    added: bool
    # The roster after the join: user id -> raw user_info.
    members: dict[str, msgspec.Raw]


class LeaveResult(msgspec.Struct, frozen=True):
    """Outcome of leaving a channel."""

    # The user whose last socket left (presence only): send member_removed.
    removed_user: str | None
    # The channel has no subscriber left (cluster-wide).
    vacated: bool


class PresenceFull(Exception):
    """The presence channel has ``max_members`` users; the joiner is not one."""


class AdapterUnavailable(Exception):
    """The cluster can't take this publication now; the API must answer 503."""


class Adapter(Protocol):
    """Channel state and delivery for every app on this node."""

    # Whether handlers may start this adapter's coroutines outside any task
    # (see :mod:`pbxws.inbox`): nothing it awaits needs a current task.
    inline: bool

    async def start(self) -> None:
        """Connect to whatever backs the adapter."""

    async def stop(self) -> None:
        """Leave the cluster and release resources."""

    def observe(self, metrics: Metrics, on_transition: TransitionHook | None) -> None:
        """Report what the adapter does on its own, not on behalf of a handler.

        ``metrics`` counts frames fanned out for other nodes' publications;
        ``on_transition`` hears of transitions the adapter finds itself (for
        webhooks). The local adapter does nothing on its own, so it ignores both.
        """

    async def add_connection(
        self, app_id: str, conn: Subscriber, max_connections: int
    ) -> bool:
        """Register a connection; False when the app's quota is reached."""

    async def remove_connection(self, app_id: str, conn: Subscriber) -> None:
        """Forget a connection whose channels were all left."""

    async def subscribe(self, app_id: str, channel: str, conn: Subscriber) -> bool:
        """Add a subscriber to a non-presence channel; True if it became occupied."""

    async def join(
        self,
        app_id: str,
        channel: str,
        conn: Subscriber,
        user_id: str,
        user_info: msgspec.Raw,
        max_members: int,
    ) -> JoinResult:
        """Add a subscriber to a presence channel as ``user_id``.

        Raises:
            PresenceFull: If the channel has ``max_members`` users and
                ``user_id`` is not one of them; then the subscription fails.
        """

    async def leave(self, app_id: str, channel: str, conn: Subscriber) -> LeaveResult:
        """Remove a subscriber from any channel."""

    async def publish(
        self, app_id: str, channel: str, frame: bytes, except_socket: str | None
    ) -> int:
        """Deliver a pre-framed event to every subscriber of ``channel``.

        Returns the number of *this node's* sockets the frame was written to
        (the caller counts them in the metrics, once per publish).

        Raises:
            AdapterUnavailable: If the event was delivered here but can't be
                queued for the other nodes; then the API must answer 503.
        """

    async def channels(self, app_id: str, prefix: str) -> dict[str, ChannelCounts]:
        """Occupied channels whose name starts with ``prefix``."""

    async def channel(self, app_id: str, channel: str) -> ChannelCounts:
        """Counts for one channel (zeros when unoccupied)."""

    async def members(self, app_id: str, channel: str) -> dict[str, msgspec.Raw]:
        """Roster of a presence channel: user id -> raw user_info."""

    async def terminate_user(self, app_id: str, user_id: str) -> None:
        """Close every connection signed in as ``user_id``, on every node."""

    async def sign_in(self, app_id: str, user_id: str) -> None:
        """Count one more connection signed in as ``user_id``.

        A user is online while signed in on at least one connection,
        cluster-wide; when this makes ``user_id`` online, every watcher of
        the user (on every node) gets a watchlist ``online`` event.
        """

    async def sign_out(self, app_id: str, user_id: str) -> None:
        """Count one connection fewer signed in as ``user_id``.

        When it was the user's last one, cluster-wide, the user's watchers
        get an ``offline`` event.
        """

    async def watch(
        self, app_id: str, conn: Subscriber, user_ids: Sequence[str]
    ) -> dict[str, bool]:
        """Send ``conn`` the online/offline changes of ``user_ids`` from now on.

        Returns their current status (user id -> online), which the caller
        sends first; no change reaches ``conn`` before this returns.
        """

    async def unwatch(
        self, app_id: str, conn: Subscriber, user_ids: Sequence[str]
    ) -> None:
        """Stop sending ``conn`` the changes of ``user_ids``."""

    async def throttle(self, app_id: str, key: str, seconds: float) -> float:
        """Claim the next window of ``seconds`` for ``key``, cluster-wide.

        Returns 0.0 when the caller claimed it (and may act now), else the
        seconds until the window another caller claimed ends.
        """

    async def rate_limit(
        self, app_id: str, kind: str, points: int, limit: int
    ) -> RateDecision:
        """Consume ``points`` of the app's per-second ``limit`` for ``kind``.

        ``kind`` is ``backend_events`` (points = channels published to) or
        ``read_requests``. Counted cluster-wide by the redis adapter.
        """

    async def cache_put(
        self, app_id: str, channel: str, event: str, data: str, ttl: float
    ) -> None:
        """Remember the last event of a cache channel."""

    async def cache_get(self, app_id: str, channel: str) -> CachedEvent | None:
        """The last event of a cache channel, if still fresh."""
