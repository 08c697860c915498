"""The coalescer's decisions, on a real event loop with a clock we move by hand.

:func:`serve` plays the event loop of the fast path: when nothing is ready it
blocks until the next request arrives; it serves the requests that had arrived
when it polled (50 µs each, calling ``note``), then lets the loop run the
callbacks, where the coalescer's sleep moves the clock. What is checked is
what a client sees and what the kernel is asked: how many times the loop woke
(from blocking or from a sleep), how long a request waited, whether it slept.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pbxws.coalesce import DENSE, SPARE, Coalescer

WINDOW = 0.001
SERVE = 0.00005  # seconds of work per request


@dataclass
class Clock:
    """Moves only when the loop works or sleeps."""

    now: float = 100.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Served:
    wake_ups: int
    waits: list[float]
    sleeps: list[float]


async def serve(
    arrivals: list[float],
    window: float = WINDOW,
    connections: int = 32,
    spare: int = 32,
) -> Served:
    """Request k arrives at ``arrivals[k]`` on connection k % ``connections``.

    ``spare`` more connections are open and idle.
    """
    clock = Clock(now=arrivals[0] - 1.0)
    c = Coalescer(window, clock=clock, sleep=clock.sleep)
    for k in range(connections + spare):
        c.opened(k)
    blocked, waits, i = 0, [], 0
    while i < len(arrivals):
        if clock.now < arrivals[i]:  # nothing ready: blocked until the next one
            clock.now = arrivals[i]
            blocked += 1
        ready = clock.now  # one poll: what has arrived by now
        while i < len(arrivals) and arrivals[i] <= ready:
            waits.append(clock.now - arrivals[i])
            clock.now += SERVE
            c.note(i % connections)
            i += 1
        for _ in range(3):  # the callbacks scheduled meanwhile, the sleep among them
            await asyncio.sleep(0)
    assert c.naps == len(clock.sleeps)
    assert abs(c.slept - sum(clock.sleeps)) < 1e-9
    return Served(blocked + c.naps, waits, clock.sleeps)


def steady(rate: float, seconds: float = 0.1) -> list[float]:
    """Arrival times at ``rate`` per second, from t = 100."""
    return [100.0 + k / rate for k in range(int(rate * seconds))]


async def test_below_the_threshold_nothing_waits() -> None:
    """Fewer than DENSE requests per window: one wake-up per request, as without it."""
    rate = (DENSE - 0.5) / WINDOW
    served = await serve(steady(rate))
    assert served.sleeps == []
    assert served.wake_ups == len(served.waits)
    assert max(served.waits) == 0


async def test_dense_requests_are_served_once_per_window() -> None:
    """8 per window: after the first window the loop wakes once per window."""
    arrivals = steady(8 / WINDOW)  # 800 requests over 100 ms
    served = await serve(arrivals)
    assert served.sleeps, "the loop never slept"
    # Without the coalescer it would wake 800 times; with it once per window,
    # plus once per request of the first window (the rate is judged after it).
    assert served.wake_ups <= 0.1 / WINDOW + 8 + 2
    # Nobody waited more than a window (plus the work ahead of it in the batch).
    assert max(served.waits) <= WINDOW + 8 * SERVE
    assert all(0 < s <= WINDOW for s in served.sleeps)


async def test_a_busy_loop_sleeps_less_and_a_saturated_one_never() -> None:
    """Near its limit a request waits two windows at most; past it nobody sleeps.

    (Once, while the first batches are still small, the overloaded loop may.)
    """
    near = await serve(steady(0.9 / SERVE))  # 18 per window, 90 % busy
    assert max(near.waits) <= 2 * WINDOW
    # A batch of 18 is more than BUSY of a window's work: that cycle does not sleep.
    assert len(near.sleeps) < near.wake_ups
    over = await serve(steady(1.5 / SERVE, seconds=0.05))
    assert len(over.sleeps) <= 1
    assert over.wake_ups < 5  # it never catches up


async def test_when_the_stream_thins_the_sleeps_stop() -> None:
    dense = steady(8 / WINDOW, seconds=0.02)
    sparse = [dense[-1] + 0.002 * (k + 1) for k in range(20)]  # 0.5 per window
    served = await serve(dense + sparse)
    assert served.sleeps
    # The last sparse requests (after one window to judge the rate) never wait.
    assert served.waits[-15:] == [0.0] * 15


async def test_clients_without_connections_to_spare_are_never_slowed() -> None:
    """A client that waits for each answer gets one request per connection per sleep.

    So the loop sleeps only while at most 1/SPARE of the open publish
    connections carry the requests of a window.
    """
    for used in (1, 8):
        served = await serve(steady(8 / WINDOW), connections=used, spare=0)
        assert served.sleeps == [], used
        assert max(served.waits) == 0
    served = await serve(steady(8 / WINDOW), connections=8, spare=8 * (SPARE - 1))
    assert served.sleeps
    # One connection closed (or handed to aiohttp): no longer enough to spare.
    clock = Clock()
    c = Coalescer(WINDOW, clock=clock, sleep=clock.sleep)
    for k in range(4):
        c.opened(k)
    c.closed(3)
    c.closed(3)  # idempotent
    for k in range(40):
        c.note(k % 2)
        clock.now += WINDOW / 8
        await asyncio.sleep(0)
    assert clock.sleeps == []
    c.opened(3)
    for k in range(40):
        c.note(k % 2)
        clock.now += WINDOW / 8
        await asyncio.sleep(0)
    assert clock.sleeps


async def test_window_zero_is_off() -> None:
    served = await serve(steady(8 / WINDOW), window=0.0)
    assert served.sleeps == []
    assert served.wake_ups == len(served.waits)
