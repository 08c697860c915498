"""The composition root: builds every concrete object of a node and runs it.

Nothing else in pbxws constructs the adapter, the aiohttp applications or the
listeners; handlers reach the shared state through ``app[RUNTIME]``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog
from aiohttp import web

from pbxws import __version__
from pbxws.adapters.base import Adapter
from pbxws.adapters.local import LocalAdapter
from pbxws.apps import App, AppDirectory
from pbxws.config import Config
from pbxws.http_api.errors import error_middleware
from pbxws.http_api.routes import add_routes
from pbxws.ops import build_ops_app
from pbxws.protocol.errors import ErrorCode
from pbxws.runtime import RUNTIME, Runtime
from pbxws.ws.endpoint import handle_websocket
from pbxws.ws.heartbeat import run_heartbeat
from pbxws.ws.socket_ids import SocketIdFactory

__all__ = ["Server", "StartupError"]

log = structlog.get_logger(__name__)

# Seconds aiohttp gives in-flight HTTP requests when a listener stops.
_LISTENER_SHUTDOWN_TIMEOUT: Final = 1.0


class StartupError(Exception):
    """The node could not start (port in use, bad address); one line says why."""


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise StartupError("the listener has no TCP address")


def _adapter(config: Config, node: str) -> Adapter:
    """The adapter the config asks for; the node id names this node in Redis."""
    if config.adapter.driver == "redis":
        from pbxws.adapters.redis import RedisAdapter

        return RedisAdapter(config.redis, config.adapter, node)
    return LocalAdapter()


class Server:
    """One pbxws node: WebSocket + HTTP API listener and operations listener."""

    def __init__(self, config: Config) -> None:
        self.config = config
        apps = AppDirectory(App.from_config(a, config.limits) for a in config.apps)
        socket_ids = SocketIdFactory()
        self.runtime = Runtime(
            config, apps, _adapter(config, socket_ids.node), socket_ids
        )
        # Actual ports once started (the config may say 0).
        self.port = 0
        self.metrics_port = 0
        self._runners: list[web.AppRunner] = []
        self._heartbeat: asyncio.Task[None] | None = None

    def _main_app(self) -> web.Application:
        server = self.config.server
        app = web.Application(
            middlewares=[error_middleware], client_max_size=server.max_request_size
        )
        app[RUNTIME] = self.runtime
        add_routes(app.router, server.path_prefix)
        app.router.add_get(f"{server.path_prefix}/app/{{key}}", handle_websocket)
        return app

    async def _listen(
        self, app: web.Application, host: str, port: int, what: str
    ) -> int:
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_LISTENER_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(
            runner,
            host,
            port,
            reuse_address=True,
            backlog=1024,
        )
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port} for the {what}: {exc.strerror or exc}"
            ) from exc
        return _bound_port(runner)

    async def start(self) -> None:
        """Bind both listeners and start accepting clients.

        Raises:
            StartupError: If a port can't be bound; then the process must exit.
        """
        cfg = self.config
        try:
            await self.runtime.adapter.start()
            self.port = await self._listen(
                self._main_app(), cfg.server.host, cfg.server.port, "WebSocket/API port"
            )
            self.metrics_port = await self._listen(
                build_ops_app(self.runtime),
                cfg.metrics.host,
                cfg.metrics.port,
                "metrics port",
            )
        except BaseException:
            await self._cleanup()
            raise
        self._heartbeat = asyncio.get_running_loop().create_task(
            run_heartbeat(self.runtime)
        )
        self.runtime.accepting = True
        log.info(
            "server_started",
            version=__version__,
            host=cfg.server.host,
            port=self.port,
            metrics_port=self.metrics_port,
            apps=len(cfg.apps),
            adapter=cfg.adapter.driver,
            node=self.runtime.socket_ids.node,
        )

    async def stop(self) -> None:
        """Drain and stop: not ready, close clients with 4200, stop listeners."""
        rt = self.runtime
        # Not ready: load balancers stop sending new clients; new sockets get 4200.
        rt.accepting = False
        # Close open connections with 4200 so clients reconnect (elsewhere) now.
        for conn in list(rt.connections.values()):
            conn.close_soon(
                ErrorCode.RECONNECT, "Server closed. Please reconnect shortly."
            )
        grace = self.config.server.shutdown_grace_period
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await rt.wait_no_connections()
        await self._cleanup()
        log.info("server_stopped", remaining_connections=len(rt.connections))

    async def _cleanup(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.runtime.adapter.stop()
