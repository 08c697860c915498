"""Fewer event-loop wake-ups under a steady stream of publishes.

Theory of operation. In the PBX shape every call event is one small API
request. A server that is quick per request wakes once per request: the kernel
hands the loop one ready socket, the loop answers it and finds nothing else to
do, so it sleeps again. Each of those wake-ups costs scheduling work in the
kernel (13 % of pbxws's CPU at 6,000 events/s in a profile, 4 % of Soketi's,
which is slow enough to find several requests waiting), so the cheaper server
paid more per event at mid loads than at its limit.

The coalescer lets the loop collect requests on purpose. While publishes
arrive at :data:`DENSE` or more per ``window`` (judged over the last window or
longer), the loop, once it has served what is ready, sleeps until ``window``
has passed since it last woke, then serves everything that arrived meanwhile
in one go: at 8,000 events/s and a 1 ms window, about eight requests per
wake-up instead of one. What it costs and what it keeps:

* a request waits at most ``window`` longer (frames already written go out at
  once: the sleep comes after the writes);
* a client that waits for each answer before it sends the next request (a
  queue worker, an SDK with a connection pool) gets one request per
  connection through per sleep. So the loop sleeps only while the requests of
  a window came on at most 1/:data:`SPARE` of the open publish connections:
  a client that needs all its connections is never slowed (measured: without
  this rule 6 or 8 publisher connections failed at 8,000-10,000 events/s,
  where they passed 16,000 before);
* below :data:`DENSE` nothing waits and the loop runs exactly as before: a
  sleep that collects one or two requests costs more CPU than the wake-ups
  it saves (measured here: 10 % more at 2,000 events/s, nothing gained at
  3,000-4,000, 15-23 % less at 6,000-12,000);
* a loop that woke :data:`BUSY` of a window ago or longer does not sleep, so
  near its limit the node serves as before;
* every other callback of the loop (WebSocket frames, timers, Redis replies)
  waits at most ``window`` too; the loop-lag series shows it.

``window = 0`` turns it off. :meth:`Coalescer.note` runs once per parsed
publish request on the fast path (a counter and a set insertion); one
callback per batch of ready requests judges and sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["BUSY", "DENSE", "SPARE", "Coalescer"]

# Requests per window from which the loop sleeps to collect them.
DENSE = 4
# Open publish connections per connection used in a window, at least: a
# client that waits for each answer sends one request per connection per
# window while the loop sleeps, so it must have connections to spare.
SPARE = 2
# A loop that woke this share of a window ago or longer does not sleep: near
# its limit the sleeps would only add latency.
BUSY = 0.5


class Coalescer:
    """Lets the event loop serve the publishes of one ``window`` per wake-up."""

    __slots__ = (
        "_clock",
        "_count",
        "_dense",
        "_open",
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
        # The publish connections open now (kept alive or not).
        self._open: set[object] = set()
        # Requests, and the connections they came on, since ``_since``; the
        # rate is judged once a window has passed.
        self._count = 0
        self._sources: set[object] = set()
        self._since = float("-inf")
        # The last judgement: DENSE or more requests per window, connections to spare.
        self._dense = False
        # When the loop last woke from a sleep, or decided not to sleep.
        self._woke = float("-inf")
        # A sleep is scheduled and has not run yet.
        self._pending = False

    def opened(self, source: object) -> None:
        """A connection now serves publishes."""
        self._open.add(source)

    def closed(self, source: object) -> None:
        """The connection is gone or handed to another protocol (idempotent)."""
        self._open.discard(source)

    def note(self, source: object) -> None:
        """A publish request arrived on connection ``source`` (on the loop's thread)."""
        if not self.window:
            return
        self._count += 1
        self._sources.add(source)
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._after_batch)

    def _after_batch(self) -> None:
        """Runs once the requests that were ready are served: judge, maybe sleep.

        The rate is judged here, not per request: requests that came in during
        a sleep are noted only after it, all at once.
        """
        self._pending = False
        window = self.window
        now = self._clock()
        elapsed = now - self._since
        if elapsed >= window:
            used = len(self._sources)
            self._dense = (
                self._count * window >= DENSE * elapsed
                and used * SPARE <= len(self._open)
            )
            self._count = 0
            self._sources.clear()
            self._since = now
        awake = now - self._woke
        if self._dense and awake < window * BUSY:
            self._sleep(window - awake)
            self._woke = self._clock()  # the next window starts now
            self.slept += self._woke - now  # as slept, overshoot included
            self.naps += 1
        else:
            self._woke = now
