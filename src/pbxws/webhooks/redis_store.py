"""The cluster's webhook store: the decisions of :mod:`.store`, made in Redis.

Every decision is one Lua script, so it is atomic across the cluster: a
re-occupy on one node cancels the delayed ``channel_vacated`` another node
scheduled, and exactly one node sends a delayed event when it is due. The
truth a decision reads is the redis adapter's own state (its keys
``app:{app}:channels`` and ``app:{app}:ch:{ch}:members``, see
:mod:`pbxws.adapters.lua`), read in the same script.

Deliveries live in Redis, not in the node that created them: any node claims
the head of an endpoint's queue when it is due, for ``visibility`` seconds
(longer than a request may take). A node that dies mid-request loses nothing:
its claim runs out and another node sends the delivery again. A claim carries
a token, so that the late answer of a node whose claim ran out can't
reschedule a delivery another node has taken since.

Key layout (``P`` is the configured key prefix + ``pbxws:``, ``K`` is
``app\\0channel\\0user`` with user "" for a channel, ``E`` is ``app\\0url``)::

    P wh:ann        HASH  K -> 1: the key's up event was sent
    P wh:delay      ZSET  K by due time (ms): down events waiting
    P wh:down       HASH  K -> "url\\nurl...\\0event": what to send when due
    P wh:q:{E}      LIST  delivery ids of the endpoint, oldest first
    P wh:due        ZSET  E by the time (ms) its queue's head may be tried
    P wh:d:{id}     HASH  app, url, at, attempt, claimed, first, n, tok
    P wh:e:{id}     LIST  the delivery's events (JSON)
    P wh:seq        STR   delivery id counter
    P wh:tok        STR   claim token counter
    P wh:held       STR   events in deliveries (bounded by queue_limit)
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any, Final

import structlog

from pbxws.config import RedisConfig
from pbxws.redis_client import connect

from .events import MAX_BATCH, safe_url
from .store import Claim, Notice, Tally

__all__ = ["RedisStore"]

log = structlog.get_logger(__name__)

# Notices per ACCEPT call (the service hands over no more at once, so that a
# failed call applied nothing, or all: a retry can't apply half of it twice).
_CHUNK: Final = 200

_POP: Final = r"""
-- Remove the head delivery `id` of endpoint `e`; the next head is due at once
-- (or at the end of its window). Returns its number of events.
local function pop_head(p, e, id, now)
  local q = p .. 'wh:q:' .. e
  redis.call('LPOP', q)
  local d = p .. 'wh:d:' .. id
  local n = tonumber(redis.call('HGET', d, 'n') or '0')
  redis.call('DECRBY', p .. 'wh:held', n)
  redis.call('DEL', d, p .. 'wh:e:' .. id)
  local nxt = redis.call('LINDEX', q, 0)
  if nxt then
    local at = tonumber(redis.call('HGET', p .. 'wh:d:' .. nxt, 'at') or '0')
    redis.call('ZADD', p .. 'wh:due', math.max(now, at), e)
  else
    redis.call('ZREM', p .. 'wh:due', e)
  end
  return n
end
"""

_COMMON: Final = (
    r"""
local p = ARGV[1]
local now = tonumber(ARGV[2])
local window, maxb, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local held = p .. 'wh:held'
local tally = {}

local function count(app, what)
  tally[#tally + 1] = app
  tally[#tally + 1] = what
end

local function split(s)
  local t = {}
  for u in string.gmatch(s, '[^\n]+') do t[#t + 1] = u end
  return t
end

local function truth(app, ch, uid)
  if uid == '' then
    return redis.call('HEXISTS', p .. 'app:' .. app .. ':channels', ch) == 1
  end
  local members = p .. 'app:' .. app .. ':ch:' .. ch .. ':members'
  return redis.call('HEXISTS', members, uid) == 1
end

local function push(app, url, ev)
  if tonumber(redis.call('GET', held) or '0') >= limit then
    count(app, 'dropped')
    return
  end
  local e = app .. '\0' .. url
  local q = p .. 'wh:q:' .. e
  local tail = redis.call('LINDEX', q, -1)
  local id = false
  if tail then
    local f = redis.call('HMGET', p .. 'wh:d:' .. tail, 'attempt', 'claimed', 'n')
    if f[1] == '0' and f[2] == '0' and tonumber(f[3]) < maxb then id = tail end
  end
  if not id then
    id = tostring(redis.call('INCR', p .. 'wh:seq'))
    redis.call('HSET', p .. 'wh:d:' .. id, 'app', app, 'url', url, 'at', now + window,
      'attempt', 0, 'claimed', 0, 'first', 0, 'n', 0, 'tok', '')
    if redis.call('RPUSH', q, id) == 1 then
      redis.call('ZADD', p .. 'wh:due', now + window, e)
    end
  end
  redis.call('RPUSH', p .. 'wh:e:' .. id, ev)
  redis.call('HINCRBY', p .. 'wh:d:' .. id, 'n', 1)
  redis.call('INCR', held)
end

local function push_all(app, urls, ev)
  for _, url in ipairs(split(urls)) do push(app, url, ev) end
end
"""
    + _POP
)


# ARGV: prefix, now ms, window ms, max batch, limit, grace ms, then 8 per notice:
# kind, app, channel, user, up event, up urls, down event, down urls.
# Returns the tally: app, outcome, app, outcome, ...
ACCEPT: Final = (
    _COMMON
    + r"""
local grace = tonumber(ARGV[6])
local ann_key, delay_key, down_key = p .. 'wh:ann', p .. 'wh:delay', p .. 'wh:down'
for i = 7, #ARGV, 8 do
  local kind, app, ch, uid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if kind == 'e' then
    push_all(app, ARGV[i + 5], ARGV[i + 4])
  else
    local k = app .. '\0' .. ch .. '\0' .. uid
    local t = truth(app, ch, uid)
    local ann = redis.call('HEXISTS', ann_key, k) == 1
    local pending = redis.call('ZSCORE', delay_key, k) ~= false
    local schedule = false
    if kind == 'u' then
      if not ann then
        push_all(app, ARGV[i + 5], ARGV[i + 4])
        redis.call('HSET', ann_key, k, 1)
      elseif pending then
        redis.call('ZREM', delay_key, k)
        redis.call('HDEL', down_key, k)
        pending = false
        count(app, 'suppressed')
      end
      schedule = not t and not pending
    else
      schedule = ann and not t and not pending
    end
    if schedule then
      redis.call('ZADD', delay_key, now + grace, k)
      redis.call('HSET', down_key, k, ARGV[i + 7] .. '\0' .. ARGV[i + 6])
    end
  end
end
return tally
"""
)

# ARGV: prefix, now ms, window ms, max batch, limit, claims wanted, visibility
# ms, retry period ms, then the endpoints (app\0url) this node can send to.
# Only those are claimed: a node whose configuration lacks a URL (a rolling
# deploy adding it) leaves its deliveries to the nodes that have it. A queue
# whose head nobody took for a whole retry period (the URL is gone from every
# configuration) is given up, head after head.
# Returns {tally, claims, next due ms or '', given up}; a claim is
# {id, app, url, attempt, first ms, token, {events...}}; given up entries are
# {app, url, events}.
CLAIM: Final = (
    _COMMON
    + r"""
local wanted, vis, period = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local known = {}
for i = 9, #ARGV do known[ARGV[i]] = true end
local delay_key, down_key, due_key = p .. 'wh:delay', p .. 'wh:down', p .. 'wh:due'
local due_now = redis.call('ZRANGEBYSCORE', delay_key, '-inf', now, 'LIMIT', 0, 500)
for _, k in ipairs(due_now) do
  local app, ch, uid = string.match(k, '^(.-)%z(.-)%z(.*)$')
  local v = redis.call('HGET', down_key, k)
  redis.call('ZREM', delay_key, k)
  redis.call('HDEL', down_key, k)
  if truth(app, ch, uid) then
    count(app, 'suppressed')
  else
    redis.call('HDEL', p .. 'wh:ann', k)
    if v then
      local z = string.find(v, '\0', 1, true)
      push_all(app, string.sub(v, 1, z - 1), string.sub(v, z + 1))
    end
  end
end
local claims, gone = {}, {}
if wanted > 0 then
  -- Some of the due endpoints may be others' (not known here): look further.
  local ready = redis.call('ZRANGEBYSCORE', due_key, '-inf', now,
    'LIMIT', 0, wanted + 100)
  for _, e in ipairs(ready) do
    if #claims >= wanted then break end
    local id = redis.call('LINDEX', p .. 'wh:q:' .. e, 0)
    if not id then
      redis.call('ZREM', due_key, e)
    elseif not known[e] then
      local f = redis.call('HMGET', p .. 'wh:d:' .. id, 'app', 'url', 'at', 'first')
      local since = tonumber(f[4]) > 0 and tonumber(f[4]) or tonumber(f[3])
      if since + period < now then
        gone[#gone + 1] = {f[1], f[2], tostring(pop_head(p, e, id, now))}
      end
    else
      local d = p .. 'wh:d:' .. id
      local f = redis.call('HMGET', d, 'app', 'url', 'attempt', 'first')
      local first = f[4]
      if first == '0' then
        first = tostring(now)
        redis.call('HSET', d, 'first', first)
      end
      local tok = tostring(redis.call('INCR', p .. 'wh:tok'))
      redis.call('HSET', d, 'claimed', 1, 'tok', tok)
      redis.call('ZADD', due_key, now + vis, e)
      claims[#claims + 1] = {id, f[1], f[2], f[3], first, tok,
        redis.call('LRANGE', p .. 'wh:e:' .. id, 0, -1)}
    end
  end
end
local nxt = false
local head = redis.call('ZRANGE', delay_key, 0, 0, 'WITHSCORES')
if head[2] then nxt = tonumber(head[2]) end
-- The earliest endpoint this node can send to (others' are not its business).
local firsts = redis.call('ZRANGE', due_key, 0, 199, 'WITHSCORES')
for i = 1, #firsts, 2 do
  if known[firsts[i]] then
    local score = tonumber(firsts[i + 1])
    if not nxt or score < nxt then nxt = score end
    break
  end
end
return {tally, claims, nxt and tostring(nxt) or '', gone}
"""
)

# ARGV: prefix, app, url, id, now ms. Removes the delivery if it is its
# queue's head (a late duplicate ack does nothing); returns 1 if it did.
ACK: Final = (
    _POP
    + r"""
local p, app, url, id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local e = app .. '\0' .. url
if redis.call('LINDEX', p .. 'wh:q:' .. e, 0) ~= id then return 0 end
pop_head(p, e, id, now)
return 1
"""
)

# ARGV: prefix, app, url, id, token, at ms, failed (1: count an attempt).
# Reschedules the head if the caller still holds its claim.
RESCHEDULE: Final = r"""
local p, app, url, id, tok = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local e = app .. '\0' .. url
if redis.call('LINDEX', p .. 'wh:q:' .. e, 0) ~= id then return 0 end
local d = p .. 'wh:d:' .. id
if redis.call('HGET', d, 'tok') ~= tok then return 0 end
if ARGV[7] == '1' then redis.call('HINCRBY', d, 'attempt', 1) end
redis.call('HSET', d, 'claimed', 0, 'tok', '')
redis.call('ZADD', p .. 'wh:due', tonumber(ARGV[6]), e)
return 1
"""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    """Webhook state and deliveries in Redis, shared by every node."""

    shared = True

    def __init__(
        self,
        redis_config: RedisConfig,
        *,
        grace: float,
        window: float,
        limit: int,
        visibility: float,
        retry_period: float,
        endpoints: Iterable[tuple[str, str]],
        connections: int,
    ) -> None:
        self._prefix = f"{redis_config.key_prefix}pbxws:"
        # Endpoints (app id, URL) of this node's configuration: the only
        # ones it claims.
        self._known = [f"{app_id}\0{url}" for app_id, url in endpoints]
        self._period = _ms(retry_period)
        self._grace = _ms(grace)
        self._window = _ms(window)
        self._limit = limit
        # Milliseconds a claim lasts; longer than any request.
        self._visibility = _ms(visibility)
        self._redis = connect(redis_config, connections=connections, io_timeout=2.0)
        self._accept = self._redis.register_script(ACCEPT)
        self._claim = self._redis.register_script(CLAIM)
        self._ack = self._redis.register_script(ACK)
        self._reschedule = self._redis.register_script(RESCHEDULE)

    def _head(self, now: float) -> list[Any]:
        return [self._prefix, _ms(now), self._window, MAX_BATCH, self._limit]

    async def accept(self, notices: Sequence[Notice], now: float) -> Tally:
        tally: Tally = collections.Counter()
        for start in range(0, len(notices), _CHUNK):
            args = [*self._head(now), self._grace]
            for n in notices[start : start + _CHUNK]:
                args += [
                    n.kind,
                    n.app_id,
                    n.channel,
                    n.user_id,
                    n.up,
                    "\n".join(n.up_to),
                    n.down,
                    "\n".join(n.down_to),
                ]
            _add(tally, await self._accept(args=args))
        return tally

    async def claim(
        self, now: float, limit: int
    ) -> tuple[list[Claim], Tally, float | None]:
        raw_tally, raw_claims, nxt, gone = await self._claim(
            args=[
                *self._head(now),
                limit,
                self._visibility,
                self._period,
                *self._known,
            ]
        )
        tally: Tally = collections.Counter()
        _add(tally, raw_tally)
        for app, url, n in gone:
            tally[_str(app), "exhausted"] += int(n)
            log.error(
                "webhook_delivery_failed",
                app_id=_str(app),
                url=safe_url(_str(url)),
                events=int(n),
                error="no node configured with this URL took it for the retry period",
            )
        claims = [
            Claim(
                app_id=_str(app),
                url=_str(url),
                delivery=_str(ident),
                events=list(events),
                attempt=int(attempt),
                first=int(first) / 1000,
                token=_str(token),
            )
            for ident, app, url, attempt, first, token, events in raw_claims
        ]
        next_due = int(nxt) / 1000 if nxt else None
        return claims, tally, next_due

    async def ack(self, claim: Claim, now: float) -> None:
        await self._ack(
            args=[self._prefix, claim.app_id, claim.url, claim.delivery, _ms(now)]
        )

    async def retry(self, claim: Claim, at: float) -> None:
        await self._reschedule(args=[*self._claim_args(claim), _ms(at), 1])

    async def release(self, claim: Claim, at: float) -> None:
        await self._reschedule(args=[*self._claim_args(claim), _ms(at), 0])

    def _claim_args(self, claim: Claim) -> list[str]:
        return [self._prefix, claim.app_id, claim.url, claim.delivery, claim.token]

    async def expedite(self, now: float) -> None:
        """Nothing to do: the other nodes (or the next to start) carry on."""

    def held(self) -> int:
        return 0

    async def close(self) -> None:
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()


def _add(tally: Tally, flat: list[bytes]) -> None:
    for i in range(0, len(flat), 2):
        tally[_str(flat[i]), _str(flat[i + 1])] += 1
