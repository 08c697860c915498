"""The Redis adapter: Redis is the single source of truth for a cluster.

Theory of operation.

*Delivery.* A publication is written to this node's subscribers at once and
published once on the bus (``PUBLISH``); every other node writes it to its
own subscribers. Frames travel pre-built, so no node re-encodes them.

*State.* Occupancy, presence rosters and connection counts live in Redis,
changed only by the Lua scripts of :mod:`pbxws.adapters.lua`, which decide each
transition atomically: exactly one ``member_added`` per user joining, one
``member_removed`` per user leaving, whatever the number of tabs and nodes.
Queries (``subscription_succeeded`` rosters, the HTTP API) read that state: no
scatter-gather, no timeouts. This node also keeps its own subscribers in a
local registry for fan-out.

*Liveness.* Each node renews a lease (``lease:{node}``, ``node_ttl``). Every
``heartbeat_interval`` each node sweeps the node set: a node whose lease is
gone is cleaned up by ``CLEANUP``, which subtracts its contribution and
reports the members and channels that vanished. The script is atomic and
deletes what it subtracts, so only the first node to run it reports, and that
node publishes the ``member_removed`` events.

*Signed-in users.* Who is online (signed in on at least one socket) is
counted the same way (``SIGNIN``/``SIGNOUT``, undone by ``CLEANUP``); each
online/offline change gets a growing version and goes on the bus, and every
node applies it to its own watchers' view of that user (see
:mod:`pbxws.channels.watchlist`) unless the view is newer already.

*Rejoin and outage.* When this node finds its own lease gone (it was paused or
cut off) or Redis comes back after an outage, it *resyncs*: it cleans up its
own stale contribution and re-asserts what its live sockets hold, publishing
only the net transitions (a member that was removed and is re-added is not
announced at all). While Redis is unreachable the node keeps serving its own
clients from the local registry, delivers publications locally at once and
holds them in a bounded outbox for the other nodes; when the outbox is full
``publish`` raises :class:`AdapterUnavailable` and the API answers 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from pbxws.channels.cache import CachedEvent
from pbxws.channels.ratelimit import RateDecision
from pbxws.channels.registry import AppChannels, Subscriber
from pbxws.config import AdapterConfig, RedisConfig
from pbxws.protocol.frames import text_frame
from pbxws.protocol.messages import PresenceMember, member_added, member_removed
from pbxws.redis_client import connect

from . import bus, lua
from .base import (
    AdapterUnavailable,
    ChannelCounts,
    JoinResult,
    LeaveResult,
    PresenceFull,
    TransitionHook,
)
from .local import TERMINATED, LocalAdapter

if TYPE_CHECKING:
    from pbxws.metrics import Metrics

__all__ = ["RedisAdapter"]

log = structlog.get_logger(__name__)

_cache_codec: Final = msgspec.msgpack.Decoder(tuple[str, str])
_cache_encoder: Final = msgspec.msgpack.Encoder()
# Connections to Redis per node (the bus listener takes one more).
_POOL_SIZE: Final = 32
# Longest wait between reconnect attempts while Redis is down.
_MAX_BACKOFF: Final = 5.0
# Transition kinds reported by lua.CLEANUP.
_MEMBER, _VACATED, _OFFLINE = b"m", b"v", b"o"
# Most user ids asked about in one lua.USERS call.
_USERS_PER_QUERY: Final = 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


class RedisAdapter:
    """Channel state in Redis; delivery through this node and the Redis bus."""

    # redis-py's pool enters asyncio.timeout, which needs a current task.
    inline = False

    def __init__(
        self, redis_config: RedisConfig, config: AdapterConfig, node: str
    ) -> None:
        self._cfg = config
        # This node's id in Redis keys; the socket-id prefix, unique per process.
        self.node = node
        self._prefix = f"{redis_config.key_prefix}pbxws:"
        self._channel = f"{config.redis_prefix}pbxws#bus".encode()
        self._redis = connect(
            redis_config,
            connections=_POOL_SIZE,
            io_timeout=max(1.0, config.heartbeat_interval * 2),
        )
        self._scripts = {
            name: self._redis.register_script(getattr(lua, name))
            for name in lua.__all__
        }
        # This node's subscribers, for fan-out (and its view during an outage).
        self.local = LocalAdapter()
        # Publications not yet sent to the other nodes (Redis unreachable).
        self._outbox: collections.deque[bytes] = collections.deque()
        # Whether the last Redis call worked; False during an outage.
        self.online = False
        # Set when our Redis contribution may be stale (outage, lost lease).
        self._dirty = False
        self._tasks: list[asyncio.Task[None]] = []
        # The Redis data generation we last saw; a new one means Redis lost it.
        self._epoch: bytes | None = None
        # Where fan-outs of other nodes' publications are counted (see observe).
        self.metrics: Metrics | None = None
        # Told of the transitions this adapter finds itself (see observe).
        self.on_transition: TransitionHook | None = None
        # Adapter figures for /metrics.
        self._resyncs = 0
        self._dead_nodes_cleaned = 0
        self._bus_received = 0
        self._heartbeat_rtt = 0.0
        # Presence changes decided locally during an outage, announced on resync.
        self._pending_joins: set[tuple[str, str, str]] = set()
        self._pending_leaves: set[tuple[str, str, str]] = set()

    # --- lifecycle ---

    async def start(self) -> None:
        """Take the lease and start the bus listener and the heartbeat.

        A Redis that is down at start is an outage like any other: the node
        serves its own clients and joins the cluster when Redis answers.
        """
        await self.local.start()
        try:
            await self._check_epoch()
            await self._register()
            self.online = True
        except (RedisError, OSError) as exc:
            log.error("redis_unreachable", error=str(exc), node=self.node)
            self._dirty = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen()),
            loop.create_task(self._heartbeat()),
        ]

    async def stop(self) -> None:
        """Leave the cluster now: our members are removed at once, not after a TTL."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.online:
            with contextlib.suppress(RedisError, OSError):
                await self._flush_outbox()
                await self._report(await self._cleanup(self.node))
                await self._redis.delete(self._key("lease", self.node))
        await self.local.stop()
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def _register(self) -> None:
        await self._redis.sadd(self._key("nodes"), self.node)
        await self._redis.set(
            self._key("lease", self.node), b"1", px=int(self._cfg.node_ttl * 1000)
        )

    # --- Redis calls with outage handling -------------------------------------------

    async def _run(self, script: str, *args: Any) -> Any:
        """Run a Lua script; on failure mark the node offline and re-raise."""
        try:
            return await self._scripts[script](args=[self._prefix, self.node, *args])
        except (RedisError, OSError) as exc:
            self._went_offline(exc)
            raise

    def _went_offline(self, exc: BaseException) -> None:
        if self.online:
            log.error("redis_outage_started", error=str(exc), node=self.node)
        self.online = False
        self._dirty = True

    # --- metrics ---

    def observe(self, metrics: Metrics, on_transition: TransitionHook | None) -> None:
        """Count other nodes' fan-outs; report dead-node and resync transitions."""
        self.metrics = metrics
        self.on_transition = on_transition

    def local_registries(self) -> Mapping[str, AppChannels]:
        """This node's registries, for the channel gauges."""
        return self.local.local_registries()

    def collect_metrics(self, prefix: str, port: str) -> Iterable[Metric]:
        """The adapter's state for /metrics (read at scrape time)."""
        gauges = {
            "redis_connected": ("1 while Redis answers, 0 in an outage.", self.online),
            "redis_outbox_messages": ("Publications waiting.", len(self._outbox)),
            "redis_heartbeat_rtt_seconds": (
                "Round trip of the last lease renewal.",
                self._heartbeat_rtt,
            ),
        }
        counters = {
            "redis_resyncs": ("State re-asserted (outage, lost lease).", self._resyncs),
            "redis_dead_nodes_cleaned": (
                "Dead nodes whose state this node removed.",
                self._dead_nodes_cleaned,
            ),
            "redis_bus_messages_received": ("Bus messages read.", self._bus_received),
        }
        for name, (doc, value) in gauges.items():
            gauge = GaugeMetricFamily(prefix + name, doc, labels=["port"])
            gauge.add_metric([port], float(value))
            yield gauge
        for name, (doc, value) in counters.items():
            counter = CounterMetricFamily(prefix + name, doc, labels=["port"])
            counter.add_metric([port], float(value))
            yield counter

    # --- connections ---

    async def add_connection(
        self, app_id: str, conn: Subscriber, max_connections: int
    ) -> bool:
        if self.online:
            try:
                if not await self._run("CONNECT", app_id, max_connections):
                    return False
            except (RedisError, OSError):
                pass  # outage: the local view decides
        return await self.local.add_connection(
            app_id, conn, -1 if self.online else max_connections
        )

    async def remove_connection(self, app_id: str, conn: Subscriber) -> None:
        await self.local.remove_connection(app_id, conn)
        if self.online:
            with contextlib.suppress(RedisError, OSError):
                await self._run("DISCONNECT", app_id)

    # --- subscriptions ---

    async def subscribe(self, app_id: str, channel: str, conn: Subscriber) -> bool:
        local_first = await self.local.subscribe(app_id, channel, conn)
        if self.online:
            try:
                return bool(await self._run("SUBSCRIBE", app_id, channel))
            except (RedisError, OSError):
                pass
        return local_first

    async def join(
        self,
        app_id: str,
        channel: str,
        conn: Subscriber,
        user_id: str,
        user_info: msgspec.Raw,
        max_members: int,
    ) -> JoinResult:
        if self.online:
            try:
                out = await self._run(
                    "JOIN", app_id, channel, user_id, bytes(user_info), max_members
                )
            except (RedisError, OSError):
                pass
            else:
                if out[0] == -1:
                    raise PresenceFull(channel)
                self.local.registry(app_id).join(channel, conn, user_id, user_info)
                roster = {
                    out[i].decode(): msgspec.Raw(out[i + 1])
                    for i in range(2, len(out), 2)
                }
                return JoinResult(
                    occupied=bool(out[0]), added=bool(out[1]), members=roster
                )
        # Outage: serve the local view; the change is announced on resync.
        local = await self.local.join(
            app_id, channel, conn, user_id, user_info, max_members
        )
        if local.added:
            self._pending_joins.add((app_id, channel, user_id))
        return JoinResult(occupied=False, added=False, members=local.members)

    async def leave(self, app_id: str, channel: str, conn: Subscriber) -> LeaveResult:
        reg = self.local.registry(app_id)
        local_channel = reg.channels.get(channel)
        user_id = None if local_channel is None else local_channel.subscribers.get(conn)
        local = await self.local.leave(app_id, channel, conn)
        if self.online:
            try:
                vacated, removed = await self._run(
                    "LEAVE", app_id, channel, user_id or ""
                )
            except (RedisError, OSError):
                pass
            else:
                return LeaveResult(
                    removed_user=user_id if removed else None, vacated=bool(vacated)
                )
        if local.removed_user is not None:
            self._pending_leaves.add((app_id, channel, local.removed_user))
        return LeaveResult(removed_user=None, vacated=False)

    # --- delivery ---

    async def publish(
        self, app_id: str, channel: str, frame: bytes, except_socket: str | None
    ) -> int:
        sent = await self.local.publish(app_id, channel, frame, except_socket)
        await self._send(
            bus.Broadcast(self.node, app_id, channel, frame, except_socket)
        )
        return sent

    async def terminate_user(self, app_id: str, user_id: str) -> None:
        await self.local.terminate_user(app_id, user_id)
        await self._send(bus.Terminate(self.node, app_id, user_id))

    # --- signed-in users and watchlists ---

    async def sign_in(self, app_id: str, user_id: str) -> None:
        reg = self.local.registry(app_id)
        first_here = reg.sign_in(user_id)
        if self.online:
            try:
                version = int(await self._run("SIGNIN", app_id, user_id, 1))
            except (RedisError, OSError):
                pass
            else:
                if version:
                    await self._announce(app_id, user_id, True, version)
                return
        # Outage: online for sure; this node's watchers learn it now, the
        # others on resync.
        if first_here:
            reg.watchlists.update(user_id, True, None)

    async def sign_out(self, app_id: str, user_id: str) -> None:
        reg = self.local.local_registries().get(app_id)
        if reg is None:
            return
        reg.sign_out(user_id)
        if self.online:
            try:
                version = int(await self._run("SIGNOUT", app_id, user_id))
            except (RedisError, OSError):
                return  # the resync settles it
            if version:
                await self._announce(app_id, user_id, False, version)

    async def _announce(
        self, app_id: str, user_id: str, online: bool, version: int
    ) -> None:
        """Tell this node's and the other nodes' watchers of a status change."""
        reg = self.local.local_registries().get(app_id)
        if reg is not None:
            reg.watchlists.update(user_id, online, version)
        try:
            await self._send(
                bus.UserStatus(self.node, app_id, user_id, online, version)
            )
        except AdapterUnavailable:
            # The other nodes' views are corrected when they next resync.
            log.error("user_status_not_sent", app_id=app_id, node=self.node)

    async def _users(
        self, app_id: str, user_ids: Sequence[str]
    ) -> tuple[int, dict[str, bool]]:
        """Who of ``user_ids`` is online, and the version the answer reflects."""
        out = await self._run("USERS", app_id, *user_ids)
        return int(out[0]), {
            user_id: bool(flag) for user_id, flag in zip(user_ids, out[1:], strict=True)
        }

    async def watch(
        self, app_id: str, conn: Subscriber, user_ids: Sequence[str]
    ) -> dict[str, bool]:
        if not user_ids:
            return {}
        reg = self.local.registry(app_id)
        watchlists = reg.watchlists
        watchlists.hold(user_ids)
        try:
            answered = False
            if self.online:
                try:
                    version, statuses = await self._users(app_id, user_ids)
                except (RedisError, OSError):
                    pass
                else:
                    watchlists.refresh(statuses, version)
                    answered = True
            if not answered:  # outage: what this node knows
                watchlists.fill_unknown({u: u in reg.users for u in user_ids})
            watchlists.attach(conn, user_ids)
        finally:
            watchlists.release(user_ids)
        return watchlists.statuses(user_ids)

    async def unwatch(
        self, app_id: str, conn: Subscriber, user_ids: Sequence[str]
    ) -> None:
        await self.local.unwatch(app_id, conn, user_ids)

    async def throttle(self, app_id: str, key: str, seconds: float) -> float:
        if self.online:
            try:
                left = await self._run(
                    "THROTTLE", app_id, key, max(1, round(seconds * 1000))
                )
            except (RedisError, OSError):
                pass
            else:
                return int(left) / 1000
        return await self.local.throttle(app_id, key, seconds)

    async def _send(self, message: bus.Message) -> None:
        data = bus.encode(message)
        if self.online and not self._outbox:
            try:
                await self._redis.publish(self._channel, data)
                return
            except (RedisError, OSError) as exc:
                self._went_offline(exc)
        if len(self._outbox) >= self._cfg.outbox_limit:
            log.error("redis_outbox_full", node=self.node, held=len(self._outbox))
            raise AdapterUnavailable("Redis is unreachable and the outbox is full.")
        self._outbox.append(data)

    async def _flush_outbox(self) -> None:
        while self._outbox:
            await self._redis.publish(self._channel, self._outbox[0])
            self._outbox.popleft()

    def _deliver(self, data: bytes) -> None:
        """Handle one bus message from another node."""
        try:
            message = bus.decode(data)
        except msgspec.DecodeError:
            log.warning("bus_message_ignored", size=len(data))
            return
        if message.node == self.node:
            return
        reg = self.local.local_registries().get(message.app_id)
        if reg is None:
            return
        self._bus_received += 1
        if isinstance(message, bus.Broadcast):
            sent = reg.fan_out(message.channel, message.frame, message.except_socket)
            if self.metrics is not None:
                self.metrics.delivered(message.app_id, sent, len(message.frame))
        elif isinstance(message, bus.UserStatus):
            reg.watchlists.update(message.user_id, message.online, message.version)
        else:
            reg.terminate_user(message.user_id, *TERMINATED)

    async def _listen(self) -> None:
        """Read the bus forever, resubscribing after outages."""
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                backoff = 0.1
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is not None and msg["type"] == "message":
                        self._deliver(msg["data"])
            except (RedisError, OSError) as exc:
                self._went_offline(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(_MAX_BACKOFF, backoff * 2)

    # --- queries ---

    async def channels(self, app_id: str, prefix: str) -> dict[str, ChannelCounts]:
        if not self.online:
            return await self.local.channels(app_id, prefix)
        raw = await self._redis.hgetall(self._key("app", app_id, "channels"))
        counts = {_text(k): int(v) for k, v in raw.items()}
        names = [name for name in counts if name.startswith(prefix)]
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hlen(self._key("app", app_id, "ch", name, "members"))
        users = await pipe.execute()
        return {
            name: ChannelCounts(counts[name], int(n))
            for name, n in zip(names, users, strict=True)
        }

    async def channel(self, app_id: str, channel: str) -> ChannelCounts:
        if not self.online:
            return await self.local.channel(app_id, channel)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(self._key("app", app_id, "channels"), channel)
        pipe.hlen(self._key("app", app_id, "ch", channel, "members"))
        subs, users = await pipe.execute()
        return ChannelCounts(int(subs or 0), int(users))

    async def members(self, app_id: str, channel: str) -> dict[str, msgspec.Raw]:
        if not self.online:
            return await self.local.members(app_id, channel)
        raw = await self._redis.hgetall(
            self._key("app", app_id, "ch", channel, "members")
        )
        return {_text(k): msgspec.Raw(v) for k, v in raw.items()}

    async def rate_limit(
        self, app_id: str, kind: str, points: int, limit: int
    ) -> RateDecision:
        if self.online:
            try:
                allowed, remaining, reset_ms = await self._run(
                    "RATE_LIMIT", app_id, kind, points, limit, 1000
                )
            except (RedisError, OSError):
                pass
            else:
                return RateDecision(bool(allowed), int(remaining), int(reset_ms) / 1000)
        return await self.local.rate_limit(app_id, kind, points, limit)

    async def cache_put(
        self, app_id: str, channel: str, event: str, data: str, ttl: float
    ) -> None:
        await self.local.cache_put(app_id, channel, event, data, ttl)
        if self.online:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.set(
                    self._key("app", app_id, "cache", channel),
                    _cache_encoder.encode((event, data)),
                    px=int(ttl * 1000),
                )

    async def cache_get(self, app_id: str, channel: str) -> CachedEvent | None:
        if not self.online:
            return await self.local.cache_get(app_id, channel)
        key = self._key("app", app_id, "cache", channel)
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        value, pttl = await pipe.execute()
        if value is None:
            return None
        event, data = _cache_codec.decode(value)
        loop_now = asyncio.get_running_loop().time()
        return CachedEvent(event, data, loop_now + max(0, pttl) / 1000)

    # --- liveness, cleanup, resync ---

    async def _cleanup(self, node: str) -> list[bytes]:
        out: list[bytes] = await self._scripts["CLEANUP"](args=[self._prefix, node])
        return out

    async def _report(
        self, transitions: list[bytes], *, keep: set[tuple[str, str, str]] | None = None
    ) -> int:
        """Publish member_removed for members a cleanup removed (unless re-added).

        Users it took offline are announced too (watchlists).
        """
        sent = 0
        for i in range(0, len(transitions), 4):
            kind, app, channel, user = transitions[i : i + 4]
            if kind == _OFFLINE:
                await self._announce(app.decode(), user.decode(), False, int(channel))
                continue
            if kind == _VACATED and self.on_transition is not None:
                self.on_transition(app.decode(), channel.decode(), None, False)
            if kind != _MEMBER:
                continue
            key = (app.decode(), channel.decode(), user.decode())
            if keep is not None and key in keep:
                continue
            if self.on_transition is not None:
                self.on_transition(key[0], key[1], key[2], False)
            frame = text_frame(member_removed(key[1], key[2]))
            await self.publish(key[0], key[1], frame, None)
            sent += 1
        return sent

    async def _heartbeat(self) -> None:
        interval = self._cfg.heartbeat_interval
        backoff = interval
        while True:
            await asyncio.sleep(backoff if not self.online else interval)
            try:
                if not self.online or self._dirty:
                    await self._resync()
                    backoff = interval
                    continue
                started = time.perf_counter()
                renewed = await self._redis.set(
                    self._key("lease", self.node),
                    b"1",
                    px=int(self._cfg.node_ttl * 1000),
                    xx=True,
                )
                self._heartbeat_rtt = time.perf_counter() - started
                if not renewed:
                    log.warning("lease_lost", node=self.node)
                    await self._resync()
                    continue
                await self._sweep()
            except (RedisError, OSError) as exc:
                self._went_offline(exc)
                backoff = min(_MAX_BACKOFF, backoff * 2)

    async def _sweep(self) -> None:
        """Clean up every node whose lease expired."""
        nodes = await self._redis.smembers(self._key("nodes"))
        for raw in nodes:
            node = _text(raw)
            if node == self.node:
                continue
            if await self._redis.exists(self._key("lease", node)):
                continue
            transitions = await self._cleanup(node)
            removed = await self._report(transitions)
            self._dead_nodes_cleaned += 1
            log.warning(
                "dead_node_cleaned",
                dead_node=node,
                node=self.node,
                members_removed=removed,
                entries=len(transitions) // 4,
            )

    async def _resync(self) -> None:
        """Replace our contribution in Redis with what our live sockets hold.

        Announces only net changes. If our old entries were still there, a
        member removed and re-added in this step is not announced. If a peer
        already cleaned us up (our lease expired), it announced the removals,
        so every re-added member is announced again. If Redis lost its data
        (a new epoch), nobody announced anything: only the joins and leaves
        that happened here during the outage are announced.
        """
        await self._redis.ping()
        was_offline = not self.online
        reset = await self._check_epoch()
        stale = await self._cleanup(self.node)
        stale_members = {
            (stale[i + 1].decode(), stale[i + 2].decode(), stale[i + 3].decode())
            for i in range(0, len(stale), 4)
            if stale[i] == _MEMBER
        }
        await self._register()
        added = await self._reassert()
        present = {key for key, _ in added} | self._present_members()
        self.online = True
        self._dirty = False
        await self._flush_outbox()
        removals = stale_members - present
        if reset:
            removals |= {k for k in self._pending_leaves if k not in present}
        announced_added = 0
        for key, info in added:
            if key in stale_members or (reset and key not in self._pending_joins):
                continue  # nothing changed for the other nodes' clients
            app_id, channel, user_id = key
            frame = text_frame(member_added(channel, PresenceMember(user_id, info)))
            await self.publish(app_id, channel, frame, None)
            announced_added += 1
        for app_id, channel, user_id in sorted(removals):
            await self.publish(
                app_id, channel, text_frame(member_removed(channel, user_id)), None
            )
        self._pending_joins.clear()
        self._pending_leaves.clear()
        self._resync_transitions(stale, [key for key, _ in added], reset)
        await self._resync_users(stale)
        self._resyncs += 1
        log.warning(
            "redis_resynced",
            node=self.node,
            after_outage=was_offline,
            redis_data_lost=reset,
            members_removed=len(removals),
            members_added=announced_added,
        )

    def _resync_transitions(
        self, stale: list[bytes], added: list[tuple[str, str, str]], reset: bool
    ) -> None:
        """Tell on_transition what a resync may have changed.

        Its listener (webhooks) reads the truth from Redis, so a notice of a
        transition that did not happen is harmless: every stale channel and
        member is reported down, every member the re-assertion added up, and
        after a data loss every channel held here up (nothing is known of them).
        Channels subscribed during an outage were reported then.
        """
        notify = self.on_transition
        if notify is None:
            return
        for i in range(0, len(stale), 4):
            kind, app, channel, user = stale[i : i + 4]
            if kind == _MEMBER:
                notify(app.decode(), channel.decode(), user.decode(), False)
            elif kind == _VACATED:
                notify(app.decode(), channel.decode(), None, False)
        for app_id, channel_name, user_id in added:
            notify(app_id, channel_name, None, True)  # a join in an outage
            notify(app_id, channel_name, user_id, True)
        if reset:
            for app_id, reg in self.local.local_registries().items():
                for held in reg.channels.values():
                    notify(app_id, held.name, None, True)

    async def _resync_users(self, stale: list[bytes]) -> None:
        """Re-assert our signed-in users; announce net changes; refresh views.

        A user our stale entries held and our sockets still hold did not
        change for anyone. Views are then refreshed from Redis, because bus
        messages may have been missed (outage) or Redis may have lost the
        statuses (new epoch).
        """
        went_offline = {
            (stale[i + 1].decode(), stale[i + 3].decode()): int(stale[i + 2])
            for i in range(0, len(stale), 4)
            if stale[i] == _OFFLINE
        }
        pipe = self._redis.pipeline(transaction=False)
        users: list[tuple[str, str]] = []
        for app_id, reg in self.local.local_registries().items():
            for user_id, count in reg.users.items():
                await self._scripts["SIGNIN"](
                    args=[self._prefix, self.node, app_id, user_id, count],
                    client=pipe,
                )
                users.append((app_id, user_id))
        came_online = {
            key: int(version)
            for key, version in zip(users, await pipe.execute(), strict=True)
            if int(version)
        }
        for key, version in came_online.items():
            if key not in went_offline:
                await self._announce(*key, True, version)
        for key, version in went_offline.items():
            if key not in came_online:
                await self._announce(*key, False, version)
        for app_id, reg in list(self.local.local_registries().items()):
            watched = reg.watchlists.watched()
            for i in range(0, len(watched), _USERS_PER_QUERY):
                version, statuses = await self._users(
                    app_id, watched[i : i + _USERS_PER_QUERY]
                )
                reg.watchlists.refresh(statuses, version)

    async def _check_epoch(self) -> bool:
        """Whether Redis lost its data since we last saw it (a new epoch)."""
        key = self._key("epoch")
        await self._redis.set(key, secrets.token_hex(8), nx=True)
        epoch = _bytes(await self._redis.get(key))
        reset = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        return reset

    def _present_members(self) -> set[tuple[str, str, str]]:
        return {
            (app_id, channel.name, user_id)
            for app_id, reg in self.local.local_registries().items()
            for channel in reg.channels.values()
            for user_id in channel.members
        }

    async def _reassert(self) -> list[tuple[tuple[str, str, str], msgspec.Raw]]:
        """Write our live state to Redis in one pipeline; the members it added."""
        pipe = self._redis.pipeline(transaction=False)
        joins: list[tuple[tuple[str, str, str], msgspec.Raw] | None] = []
        for app_id, reg in self.local.local_registries().items():
            if reg.connections:
                pipe.hset(
                    self._key("app", app_id, "conns"), self.node, len(reg.connections)
                )
                pipe.sadd(self._key("node", self.node, "apps"), app_id)
                joins += [None, None]
            for channel in reg.channels.values():
                for user_id in channel.subscribers.values():
                    args: list[Any] = [self._prefix, self.node, app_id, channel.name]
                    if user_id is None:
                        await self._scripts["SUBSCRIBE"](args=args, client=pipe)
                        joins.append(None)
                        continue
                    info = channel.members[user_id].info
                    await self._scripts["JOIN"](
                        args=[*args, user_id, bytes(info), -1], client=pipe
                    )
                    joins.append(((app_id, channel.name, user_id), info))
        results = await pipe.execute()
        return [
            join
            for join, out in zip(joins, results, strict=True)
            if join is not None and out[1]
        ]
