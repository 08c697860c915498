"""Where webhook events wait: the decisions, and the single-node store.

Theory of operation.

*Notices.* The node reports three kinds of things (:class:`Notice`): plain
events (``client_event``, ``cache_miss``, ``subscription_count``), *up*
transitions (a channel occupied, a user added to a presence channel) and
*down* transitions (vacated, removed). Transitions are keyed by
(app, channel, user), user "" for a channel.

*Announce, delay, suppress.* A store remembers which keys it *announced* up to
the receivers. An up notice for a key not announced sends the up event and
marks it announced. A down notice for an announced key schedules the down
event ``grace`` seconds later. An up notice while a down event waits cancels
it: the channel (the user) came back, so neither the down nor a second up is
sent (a *suppressed* flap). When a delayed down event is due, the store looks
at the truth (is the channel occupied, the user a member, *now*?): if not, the
event is sent and the key forgotten; if so, it is dropped.

Reading the truth at each decision makes the machine insensitive to the order
in which notices arrive, which in a cluster is not the order of the
transitions: a down notice for a key not announced yet does nothing; the late
up notice announces it and, the key being down already, schedules the down
event itself. Whatever the order, receivers see up, then down, once per
transition, and their last event matches the state.

*Deliveries.* Events go to per-endpoint (app, URL) FIFO queues of deliveries
(batches of at most :data:`MAX_BATCH` events). New events join the last
delivery of the queue while it has never been tried, so a batch collects
everything of its window, and a backlog behind a failing receiver goes out in
full batches when it recovers. Only the head of a queue is ever in flight:
an endpoint gets its events in the order the store took them, and a dead
receiver holds one request at a time, never the other endpoints. (In a
cluster each node hands its events over on its own, milliseconds apart, so
events reported by different nodes keep no order between them; the up and
down events of one key always arrive in that order.)

:class:`MemoryStore` keeps all of this in this process (one node); the Redis
store (:mod:`pbxws.webhooks.redis_store`) keeps it in Redis, decided by Lua
scripts, for a cluster.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .events import MAX_BATCH

if TYPE_CHECKING:
    from pbxws.channels.registry import AppChannels

__all__ = [
    "Claim",
    "MemoryStore",
    "Notice",
    "RegistryTruth",
    "Store",
    "Tally",
    "Truth",
]

#: Outcomes counted by a store, by (app id, outcome): ``dropped`` (queue
#: full) and ``suppressed`` (a down event cancelled because the key came back).
Tally = collections.Counter[tuple[str, str]]

EVENT, UP_NOTICE, DOWN_NOTICE = "e", "u", "d"


class Notice(NamedTuple):
    """Something that happened, with its events encoded and their targets."""

    # EVENT ("e"), UP_NOTICE ("u") or DOWN_NOTICE ("d").
    kind: str
    app_id: str
    channel: str
    # The presence user of a member transition; "" otherwise.
    user_id: str
    # The event (kind "e") or the up event of the key (kinds "u" and "d").
    up: bytes
    # URLs that get ``up``.
    up_to: tuple[str, ...]
    # The down event of the key (kinds "u" and "d"); b"" for kind "e".
    down: bytes = b""
    # URLs that get ``down``.
    down_to: tuple[str, ...] = ()


class Claim(NamedTuple):
    """A delivery taken for one attempt; only its claimer may ack or retry it."""

    app_id: str
    url: str
    # The delivery's id, unique in its store.
    delivery: str
    # Encoded events, in order.
    events: list[bytes]
    # Failed attempts so far.
    attempt: int
    # Epoch seconds of the first attempt (of this one when ``attempt`` is 0).
    first: float
    # Proves the claim is still ours when we answer (a shared store's claims
    # run out); "" where claims can't run out.
    token: str = ""


class Truth(Protocol):
    """What the adapter says holds now (single node: the local registries)."""

    def occupied(self, app_id: str, channel: str) -> bool:
        """Whether ``channel`` has a subscriber."""

    def member(self, app_id: str, channel: str, user_id: str) -> bool:
        """Whether ``user_id`` is a member of presence ``channel``."""


class Store(Protocol):
    """The decisions above, and the delivery queues, kept somewhere."""

    #: Whether what the store holds outlives this process (other nodes go on).
    shared: bool

    async def accept(self, notices: Sequence[Notice], now: float) -> Tally:
        """Apply ``notices`` in order (``now`` in epoch seconds)."""

    async def claim(
        self, now: float, limit: int
    ) -> tuple[list[Claim], Tally, float | None]:
        """Send due delayed events; take up to ``limit`` due deliveries.

        Returns the claims, what was counted, and the epoch time at which
        something is due next (None when nothing waits).
        """

    async def ack(self, claim: Claim, now: float) -> None:
        """Forget a delivered (or abandoned) delivery; its queue moves on."""

    async def retry(self, claim: Claim, at: float) -> None:
        """Count a failed attempt; try the delivery again at ``at``."""

    async def release(self, claim: Claim, at: float) -> None:
        """Give back a claim without counting an attempt; claimable again at ``at``."""

    async def expedite(self, now: float) -> None:
        """Make every delayed event and waiting batch due now (last node leaving)."""

    def held(self) -> int:
        """Events this process still holds, delayed or queued (0 when shared)."""

    async def close(self) -> None:
        """Release resources."""


class RegistryTruth:
    """The truth of a single node: its adapter's registries."""

    def __init__(self, registries: Mapping[str, AppChannels]) -> None:
        # The adapter's live mapping, app id -> registry (not a copy).
        self._registries = registries

    def occupied(self, app_id: str, channel: str) -> bool:
        reg = self._registries.get(app_id)
        return reg is not None and channel in reg.channels

    def member(self, app_id: str, channel: str, user_id: str) -> bool:
        reg = self._registries.get(app_id)
        return reg is not None and reg.is_member(channel, user_id)


_Key = tuple[str, str, str]
_Endpoint = tuple[str, str]


class _Delivery:
    """One batch for one endpoint."""

    __slots__ = ("at", "attempt", "claimed", "events", "first", "id")

    def __init__(self, ident: str, at: float) -> None:
        self.id = ident
        # Not before this epoch time (the end of its batching window).
        self.at = at
        # Failed attempts; events join only a delivery never tried.
        self.attempt = 0
        # In flight now.
        self.claimed = False
        # Epoch seconds of the first attempt; None before it.
        self.first: float | None = None
        self.events: list[bytes] = []


class MemoryStore:
    """The store of a single node, bounded to ``limit`` events held."""

    shared = False

    def __init__(
        self, truth: Truth, *, grace: float, window: float, limit: int
    ) -> None:
        self._truth = truth
        # Seconds down events wait; seconds a fresh batch collects events.
        self._grace = grace
        self._window = window
        # Most events held in deliveries; more are dropped.
        self._limit = limit
        # Keys whose up event was sent (and no down event since).
        self._announced: set[_Key] = set()
        # Down events waiting: key -> (due, event, targets); the heap orders
        # them by due time and may hold stale entries (checked against this).
        self._delayed: dict[_Key, tuple[float, bytes, tuple[str, ...]]] = {}
        self._heap: list[tuple[float, _Key]] = []
        # Delivery queues per endpoint, and when each queue's head may go
        # (math.inf while it is in flight). An endpoint is in _due iff its
        # queue is not empty.
        self._queues: dict[_Endpoint, collections.deque[_Delivery]] = {}
        self._due: dict[_Endpoint, float] = {}
        self._held = 0
        self._ids = itertools.count(1)

    # --- the decisions ---------------------------------------------------------

    async def accept(self, notices: Sequence[Notice], now: float) -> Tally:
        return self.accept_now(notices, now)

    def accept_now(self, notices: Sequence[Notice], now: float) -> Tally:
        """:meth:`accept`, synchronously."""
        tally: Tally = collections.Counter()
        for notice in notices:
            app_id = notice.app_id
            if notice.kind == EVENT:
                self._push_all(app_id, notice.up_to, notice.up, now, tally)
                continue
            key = (app_id, notice.channel, notice.user_id)
            true = self._true(key)
            pending = key in self._delayed
            if notice.kind == UP_NOTICE:
                if key not in self._announced:
                    self._push_all(app_id, notice.up_to, notice.up, now, tally)
                    self._announced.add(key)
                elif pending:
                    del self._delayed[key]
                    pending = False
                    tally[app_id, "suppressed"] += 1
                if not true and not pending:
                    self._schedule(key, notice, now)
            elif key in self._announced and not true and not pending:
                self._schedule(key, notice, now)
        return tally

    def _true(self, key: _Key) -> bool:
        app_id, channel, user_id = key
        if user_id:
            return self._truth.member(app_id, channel, user_id)
        return self._truth.occupied(app_id, channel)

    def _schedule(self, key: _Key, notice: Notice, now: float) -> None:
        due = now + self._grace
        self._delayed[key] = (due, notice.down, notice.down_to)
        heapq.heappush(self._heap, (due, key))

    def _release_delayed(self, now: float, tally: Tally) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            entry = self._delayed.get(key)
            if entry is None or entry[0] != due:
                continue  # cancelled or rescheduled
            del self._delayed[key]
            if self._true(key):
                tally[key[0], "suppressed"] += 1
                continue
            self._announced.discard(key)
            self._push_all(key[0], entry[2], entry[1], now, tally)

    # --- the queues --------------------------------------------------------------

    def _push_all(
        self,
        app_id: str,
        urls: tuple[str, ...],
        event: bytes,
        now: float,
        tally: Tally,
    ) -> None:
        for url in urls:
            if self._held >= self._limit:
                tally[app_id, "dropped"] += 1
                continue
            self._push((app_id, url), event, now)

    def _push(self, endpoint: _Endpoint, event: bytes, now: float) -> None:
        queue = self._queues.get(endpoint)
        if queue is None:
            queue = self._queues[endpoint] = collections.deque()
        tail = queue[-1] if queue else None
        if (
            tail is None
            or tail.attempt
            or tail.claimed
            or len(tail.events) >= MAX_BATCH
        ):
            tail = _Delivery(str(next(self._ids)), now + self._window)
            queue.append(tail)
            if len(queue) == 1:
                self._due[endpoint] = tail.at
        tail.events.append(event)
        self._held += 1

    async def claim(
        self, now: float, limit: int
    ) -> tuple[list[Claim], Tally, float | None]:
        return self.claim_now(now, limit)

    def claim_now(
        self, now: float, limit: int
    ) -> tuple[list[Claim], Tally, float | None]:
        """:meth:`claim`, synchronously."""
        tally: Tally = collections.Counter()
        self._release_delayed(now, tally)
        claims: list[Claim] = []
        if limit > 0:
            ready = sorted((at, ep) for ep, at in self._due.items() if at <= now)
            for _, endpoint in ready[:limit]:
                head = self._queues[endpoint][0]
                head.claimed = True
                if head.first is None:
                    head.first = now
                self._due[endpoint] = math.inf
                claims.append(
                    Claim(
                        endpoint[0],
                        endpoint[1],
                        head.id,
                        list(head.events),
                        head.attempt,
                        head.first,
                    )
                )
        return claims, tally, self._next_due()

    def _next_due(self) -> float | None:
        times = [at for at in self._due.values() if at != math.inf]
        if self._heap:
            times.append(self._heap[0][0])
        return min(times) if times else None

    def _head(self, claim: Claim) -> _Delivery | None:
        queue = self._queues.get((claim.app_id, claim.url))
        if not queue or queue[0].id != claim.delivery:
            return None
        return queue[0]

    async def ack(self, claim: Claim, now: float) -> None:
        self.ack_now(claim, now)

    def ack_now(self, claim: Claim, now: float) -> None:
        """:meth:`ack`, synchronously."""
        head = self._head(claim)
        if head is None:
            return
        endpoint = (claim.app_id, claim.url)
        queue = self._queues[endpoint]
        queue.popleft()
        self._held -= len(head.events)
        if queue:
            self._due[endpoint] = max(now, queue[0].at)
        else:
            del self._queues[endpoint]
            del self._due[endpoint]

    async def retry(self, claim: Claim, at: float) -> None:
        self.retry_now(claim, at)

    def retry_now(self, claim: Claim, at: float) -> None:
        """:meth:`retry`, synchronously."""
        head = self._head(claim)
        if head is not None:
            head.attempt += 1
            head.claimed = False
            self._due[claim.app_id, claim.url] = at

    async def release(self, claim: Claim, at: float) -> None:
        head = self._head(claim)
        if head is not None:
            head.claimed = False
            self._due[claim.app_id, claim.url] = at

    async def expedite(self, now: float) -> None:
        self._window = 0.0
        self._grace = 0.0
        for key, (_, event, urls) in self._delayed.items():
            self._delayed[key] = (now, event, urls)
        self._heap = [(now, key) for key in self._delayed]
        heapq.heapify(self._heap)
        for endpoint, at in self._due.items():
            if at != math.inf:
                self._due[endpoint] = min(at, now)

    def held(self) -> int:
        return self._held + len(self._delayed)

    async def close(self) -> None:
        pass
