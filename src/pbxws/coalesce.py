"""Fewer event-loop wake-ups under a steady stream of publishes.

Theory of operation. In the PBX shape every call event is one small API
request. A server that is quick per request wakes once per request: the kernel
hands the loop one ready socket, the loop answers it and finds nothing else to
do, so it sleeps again. Each of those wake-ups costs scheduling work in the
kernel (13 % of pbxws's CPU at 6,000 events/s in a profile, 4 % of Soketi's,
which is slow enough to find several requests waiting), so the cheaper server
paid more per event at mid loads than at its limit.

The coalescer lets the loop collect requests on purpose. While requests come
from :data:`DENSE` or more connections per ``window`` (judged over the last
window or longer), the loop, once it has served what is ready, sleeps until
``window`` has passed since it last woke, then serves everything that arrived
meanwhile in one go: at 8,000 events/s on 32 connections and a 1 ms window,
about eight requests per wake-up instead of one. What it costs and keeps:

* a request waits at most ``window`` longer (frames already written go out at
  once: the sleep comes after the writes); a client that publishes on one
  connection and waits for each answer pays it once per request, so a
  busy server's round trip grows by up to ``window``;
* below the threshold nothing waits and the loop runs exactly as before: a
  sleep that collects one or two requests costs more CPU than the wake-ups
  it saves (measured here: 10 % more at 2,000 events/s, nothing gained at
  3,000-4,000, 15-23 % less at 6,000-12,000);
* a loop that woke :data:`BUSY` of a window ago or longer does not sleep, so
  near its limit the node serves as before;
* every other callback of the loop (WebSocket frames, timers, Redis replies)
  waits at most ``window`` too; the loop-lag series shows it.

``window = 0`` turns it off. :meth:`Coalescer.note` runs once per parsed
publish request on the fast path (a set insertion); one callback per batch
of ready requests judges and sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["BUSY", "DENSE", "Coalescer"]

# Connections sending requests per window from which the loop sleeps.
DENSE = 4
# A loop that woke this share of a window ago or longer does not sleep: near
# its limit the sleeps would only add latency.
BUSY = 0.5


class Coalescer:
    """Lets the event loop serve the publishes of one ``window`` per wake-up."""

    __slots__ = (
        "_clock",
        "_dense",
        "_pending",
        "_since",
        "_sleep",
        "_sources",
        "_woke",
        "naps",
        "slept",
        "window",
    )

    def __init__(
        self,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Seconds; 0 never sleeps.
        self.window = window
        # Seconds slept in total, and how many times (for /metrics).
        self.slept = 0.0
        self.naps = 0
        self._clock = clock
        self._sleep = sleep
        # Connections that sent requests since ``_since``; judged once a window passed.
        self._sources: set[object] = set()
        self._since = float("-inf")
        # The last judgement: DENSE or more connections' requests per window.
        self._dense = False
        # When the loop last woke from a sleep, or decided not to sleep.
        self._woke = float("-inf")
        # A sleep is scheduled and has not run yet.
        self._pending = False

    def note(self, source: object) -> None:
        """A publish request arrived on connection ``source`` (on the loop's thread)."""
        if not self.window:
            return
        self._sources.add(source)
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._after_batch)

    def _after_batch(self) -> None:
        """Runs once the requests that were ready are served: judge, maybe sleep.

        The rate is judged here, not per request: requests that came in during
        a sleep are noted only after it, all at once. It counts connections,
        not requests: a client that waits for each answer before it sends the
        next request (a queue worker publishing in a loop) can have one request
        collected per sleep, so its requests alone never make the loop sleep.
        """
        self._pending = False
        window = self.window
        now = self._clock()
        elapsed = now - self._since
        if elapsed >= window:
            self._dense = len(self._sources) * window >= DENSE * elapsed
            self._sources.clear()
            self._since = now
        awake = now - self._woke
        if self._dense and awake < window * BUSY:
            left = window - awake
            self._sleep(left)
            self.slept += left
            self.naps += 1
        self._woke = self._clock()  # the next window starts now
