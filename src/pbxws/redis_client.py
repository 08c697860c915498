"""One way to open Redis for every part of pbxws that uses it."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pbxws.config import RedisConfig

__all__ = ["connect"]


def connect(
    config: RedisConfig, *, connections: int, io_timeout: float
) -> aioredis.Redis:
    """A client on a blocking pool of ``connections`` sockets.

    Blocking: a burst of commands (a thousand sockets closing at once) waits
    for a connection instead of failing with "Too many connections", which
    would look like an outage. One immediate retry covers a pooled socket that
    died with a restarted Redis; after that, calls fail fast and the caller's
    own reconnect logic takes over. Close with ``aclose()`` and then
    ``connection_pool.disconnect()`` (the pool is not closed with the client).
    """
    pool = aioredis.BlockingConnectionPool(
        host=config.host,
        port=config.port,
        db=config.db,
        username=config.username,
        password=config.password,
        connection_class=aioredis.SSLConnection if config.tls else aioredis.Connection,
        max_connections=connections,
        timeout=io_timeout,
        socket_timeout=io_timeout,
        socket_connect_timeout=io_timeout,
        retry=Retry(NoBackoff(), 1),
    )
    return aioredis.Redis(connection_pool=pool)
