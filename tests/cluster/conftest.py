"""Cluster fixtures: several pbxws nodes on one real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from pbxws.config import AdapterConfig
from pbxws.server import Server
from tests.conftest import RedisServer, timeout
from tests.integration.conftest import api, make_config, ws  # noqa: F401 - fixtures

ClusterFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def cluster_node(redis_server: RedisServer) -> AsyncIterator[ClusterFactory]:
    """Factory: ``await cluster_node(**config)`` -> a started node on the test's Redis."""
    servers: list[Server] = []

    async def start(*, adapter: AdapterConfig | None = None, **kwargs: Any) -> Server:
        adapter = adapter or AdapterConfig(
            driver="redis", node_ttl=2.0, heartbeat_interval=0.2
        )
        config = make_config(redis_port=redis_server.port, adapter=adapter, **kwargs)
        server = Server(config)
        await asyncio.wait_for(server.start(), timeout())
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        if server.runtime.accepting:
            await asyncio.wait_for(server.stop(), timeout(2))
