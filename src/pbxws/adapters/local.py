"""The local adapter: one node, state in this process, no Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

import msgspec

from pbxws.channels.cache import CachedEvent, EventCache
from pbxws.channels.ratelimit import FixedWindows, RateDecision
from pbxws.channels.registry import AppChannels, Subscriber
from pbxws.protocol.errors import ErrorCode

from .base import (
    ChannelCounts,
    JoinResult,
    LeaveResult,
    PresenceFull,
    TransitionHook,
)

if TYPE_CHECKING:
    from pbxws.metrics import Metrics

__all__ = ["LocalAdapter"]

_CACHE_SWEEP_INTERVAL = 60.0
# Throttle windows kept before the ended ones are forgotten.
_THROTTLE_PURGE_AT = 1024

# How terminate_connections closes a socket (Soketi's code and words).
TERMINATED: Final = (int(ErrorCode.UNAUTHORIZED), "You got disconnected by the app.")


class LocalAdapter:
    """Answers every question from this node's registries."""

    # Nothing here waits: every coroutine finishes in its first step.
    inline = True

    def __init__(self) -> None:
        # One registry per app id, created on first use.
        self._apps: dict[str, AppChannels] = {}
        # Last events of cache channels.
        self._cache = EventCache()
        # Per-app rate-limit windows.
        self._windows = FixedWindows()
        # Periodic sweep of expired cache entries and rate windows.
        self._sweeper: asyncio.Task[None] | None = None
        # Version of the last online/offline change of a signed-in user.
        self._users_version = 0
        # Throttle windows: "app\0key" -> monotonic time the window ends.
        self._throttles: dict[str, float] = {}

    def local_registries(self) -> Mapping[str, AppChannels]:
        """This node's registries by app id (read only, not copied)."""
        return self._apps

    def registry(self, app_id: str) -> AppChannels:
        """The registry of ``app_id`` (created empty if needed)."""
        reg = self._apps.get(app_id)
        if reg is None:
            reg = self._apps[app_id] = AppChannels()
        return reg

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_cache())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _sweep_cache(self) -> None:
        while True:
            await asyncio.sleep(_CACHE_SWEEP_INTERVAL)
            self._cache.sweep(time.monotonic())
            self._windows.sweep(time.monotonic())

    def observe(self, metrics: Metrics, on_transition: TransitionHook | None) -> None:
        """Nothing to report: every change here is made by a handler that reports it."""

    async def add_connection(
        self, app_id: str, conn: Subscriber, max_connections: int
    ) -> bool:
        return self.registry(app_id).add_connection(conn, max_connections)

    async def remove_connection(self, app_id: str, conn: Subscriber) -> None:
        reg = self._apps.get(app_id)
        if reg is not None:
            reg.remove_connection(conn)
            if reg.idle():
                del self._apps[app_id]

    async def subscribe(self, app_id: str, channel: str, conn: Subscriber) -> bool:
        return self.registry(app_id).subscribe(channel, conn)

    async def join(
        self,
        app_id: str,
        channel: str,
        conn: Subscriber,
        user_id: str,
        user_info: msgspec.Raw,
        max_members: int,
    ) -> JoinResult:
        reg = self.registry(app_id)
        if reg.member_count(channel) >= max_members and not reg.is_member(
            channel, user_id
        ):
            raise PresenceFull(channel)
        occupied, added = reg.join(channel, conn, user_id, user_info)
        return JoinResult(
            occupied=occupied, added=added, members=reg.channels[channel].roster()
        )

    async def leave(self, app_id: str, channel: str, conn: Subscriber) -> LeaveResult:
        reg = self._apps.get(app_id)
        if reg is None:
            return LeaveResult(removed_user=None, vacated=False)
        removed, vacated = reg.leave(channel, conn)
        return LeaveResult(removed_user=removed, vacated=vacated)

    async def publish(
        self, app_id: str, channel: str, frame: bytes, except_socket: str | None
    ) -> int:
        reg = self._apps.get(app_id)
        if reg is None:
            return 0
        return reg.fan_out(channel, frame, except_socket)

    async def channels(self, app_id: str, prefix: str) -> dict[str, ChannelCounts]:
        reg = self._apps.get(app_id)
        if reg is None:
            return {}
        return {
            ch.name: ChannelCounts(len(ch.subscribers), len(ch.members))
            for ch in reg.iter_channels(prefix)
        }

    async def channel(self, app_id: str, channel: str) -> ChannelCounts:
        reg = self._apps.get(app_id)
        ch = None if reg is None else reg.channels.get(channel)
        if ch is None:
            return ChannelCounts(0, 0)
        return ChannelCounts(len(ch.subscribers), len(ch.members))

    async def members(self, app_id: str, channel: str) -> dict[str, msgspec.Raw]:
        reg = self._apps.get(app_id)
        ch = None if reg is None else reg.channels.get(channel)
        return {} if ch is None else ch.roster()

    async def terminate_user(self, app_id: str, user_id: str) -> None:
        reg = self._apps.get(app_id)
        if reg is not None:
            reg.terminate_user(user_id, *TERMINATED)

    async def rate_limit(
        self, app_id: str, kind: str, points: int, limit: int
    ) -> RateDecision:
        return self._windows.consume(
            f"{app_id}:{kind}", points, limit, time.monotonic()
        )

    async def sign_in(self, app_id: str, user_id: str) -> None:
        reg = self.registry(app_id)
        if reg.sign_in(user_id):
            self._users_version += 1
            reg.watchlists.update(user_id, True, self._users_version)

    async def sign_out(self, app_id: str, user_id: str) -> None:
        reg = self._apps.get(app_id)
        if reg is not None and reg.sign_out(user_id):
            self._users_version += 1
            reg.watchlists.update(user_id, False, self._users_version)

    async def watch(
        self, app_id: str, conn: Subscriber, user_ids: Sequence[str]
    ) -> dict[str, bool]:
        reg = self.registry(app_id)
        watchlists = reg.watchlists
        watchlists.hold(user_ids)
        watchlists.refresh(
            {user_id: user_id in reg.users for user_id in user_ids},
            self._users_version,
        )
        watchlists.attach(conn, user_ids)
        watchlists.release(user_ids)
        return watchlists.statuses(user_ids)

    async def unwatch(
        self, app_id: str, conn: Subscriber, user_ids: Sequence[str]
    ) -> None:
        reg = self._apps.get(app_id)
        if reg is not None:
            reg.watchlists.detach(conn, user_ids)

    async def throttle(self, app_id: str, key: str, seconds: float) -> float:
        now = time.monotonic()
        if len(self._throttles) >= _THROTTLE_PURGE_AT:
            self._throttles = {k: t for k, t in self._throttles.items() if t > now}
        name = f"{app_id}\0{key}"
        ends = self._throttles.get(name, 0.0)
        if ends > now:
            return ends - now
        self._throttles[name] = now + seconds
        return 0.0

    async def cache_put(
        self, app_id: str, channel: str, event: str, data: str, ttl: float
    ) -> None:
        self._cache.put(app_id, channel, event, data, now=time.monotonic(), ttl=ttl)

    async def cache_get(self, app_id: str, channel: str) -> CachedEvent | None:
        return self._cache.get(app_id, channel, now=time.monotonic())
