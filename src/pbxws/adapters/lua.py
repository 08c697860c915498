"""Lua scripts that decide cluster-wide transitions atomically in Redis.

Key layout (``P`` is the configured key prefix + ``pbxws:``)::

    P nodes                      SET   ids of nodes that hold a lease (or did)
    P lease:{node}               STR   the node's lease, expires after node_ttl
    P app:{app}:channels         HASH  channel -> subscriptions, cluster-wide
    P app:{app}:conns            HASH  node -> open connections of the app
    P app:{app}:ch:{ch}:members  HASH  user id -> raw user_info (presence)
    P app:{app}:ch:{ch}:refs     HASH  user id -> sockets of that user, cluster-wide
    P app:{app}:cache:{ch}       STR   last event of a cache channel (with TTL)
    P app:{app}:users            HASH  user id -> connections signed in as it
    P app:{app}:users:version    STR   version of the last online/offline change
    P app:{app}:throttle:{key}   STR   a claimed throttle window (with TTL)
    P node:{node}:subs           HASH  "app\\0ch" -> this node's subscriptions
    P node:{node}:presence       HASH  "app\\0ch\\0user" -> this node's sockets
    P node:{node}:apps           SET   apps this node has connections in
    P node:{node}:users          HASH  "app\\0user" -> this node's signed-in sockets

Every change is recorded twice: in the cluster-wide totals that answer
queries, and in the owning node's own hashes, so that when a node dies its
whole contribution can be subtracted in one script (``CLEANUP``) that also
reports which members and channels that made disappear. Each script is atomic,
so a transition (first socket of a user, last subscriber of a channel) is
seen by exactly one caller, however many nodes race.

A signed-in user coming online or going offline gets a *version*: the Redis
clock in microseconds, forced above the previous version, so versions only
grow (even after Redis lost its data). Nodes use them to apply watchlist
changes in order whatever order the bus delivers them in.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLEANUP",
    "CONNECT",
    "DISCONNECT",
    "JOIN",
    "LEAVE",
    "RATE_LIMIT",
    "SIGNIN",
    "SIGNOUT",
    "SUBSCRIBE",
    "THROTTLE",
    "USERS",
]

# The next version of app's user statuses (a Lua function, prepended to the
# scripts that change them): the Redis clock in microseconds, or one more than
# the last version if the clock is behind it. As a decimal string.
_VERSION: Final = """
local function next_version(p, app)
  local key = p .. 'app:' .. app .. ':users:version'
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', key) or '0')
  if v <= last then v = last + 1 end
  v = string.format('%.0f', v)
  redis.call('SET', key, v)
  return v
end
"""

# ARGV: prefix, node, app, max_connections. Returns 1 (registered) or 0 (quota).
CONNECT: Final = """
local p, node, app, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local key = p .. 'app:' .. app .. ':conns'
if max >= 0 then
  local total = 0
  for _, v in ipairs(redis.call('HVALS', key)) do total = total + tonumber(v) end
  if total >= max then return 0 end
end
redis.call('HINCRBY', key, node, 1)
redis.call('SADD', p .. 'node:' .. node .. ':apps', app)
return 1
"""

# ARGV: prefix, node, app.
DISCONNECT: Final = """
local p, node, app = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'app:' .. app .. ':conns'
if redis.call('HINCRBY', key, node, -1) <= 0 then redis.call('HDEL', key, node) end
return 1
"""

# ARGV: prefix, node, app, channel. Returns 1 if the channel became occupied.
SUBSCRIBE: Final = """
local p, node, app, ch = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('HINCRBY', p .. 'node:' .. node .. ':subs', app .. '\\0' .. ch, 1)
return redis.call('HINCRBY', p .. 'app:' .. app .. ':channels', ch, 1) == 1 and 1 or 0
"""

# ARGV: prefix, node, app, channel, user id, user_info, max members.
# Returns {-1} when full, else {occupied, added, roster...}.
JOIN: Final = """
local p, node, app, ch, uid, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local maxm = tonumber(ARGV[7])
local base = p .. 'app:' .. app .. ':ch:' .. ch
local total = tonumber(redis.call('HGET', base .. ':refs', uid) or '0')
if total == 0 and maxm >= 0 and redis.call('HLEN', base .. ':members') >= maxm then
  return {-1}
end
local field = app .. '\\0' .. ch
redis.call('HINCRBY', p .. 'node:' .. node .. ':subs', field, 1)
redis.call('HINCRBY', p .. 'node:' .. node .. ':presence', field .. '\\0' .. uid, 1)
local occupied = redis.call('HINCRBY', p .. 'app:' .. app .. ':channels', ch, 1) == 1
redis.call('HINCRBY', base .. ':refs', uid, 1)
local added = 0
if total == 0 then
  redis.call('HSET', base .. ':members', uid, info)
  added = 1
end
local out = {occupied and 1 or 0, added}
for _, v in ipairs(redis.call('HGETALL', base .. ':members')) do out[#out + 1] = v end
return out
"""

# ARGV: prefix, node, app, channel, user id ('' when not presence).
# Returns {vacated, removed}; {0, 0} when this node had no such subscription.
LEAVE: Final = """
local p, node, app, ch, uid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local nsubs = p .. 'node:' .. node .. ':subs'
local field = app .. '\\0' .. ch
local mine = redis.call('HINCRBY', nsubs, field, -1)
if mine <= 0 then redis.call('HDEL', nsubs, field) end
if mine < 0 then return {0, 0} end
local chans = p .. 'app:' .. app .. ':channels'
local vacated = 0
if redis.call('HINCRBY', chans, ch, -1) <= 0 then
  redis.call('HDEL', chans, ch)
  vacated = 1
end
local removed = 0
if uid ~= '' then
  local np = p .. 'node:' .. node .. ':presence'
  local pf = field .. '\\0' .. uid
  if redis.call('HINCRBY', np, pf, -1) <= 0 then redis.call('HDEL', np, pf) end
  local base = p .. 'app:' .. app .. ':ch:' .. ch
  if redis.call('HINCRBY', base .. ':refs', uid, -1) <= 0 then
    redis.call('HDEL', base .. ':refs', uid)
    redis.call('HDEL', base .. ':members', uid)
    removed = 1
  end
end
return {vacated, removed}
"""

# ARGV: prefix, node. Subtracts the node's whole contribution and forgets it.
# Returns a flat list of transitions: 'm', app, channel, user (member gone),
# 'v', app, channel, '' (channel vacated) and 'o', app, version, user (user
# offline). Running it twice finds nothing the second time, so whoever runs it
# first is the one that reports.
CLEANUP: Final = (
    _VERSION
    + """
local p, node = ARGV[1], ARGV[2]
local out = {}
local np = p .. 'node:' .. node .. ':presence'
local entries = redis.call('HGETALL', np)
for i = 1, #entries, 2 do
  local app, ch, uid = string.match(entries[i], '^(.-)%z(.-)%z(.*)$')
  local base = p .. 'app:' .. app .. ':ch:' .. ch
  if redis.call('HINCRBY', base .. ':refs', uid, -tonumber(entries[i + 1])) <= 0 then
    redis.call('HDEL', base .. ':refs', uid)
    redis.call('HDEL', base .. ':members', uid)
    out[#out + 1] = 'm'; out[#out + 1] = app; out[#out + 1] = ch; out[#out + 1] = uid
  end
end
local ns = p .. 'node:' .. node .. ':subs'
entries = redis.call('HGETALL', ns)
for i = 1, #entries, 2 do
  local app, ch = string.match(entries[i], '^(.-)%z(.*)$')
  local chans = p .. 'app:' .. app .. ':channels'
  if redis.call('HINCRBY', chans, ch, -tonumber(entries[i + 1])) <= 0 then
    redis.call('HDEL', chans, ch)
    out[#out + 1] = 'v'; out[#out + 1] = app; out[#out + 1] = ch; out[#out + 1] = ''
  end
end
local nu = p .. 'node:' .. node .. ':users'
entries = redis.call('HGETALL', nu)
for i = 1, #entries, 2 do
  local app, uid = string.match(entries[i], '^(.-)%z(.*)$')
  local users = p .. 'app:' .. app .. ':users'
  if redis.call('HINCRBY', users, uid, -tonumber(entries[i + 1])) <= 0 then
    redis.call('HDEL', users, uid)
    out[#out + 1] = 'o'; out[#out + 1] = app
    out[#out + 1] = next_version(p, app); out[#out + 1] = uid
  end
end
local apps = p .. 'node:' .. node .. ':apps'
for _, app in ipairs(redis.call('SMEMBERS', apps)) do
  redis.call('HDEL', p .. 'app:' .. app .. ':conns', node)
end
redis.call('DEL', np, ns, nu, apps)
redis.call('SREM', p .. 'nodes', node)
return out
"""
)

# ARGV: prefix, node, app, kind, points, limit, window ms.
# Fixed windows shared by the cluster; a refused request costs nothing.
# Returns {allowed, remaining, ms until the window resets}.
RATE_LIMIT: Final = """
local p, app, kind = ARGV[1], ARGV[3], ARGV[4]
local points, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local window = tonumber(ARGV[7])
local key = p .. 'rl:' .. app .. ':' .. kind
local used = tonumber(redis.call('GET', key) or '0')
local ttl = redis.call('PTTL', key)
if ttl < 0 then ttl = window end
if used + points > limit then return {0, math.max(0, limit - used), ttl} end
if redis.call('INCRBY', key, points) == points then
  redis.call('PEXPIRE', key, window)
end
return {1, limit - used - points, ttl}
"""

# ARGV: prefix, node, app, user id, connections. Counts that many more sockets
# signed in as the user. Returns the version of the change if the user came
# online (cluster-wide), else '0'.
SIGNIN: Final = (
    _VERSION
    + """
local p, node, app, uid, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('HINCRBY', p .. 'node:' .. node .. ':users', app .. '\\0' .. uid, n)
if redis.call('HINCRBY', p .. 'app:' .. app .. ':users', uid, n) == n then
  return next_version(p, app)
end
return '0'
"""
)

# ARGV: prefix, node, app, user id. Counts one socket fewer. Returns the
# version of the change if the user went offline (cluster-wide), else '0'
# (also when this node had no such socket: a cleanup already took it).
SIGNOUT: Final = (
    _VERSION
    + """
local p, node, app, uid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nu = p .. 'node:' .. node .. ':users'
local field = app .. '\\0' .. uid
local mine = redis.call('HINCRBY', nu, field, -1)
if mine <= 0 then redis.call('HDEL', nu, field) end
if mine < 0 then return '0' end
local users = p .. 'app:' .. app .. ':users'
if redis.call('HINCRBY', users, uid, -1) <= 0 then
  redis.call('HDEL', users, uid)
  return next_version(p, app)
end
return '0'
"""
)

# ARGV: prefix, node, app, user ids... Returns {version, 1|0 per user id}:
# who is online, as of a version every earlier change has and no later one
# can have (the clock just before now, or the last change's if that is later).
USERS: Final = """
local p, app = ARGV[1], ARGV[3]
local t = redis.call('TIME')
local v = tonumber(t[1]) * 1000000 + tonumber(t[2]) - 1
local last = tonumber(redis.call('GET', p .. 'app:' .. app .. ':users:version') or '0')
if last > v then v = last end
local out = {string.format('%.0f', v)}
local online = redis.call('HMGET', p .. 'app:' .. app .. ':users', unpack(ARGV, 4))
for i = 1, #online do out[i + 1] = online[i] and 1 or 0 end
return out
"""

# ARGV: prefix, node, app, key, window ms. Returns 0 if this caller claimed
# the window, else the ms left in the window someone else claimed.
THROTTLE: Final = """
local k = ARGV[1] .. 'app:' .. ARGV[3] .. ':throttle:' .. ARGV[4]
if redis.call('SET', k, '1', 'NX', 'PX', ARGV[5]) then return 0 end
return math.max(1, redis.call('PTTL', k))
"""
