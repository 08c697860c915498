"""The state one node shares between its WebSocket and HTTP layers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from pbxws.apps import AppDirectory
from pbxws.coalesce import Coalescer
from pbxws.config import Config
from pbxws.metrics import Metrics
from pbxws.webhooks import Webhooks
from pbxws.ws.socket_ids import SocketIdFactory
from pbxws.ws.subscription_count import SubscriptionCounts

if TYPE_CHECKING:
    from pbxws.adapters.base import Adapter
    from pbxws.ws.connection import Connection

__all__ = ["RUNTIME", "Runtime"]


class Runtime:
    """What the request handlers of one node read and update."""

    def __init__(
        self,
        config: Config,
        apps: AppDirectory,
        adapter: Adapter,
        socket_ids: SocketIdFactory,
    ) -> None:
        self.config = config
        self.apps = apps
        # Channel state and delivery, local or cluster-wide.
        self.adapter = adapter
        # Every open connection of this node, by socket id.
        self.connections: dict[str, Connection] = {}
        # Makes socket ids; its node prefix also names this node in a cluster.
        self.socket_ids = socket_ids
        # False while starting and draining: /ready is 503, new sockets get 4200.
        self.accepting = False
        # Per-app counters and the Prometheus registry (no-ops when disabled).
        self.metrics = Metrics(config.metrics, apps.by_id)
        # pusher_internal:subscription_count for the apps that enable it.
        self.subscription_counts = SubscriptionCounts(adapter, self.metrics)
        # Webhook events of the apps that have webhooks (started by the server).
        self.webhooks = Webhooks(config, self.metrics, socket_ids.node)
        self.subscription_counts.on_count = self.webhooks.subscription_count
        # Lets the loop serve a window's publishes per wake-up (http_api/fast.py).
        self.coalescer = Coalescer(config.server.publish_coalescing_window)
        # Set whenever `connections` is empty; awaited by the drain.
        self._no_connections = asyncio.Event()
        self._no_connections.set()

    def add_connection(self, conn: Connection) -> None:
        """Track an open connection of this node."""
        self.connections[conn.socket_id] = conn
        self._no_connections.clear()

    def remove_connection(self, conn: Connection) -> None:
        """Forget a closed connection."""
        del self.connections[conn.socket_id]
        if not self.connections:
            self._no_connections.set()

    async def wait_no_connections(self) -> None:
        """Return once this node has no open connection."""
        await self._no_connections.wait()


# Typed key under which both aiohttp applications hold the runtime.
RUNTIME = web.AppKey("pbxws_runtime", Runtime)
