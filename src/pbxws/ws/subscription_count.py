"""``pusher_internal:subscription_count`` for apps that enable it.

Theory of operation. A subscribe or unsubscribe on a non-presence channel
only marks the channel *changed* (no I/O on the hot path); one flusher task
per node works through the changed channels: it reads the channel's
cluster-wide count from the adapter and publishes the event to every
subscriber, on every node. Several changes of a channel before the flusher
reaches it go out as one event with the latest count.

Large channels are throttled, as Pusher does: with more than
:data:`LARGE_CHANNEL` subscribers a channel gets at most one count per
:data:`LARGE_CHANNEL_INTERVAL` seconds, cluster-wide (the window is claimed
through :meth:`Adapter.throttle`, so two nodes don't both send). A change
inside a claimed window schedules one send at its end, which carries the
count at that time; every change is therefore reported within the interval.
Pusher documents "at most every 30 seconds" for its own channels of more than
100 connections; we use 5 seconds (the interval of Pusher's subscription
count webhook), so that counts stay fresh enough for "who is watching" UIs
while a busy channel costs at most one fan-out per 5 s.

Counts changed by a dead node's cleanup are not announced: the next
subscribe or unsubscribe on the channel corrects them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

import structlog

from pbxws.adapters.base import AdapterUnavailable
from pbxws.protocol.frames import text_frame
from pbxws.protocol.messages import subscription_count

if TYPE_CHECKING:
    from collections.abc import Callable

    from pbxws.adapters.base import Adapter
    from pbxws.metrics import Metrics

__all__ = ["LARGE_CHANNEL", "LARGE_CHANNEL_INTERVAL", "SubscriptionCounts"]

log = structlog.get_logger(__name__)

#: Channels with more subscribers than this are throttled.
LARGE_CHANNEL: Final = 100
#: Seconds between two counts of a large channel, at least.
LARGE_CHANNEL_INTERVAL: Final = 5.0

_Key = tuple[str, str]


class SubscriptionCounts:
    """Coalesces count changes and publishes them, throttling large channels."""

    def __init__(self, adapter: Adapter, metrics: Metrics) -> None:
        self._adapter = adapter
        self._metrics = metrics
        # Channels whose count changed and was not sent yet, in order.
        self._changed: dict[_Key, None] = {}
        # Large channels with a send due at the end of their window.
        self._due: dict[_Key, asyncio.TimerHandle] = {}
        # The task working through `_changed`; None when idle.
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        # Told every count sent: (app id, channel, count); the subscription_count
        # webhook. Set by the runtime.
        self.on_count: Callable[[str, str, int], None] | None = None

    def changed(self, app_id: str, channel: str) -> None:
        """The subscriptions of ``channel`` changed; never awaits."""
        key = (app_id, channel)
        if self._closed or key in self._due:
            return  # the send due at the end of the window will tell
        self._changed[key] = None
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._changed:
                key = next(iter(self._changed))
                del self._changed[key]
                try:
                    await self._send(*key)
                except AdapterUnavailable as exc:
                    log.warning(
                        "subscription_count_not_sent",
                        app_id=key[0],
                        channel=key[1],
                        reason=str(exc),
                    )
                except Exception:  # a Redis failure mid-query: skip this count
                    log.exception(
                        "subscription_count_failed", app_id=key[0], channel=key[1]
                    )
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None

    async def _send(self, app_id: str, channel: str) -> None:
        count = (await self._adapter.channel(app_id, channel)).subscription_count
        if count == 0:
            return  # nobody left to tell
        if count > LARGE_CHANNEL:
            wait = await self._adapter.throttle(
                app_id, f"subscription_count:{channel}", LARGE_CHANNEL_INTERVAL
            )
            if wait > 0:
                key = (app_id, channel)
                if key not in self._due and not self._closed:
                    loop = asyncio.get_running_loop()
                    self._due[key] = loop.call_later(wait, self._window_ended, key)
                return
        if self.on_count is not None:
            self.on_count(app_id, channel, count)
        frame = text_frame(subscription_count(channel, count))
        sent = await self._adapter.publish(app_id, channel, frame, None)
        self._metrics.app(app_id).delivered(sent, len(frame))

    def _window_ended(self, key: _Key) -> None:
        del self._due[key]
        self.changed(*key)

    async def aclose(self) -> None:
        """Stop: drop pending counts (the node is stopping).

        Returns once no adapter call of ours is in flight, so the adapter can
        be stopped next.
        """
        self._closed = True
        self._changed.clear()
        for handle in self._due.values():
            handle.cancel()
        self._due.clear()
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
