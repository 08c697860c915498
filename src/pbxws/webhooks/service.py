"""The node's webhook sender: intake on the hot path, delivery in the background.

Theory of operation.

*Intake.* The WebSocket layer and the adapter report what happened through
the synchronous methods of :class:`Webhooks` (:meth:`~Webhooks.transition`,
:meth:`~Webhooks.client_event`, ...). For an app without webhooks that is one
dict lookup; otherwise one tuple appended to a bounded deque. Nothing on the
hot path encodes, awaits or touches the network.

*Pump.* One task drains the intake: it encodes the events (each with its
stable id), finds each event's endpoints (event types and channel filters,
per endpoint), and hands the batch to the store (:mod:`.store`), which decides
what to send, delay or suppress. It then asks the store for due deliveries,
as many as there are free request slots, and sleeps until the next due time,
new intake, or a finished request. With a shared (Redis) store new intake
waits 2 ms first, so that a burst costs one Redis round trip per few hundred
events rather than per event.

*Requests.* Each claimed delivery is one POST, signed over the exact body
(:mod:`.events`). A 2xx answer acknowledges it; anything else (another status,
a timeout, no connection) is retried with exponential backoff,
``retry_initial_delay`` doubling up to ``retry_max_delay`` (plus up to 10 %
jitter), for ``retry_period`` from the first attempt; then the delivery is
abandoned, logged (app id and URL, never the secret) and counted.

*Memory.* The intake holds at most ``queue_limit`` plain events (transition
notices, bounded by the channels and members that exist, get ten times that
room); the in-memory store at most ``queue_limit`` events; beyond that events
are dropped, logged and counted. With the redis adapter the deliveries live
in Redis (bounded the same way there) and only the intake is in this process:
it reaches Redis within milliseconds while Redis answers, so a node that dies
loses at most what it reported in its last moments.

*Shutdown.* :meth:`Webhooks.stop` hands the intake to the store. On a single
node it then sends everything (delayed events at once: no client can come
back to this process) until the time given runs out. In a cluster what is
left stays in Redis for the other nodes; in-flight requests get the time
given to finish, and unfinished claims are given back at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import random
import time
from collections.abc import Callable
from typing import Final, NamedTuple

import aiohttp
import msgspec
import structlog
from redis.exceptions import RedisError

from pbxws import __version__
from pbxws.config import Config
from pbxws.metrics import Metrics

from . import events as ev
from .store import DOWN_NOTICE, EVENT, UP_NOTICE, Claim, Notice, Store, Tally

__all__ = ["Webhooks"]

log = structlog.get_logger(__name__)

# Longest sleep of the pump: how soon it notices work another node made due
# (a delivery whose claimer died).
_POLL: Final = 1.0
# Longest wait between attempts to reach an unavailable store.
_MAX_BACKOFF: Final = 5.0
# Items handed to the store at once.
_CHUNK: Final = 200
# Transition notices may fill the intake to this many times queue_limit: they
# are bounded by the channels and members that exist (a dead node's cleanup
# reports all of its members at once), not by how slow a receiver is.
_TRANSITION_HEADROOM: Final = 10
# Seconds between two logs about dropped events (each counts what it covers).
_DROP_LOG_INTERVAL: Final = 10.0
# Seconds a cluster node always gets to hand its intake to Redis at shutdown.
_MIN_HANDOFF: Final = 1.0
# Seconds new intake gathers before it goes to a shared store: during a burst
# one Redis round trip then takes many events instead of one each.
_GATHER: Final = 0.002

_CLIENT_EVENT, _CACHE_MISS, _COUNT = "client_event", "cache_miss", "subscription_count"


class _AppHooks(NamedTuple):
    """One app's webhook settings, resolved once."""

    key: str
    secret: str
    endpoints: dict[str, ev.Endpoint]
    # Every event name some endpoint of the app wants.
    wanted: frozenset[str]


# What the hot path appends: (kind, app id, channel, user id, event name,
# encoder); the encoder of a plain event makes its JSON from its id.
_Item = tuple[str, str, str, str, str, Callable[[str], bytes] | None]


class Webhooks:
    """Collects webhook events and delivers them; one per node."""

    def __init__(self, config: Config, metrics: Metrics, node: str) -> None:
        self._cfg = config.webhooks
        self._metrics = metrics
        # Apps with at least one webhook, by id.
        self._apps: dict[str, _AppHooks] = {}
        for app in config.apps:
            endpoints = ev.app_endpoints(app)
            if endpoints:
                wanted = frozenset(t for hook in app.webhooks for t in hook.event_types)
                self._apps[app.id] = _AppHooks(app.key, app.secret, endpoints, wanted)
        # Whether any app has webhooks; without, nothing is started.
        self.enabled = bool(self._apps)
        self._ids = ev.EventIds(node)
        # Reported, not yet handed to the store (bounded by queue_limit).
        self._intake: collections.deque[_Item] = collections.deque()
        # The head of the intake, encoded, while the store has not taken it:
        # a retry after a failed (or half-done) handover sends the same ids.
        self._encoded: list[Notice] | None = None
        self._encoded_items = 0
        # Set on new intake and finished requests: the pump has work.
        self._wake = asyncio.Event()
        self._store: Store | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pump_task: asyncio.Task[None] | None = None
        # False once stopping: the pump ends even if a library swallowed its
        # cancellation (redis-py may turn it into a connection error).
        self._running = False
        # Requests in flight, with their claims.
        self._inflight: dict[asyncio.Task[None], Claim] = {}
        # Epoch time the store said something is due next.
        self._next_due: float | None = None
        # Dropped at intake since the last log line, by app id.
        self._dropped: collections.Counter[str] = collections.Counter()
        self._dropped_logged = 0.0
        # Set by the pump after each round, for stop() to watch progress.
        self._progress = asyncio.Event()

    # --- the hot path: synchronous, O(1), never awaits ------------------------------

    def transition(
        self, app_id: str, channel: str, user_id: str | None, up: bool
    ) -> None:
        """A cluster-wide transition decided by the adapter.

        ``user_id`` None: the channel became occupied (``up``) or vacated;
        else the user was added to (removed from) presence ``channel``.
        """
        hooks = self._apps.get(app_id)
        if hooks is None:
            return
        member = user_id is not None
        if ev.UP[member] in hooks.wanted or ev.DOWN[member] in hooks.wanted:
            kind = UP_NOTICE if up else DOWN_NOTICE
            self._append(hooks, (kind, app_id, channel, user_id or "", "", None))

    def occupied(self, app_id: str, channel: str) -> None:
        """``channel`` got its first subscriber, cluster-wide."""
        self.transition(app_id, channel, None, True)

    def vacated(self, app_id: str, channel: str) -> None:
        """``channel`` lost its last subscriber, cluster-wide."""
        self.transition(app_id, channel, None, False)

    def member_added(self, app_id: str, channel: str, user_id: str) -> None:
        """``user_id`` got its first socket in presence ``channel``."""
        self.transition(app_id, channel, user_id, True)

    def member_removed(self, app_id: str, channel: str, user_id: str) -> None:
        """``user_id`` lost its last socket in presence ``channel``."""
        self.transition(app_id, channel, user_id, False)

    def client_event(
        self,
        app_id: str,
        channel: str,
        event: str,
        data: msgspec.Raw,
        socket_id: str,
        user_id: str | None,
    ) -> None:
        """A client event was relayed (``user_id`` on presence channels)."""
        hooks = self._apps.get(app_id)
        if hooks is not None and _CLIENT_EVENT in hooks.wanted:
            encode = functools.partial(
                ev.client_event, channel, event, data, socket_id, user_id
            )
            self._append(hooks, (EVENT, app_id, channel, "", _CLIENT_EVENT, encode))

    def cache_miss(self, app_id: str, channel: str) -> None:
        """A client subscribed to a cache channel that had nothing cached."""
        hooks = self._apps.get(app_id)
        if hooks is not None and _CACHE_MISS in hooks.wanted:
            encode = functools.partial(ev.cache_miss, channel)
            self._append(hooks, (EVENT, app_id, channel, "", _CACHE_MISS, encode))

    def subscription_count(self, app_id: str, channel: str, count: int) -> None:
        """The cluster-wide subscription count of ``channel`` changed."""
        hooks = self._apps.get(app_id)
        if hooks is not None and _COUNT in hooks.wanted:
            encode = functools.partial(ev.subscription_count, channel, count)
            self._append(hooks, (EVENT, app_id, channel, "", _COUNT, encode))

    def _append(self, hooks: _AppHooks, item: _Item) -> None:
        limit = self._cfg.queue_limit
        if item[0] != EVENT:
            limit *= _TRANSITION_HEADROOM
        if len(self._intake) >= limit or self._store is None:
            self._drop(item[1], 1)
            return
        self._intake.append(item)
        self._wake.set()

    def _drop(self, app_id: str, n: int) -> None:
        self._metrics.app(app_id).webhook_event("dropped", n)
        self._dropped[app_id] += n
        now = time.monotonic()
        if now - self._dropped_logged >= _DROP_LOG_INTERVAL:
            self._dropped_logged = now
            for dropped_app, count in self._dropped.items():
                log.error("webhook_events_dropped", app_id=dropped_app, events=count)
            self._dropped.clear()

    # --- lifecycle -------------------------------------------------------------

    async def start(self, store: Store) -> None:
        """Start delivering through ``store``."""
        self._store = store
        timeout = aiohttp.ClientTimeout(total=self._cfg.request_timeout)
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            headers={"User-Agent": f"pbxws-webhooks/{__version__}"},
            connector=aiohttp.TCPConnector(limit=self._cfg.concurrency),
        )
        self._running = True
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def stop(self, within: float) -> None:
        """Hand everything over, deliver what ``within`` seconds allow, stop."""
        store = self._store
        if store is None:
            return
        local = not store.shared
        budget = max(within, 0.0 if local else _MIN_HANDOFF)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await self._wait_for_intake()
                if local:
                    await store.expedite(time.time())
                    self._wake.set()
                    while store.held() or self._intake or self._inflight:
                        self._progress.clear()
                        await self._progress.wait()
                elif self._inflight:
                    await asyncio.wait(list(self._inflight))
        await self._halt()
        lost = store.held() + len(self._intake)
        if lost:
            log.warning("webhooks_lost_on_shutdown", events=lost)
        self._store = None
        if self._session is not None:
            await self._session.close()
        await store.close()

    async def _wait_for_intake(self) -> None:
        while self._intake:
            self._progress.clear()
            self._wake.set()
            await self._progress.wait()

    async def _halt(self) -> None:
        """Stop the pump; give back the claims of unfinished requests."""
        self._running = False
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None
        inflight = dict(self._inflight)
        for task in inflight:
            task.cancel()
        for task in inflight:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store = self._store
        if store is None:
            return
        now = time.time()
        for claim in inflight.values():
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(_MIN_HANDOFF):
                    await store.release(claim, now)

    # --- the pump --------------------------------------------------------------

    async def _pump(self) -> None:
        backoff = 0.1
        while self._running:
            wait = _POLL
            busy = len(self._inflight) >= self._cfg.concurrency
            if self._next_due is not None and not busy:
                wait = min(wait, max(0.0, self._next_due - time.time()))
            if not self._intake:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
            self._wake.clear()
            store = self._store
            if store is not None and store.shared and 0 < len(self._intake) < _CHUNK:
                await asyncio.sleep(_GATHER)
            try:
                await self._round()
                backoff = 0.1
            except (RedisError, OSError) as exc:
                log.error("webhook_store_unavailable", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(_MAX_BACKOFF, backoff * 2)
            except Exception:
                log.exception("webhook_pump_failed")
                await asyncio.sleep(backoff)
                backoff = min(_MAX_BACKOFF, backoff * 2)
            finally:
                self._progress.set()

    async def _round(self) -> None:
        store = self._store
        if store is None:
            return
        now = time.time()
        while self._intake:
            if self._encoded is None:
                items = [self._intake[i] for i in range(min(_CHUNK, len(self._intake)))]
                self._encoded = [n for n in map(self._notice, items) if n is not None]
                self._encoded_items = len(items)
            tally = await store.accept(self._encoded, now)
            for _ in range(self._encoded_items):
                self._intake.popleft()
            self._encoded = None
            self._count(tally)
        free = self._cfg.concurrency - len(self._inflight)
        claims, tally, self._next_due = await store.claim(now, free)
        self._count(tally)
        loop = asyncio.get_running_loop()
        for claim in claims:
            task = loop.create_task(self._deliver(claim))
            self._inflight[task] = claim
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()

    def _count(self, tally: Tally) -> None:
        for (app_id, outcome), n in tally.items():
            if outcome == "dropped":
                self._drop(app_id, n)
            else:
                self._metrics.app(app_id).webhook_event(outcome, n)

    def _notice(self, item: _Item) -> Notice | None:
        """Encode one reported item and find its endpoints; None if none wants it."""
        kind, app_id, channel, user_id, name, encode = item
        hooks = self._apps[app_id]
        endpoints = hooks.endpoints.values()
        if kind != EVENT:
            member = bool(user_id)
            up_name, down_name = ev.UP[member], ev.DOWN[member]
            up_to = ev.targets(endpoints, up_name, channel)
            down_to = ev.targets(endpoints, down_name, channel)
            if not up_to and not down_to:
                return None
            new_id = self._ids.next
            return Notice(
                kind,
                app_id,
                channel,
                user_id,
                ev.transition(up_name, channel, user_id, new_id()),
                up_to,
                ev.transition(down_name, channel, user_id, new_id()),
                down_to,
            )
        to = ev.targets(endpoints, name, channel)
        if not to or encode is None:
            return None
        return Notice(EVENT, app_id, channel, "", encode(self._ids.next()), to)

    # --- requests --------------------------------------------------------------

    async def _deliver(self, claim: Claim) -> None:
        store, session = self._store, self._session
        if store is None or session is None:
            return
        stats = self._metrics.app(claim.app_id)
        hooks = self._apps.get(claim.app_id)
        endpoint = None if hooks is None else hooks.endpoints.get(claim.url)
        url = ev.safe_url(claim.url)
        if hooks is None or endpoint is None:
            # Stores only hand out our own endpoints; never drop another's.
            await store.release(claim, time.time() + self._cfg.retry_max_delay)
            return
        payload = ev.body(int(time.time() * 1000), claim.events)
        headers = ev.request_headers(hooks.key, hooks.secret, payload, endpoint.headers)
        error = ""
        try:
            async with session.post(
                claim.url, data=payload, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                if not 200 <= resp.status < 300:
                    error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = time.time()
        stats.webhook_request(ok=not error)
        attempt = claim.attempt + 1
        try:
            await self._settle(store, claim, now, attempt, error, url)
        except (RedisError, OSError) as exc:
            # The claim runs out and the delivery is tried again elsewhere.
            log.error("webhook_store_unavailable", error=str(exc))

    async def _settle(
        self,
        store: Store,
        claim: Claim,
        now: float,
        attempt: int,
        error: str,
        url: str,
    ) -> None:
        stats = self._metrics.app(claim.app_id)
        n = len(claim.events)
        if not error:
            await store.ack(claim, now)
            stats.webhook_event("delivered", n)
            log.debug(
                "webhook_delivered",
                app_id=claim.app_id,
                url=url,
                events=n,
                attempt=attempt,
            )
            return
        cfg = self._cfg
        deadline = claim.first + cfg.retry_period
        if now >= deadline:
            await store.ack(claim, now)
            stats.webhook_event("exhausted", n)
            log.error(
                "webhook_delivery_failed",
                app_id=claim.app_id,
                url=url,
                events=n,
                attempts=attempt,
                error=error,
            )
            return
        delay = min(cfg.retry_max_delay, cfg.retry_initial_delay * 2**claim.attempt)
        delay *= 1 + random.random() / 10  # noqa: S311 - jitter, not a secret
        at = min(now + delay, deadline)
        await store.retry(claim, at)
        log.warning(
            "webhook_attempt_failed",
            app_id=claim.app_id,
            url=url,
            events=n,
            attempt=attempt,
            error=error,
            retry_in=round(at - now, 3),
        )
