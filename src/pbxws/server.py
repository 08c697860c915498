"""The composition root: builds every concrete object of a node and runs it.

Nothing else in pbxws constructs the adapter, the aiohttp applications or the
listeners; handlers reach the shared state through ``app[RUNTIME]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Final

import structlog
from aiohttp import web

from pbxws import __version__
from pbxws.adapters.base import Adapter
from pbxws.adapters.local import LocalAdapter
from pbxws.apps import App, AppDirectory
from pbxws.config import Config, ServerConfig, SslConfig
from pbxws.front import Front
from pbxws.http_api.errors import error_middleware
from pbxws.http_api.metering import metrics_middleware
from pbxws.http_api.routes import add_routes
from pbxws.metrics import LocalRegistries
from pbxws.ops import accept_traffic, build_ops_app
from pbxws.protocol.errors import ErrorCode
from pbxws.runtime import RUNTIME, Runtime
from pbxws.webhooks.store import MemoryStore, RegistryTruth, Store
from pbxws.ws.connection import ConnState
from pbxws.ws.endpoint import handle_websocket
from pbxws.ws.heartbeat import run_heartbeat
from pbxws.ws.socket_ids import SocketIdFactory

__all__ = ["Server", "StartupError"]

log = structlog.get_logger(__name__)

# Seconds aiohttp gives in-flight HTTP requests when a listener stops.
_LISTENER_SHUTDOWN_TIMEOUT: Final = 1.0
# Closes of a drain due within this many seconds of each other go out together.
_DRAIN_TICK: Final = 0.01
# Share of the grace period kept for stopping the listeners and the adapter
# after the clients are gone (at most _LISTENER_SHUTDOWN_TIMEOUT).
_STOP_RESERVE: Final = 0.1
# What a drained client reads before the 4200 close (Soketi's words).
_DRAIN_REASON: Final = "Server closed. Please reconnect shortly."


class StartupError(Exception):
    """The node could not start (port in use, bad address); one line says why."""


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise StartupError("the listener has no TCP address")


def drain_window(server: ServerConfig) -> float:
    """Seconds over which a shutdown spreads its 4200 closes."""
    if server.drain_window is None:
        return server.shutdown_grace_period / 2
    return min(server.drain_window, server.shutdown_grace_period)


def _ssl_context(cfg: SslConfig) -> ssl.SSLContext | None:
    """The main port's TLS context, or None when ``ssl.cert``/``ssl.key`` are unset.

    As Soketi (uWebSockets): ``ssl.ca`` makes the server ask clients for a
    certificate and check the ones they present against it; clients without
    one are still served.

    Raises:
        StartupError: If a file can't be read or the key doesn't match the
            certificate (or the passphrase is wrong); then the process must exit.
    """
    if not cfg.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cfg.cert, cfg.key, password=cfg.passphrase or None)
        if cfg.ca:
            context.load_verify_locations(cfg.ca)
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(
            f"cannot load TLS certificate {cfg.cert!r} and key {cfg.key!r}"
            + (f" (CA {cfg.ca!r})" if cfg.ca else "")
            + f": {exc}"
        ) from exc
    return context


def _adapter(config: Config, node: str) -> Adapter:
    """The adapter the config asks for; the node id names this node in Redis."""
    if config.adapter.driver == "redis":
        from pbxws.adapters.redis import RedisAdapter

        return RedisAdapter(config.redis, config.adapter, node)
    return LocalAdapter()


def _webhook_store(config: Config, adapter: Adapter) -> Store:
    """Where webhook deliveries wait: in Redis for a cluster, else in memory."""
    hooks = config.webhooks
    window = hooks.batching_duration if hooks.batching else 0.0
    if config.adapter.driver == "redis":
        from pbxws.webhooks.redis_store import RedisStore

        return RedisStore(
            config.redis,
            grace=hooks.removal_delay,
            window=window,
            limit=hooks.queue_limit,
            # A claim outlives any request, answer included.
            visibility=hooks.request_timeout * 1.5 + 1.0,
            retry_period=hooks.retry_period,
            endpoints=[
                (app.id, hook.url) for app in config.apps for hook in app.webhooks
            ],
            connections=hooks.concurrency + 2,
        )
    registries = (
        adapter.local_registries() if isinstance(adapter, LocalRegistries) else {}
    )
    return MemoryStore(
        RegistryTruth(registries),
        grace=hooks.removal_delay,
        window=window,
        limit=hooks.queue_limit,
    )


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
        # The main port's listener when upgrades run on the lean protocol.
        self._lean_server: asyncio.Server | None = None
        # Pings and closes silent clients; cancelled when the drain starts.
        self._heartbeat: asyncio.Task[None] | None = None
        # Samples the event-loop lag for the metrics.
        self._lag_probe: asyncio.Task[None] | None = None

    def _main_app(self) -> web.Application:
        server = self.config.server
        app = web.Application(
            middlewares=[metrics_middleware, error_middleware],
            client_max_size=server.max_request_size,
        )
        app[RUNTIME] = self.runtime
        add_routes(app.router, server.path_prefix)
        app.router.add_get(f"{server.path_prefix}/accept-traffic", accept_traffic)
        app.router.add_get(f"{server.path_prefix}/app/{{key}}", handle_websocket)
        return app

    async def _runner(self, app: web.Application) -> web.AppRunner:
        """Set up ``app``; its runner is cleaned up with the node."""
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_LISTENER_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def _listen(
        self,
        app: web.Application,
        host: str,
        port: int,
        what: str,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        runner = await self._runner(app)
        site = web.TCPSite(
            runner,
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl_context=ssl_context,
        )
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port} for the {what}: {exc.strerror or exc}"
            ) from exc
        return _bound_port(runner)

    async def _listen_lean(
        self,
        app: web.Application,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> int:
        """The main port: upgrades on the lean protocol, the rest on aiohttp."""
        runner = await self._runner(app)
        http_factory = runner.server
        if http_factory is None:
            raise StartupError("aiohttp did not set up its request handler")
        rt = self.runtime
        loop = asyncio.get_running_loop()
        try:
            self._lean_server = await loop.create_server(
                lambda: Front(rt, http_factory),
                host,
                port,
                ssl=ssl_context,
                reuse_address=True,
                backlog=1024,
            )
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port} for the WebSocket/API port: "
                f"{exc.strerror or exc}"
            ) from exc
        return int(self._lean_server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind both listeners and start accepting clients.

        Raises:
            StartupError: If a port can't be bound or the TLS files can't be
                used; then the process must exit.
        """
        cfg = self.config
        tls = _ssl_context(cfg.ssl)
        try:
            rt = self.runtime
            if rt.webhooks.enabled:
                await rt.webhooks.start(_webhook_store(cfg, rt.adapter))
            rt.adapter.observe(
                rt.metrics, rt.webhooks.transition if rt.webhooks.enabled else None
            )
            await rt.adapter.start()
            if cfg.server.lean_websockets:
                self.port = await self._listen_lean(
                    self._main_app(), cfg.server.host, cfg.server.port, tls
                )
            else:
                self.port = await self._listen(
                    self._main_app(),
                    cfg.server.host,
                    cfg.server.port,
                    "WebSocket/API port",
                    tls,
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
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.create_task(run_heartbeat(self.runtime))
        metrics = self.runtime.metrics
        metrics.bind(self.runtime, self.port)
        if metrics.enabled:
            self._lag_probe = loop.create_task(metrics.watch_loop_lag())
        self.runtime.accepting = True
        log.info(
            "server_started",
            version=__version__,
            host=cfg.server.host,
            port=self.port,
            metrics_port=self.metrics_port,
            tls=tls is not None,
            apps=len(cfg.apps),
            adapter=cfg.adapter.driver,
            node=self.runtime.socket_ids.node,
        )

    async def stop(self) -> None:
        """Drain, then stop, within ``server.shutdown_grace_period``.

        The phases, in Soketi's order, with the closes spread out:
        not ready → clients closed with 4200 over the drain window → wait for
        them to go → stop the main listener → leave the cluster → stop the
        operations listener.
        """
        rt = self.runtime
        loop = asyncio.get_running_loop()
        started = loop.time()
        server = self.config.server
        grace = server.shutdown_grace_period
        window = drain_window(server)
        # Not ready: /ready and /accept-traffic answer 503 on both ports, so load
        # balancers stop sending clients here; new sockets are refused with 4200.
        rt.accepting = False
        log.info(
            "drain_started",
            connections=len(rt.connections),
            drain_window=window,
            grace_period=grace,
        )
        # Nobody needs liveness pings any more.
        self._cancel_tasks(heartbeat_only=True)
        # Close every client with 4200, spread over the window, so that their
        # reconnects reach the other nodes gradually rather than all at once.
        closed = await self._close_spread(window)
        # Wait for the closes to finish (each handler leaves its channels, so
        # presence members go with member_removed), keeping a little of the
        # grace period for the steps below.
        reserve = min(_LISTENER_SHUTDOWN_TIMEOUT, grace * _STOP_RESERVE)
        remaining = started + grace - reserve - loop.time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, remaining)):
                await rt.wait_no_connections()
        # Clients that did not finish their close handshake in time are cut off.
        for conn in list(rt.connections.values()):
            conn.abort()
        log.info(
            "drain_finished",
            closed=closed,
            cut_off=len(rt.connections),
            elapsed=round(loop.time() - started, 3),
        )
        await self._cleanup(started + grace)
        log.info("server_stopped", elapsed=round(loop.time() - started, 3))

    async def _close_spread(self, window: float) -> int:
        """Close every open connection with 4200, the i-th of n at ``window·i/n``.

        Returns how many connections were asked to close.
        """
        # Connections already going (leaving their channels) need no 4200.
        conns = [
            c for c in self.runtime.connections.values() if c.state is ConnState.OPEN
        ]
        if not conns:
            return 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        step = window / len(conns)
        for i, conn in enumerate(conns):
            delay = start + step * i - loop.time()
            if delay > _DRAIN_TICK:
                await asyncio.sleep(delay)
            conn.close_soon(ErrorCode.RECONNECT, _DRAIN_REASON)
        return len(conns)

    def _cancel_tasks(self, *, heartbeat_only: bool = False) -> None:
        tasks = [self._heartbeat]
        if not heartbeat_only:
            tasks.append(self._lag_probe)
        for task in tasks:
            if task is not None:
                task.cancel()
        self._heartbeat = None
        if not heartbeat_only:
            self._lag_probe = None

    async def _cleanup(self, deadline: float = 0.0) -> None:
        """Stop the main listener, leave the cluster, stop the operations listener.

        Webhooks get until ``deadline`` (loop time) to go out.
        """
        self._cancel_tasks()
        runners, self._runners = self._runners, []
        # The main port: no new connections; in-flight API requests get to finish.
        if self._lean_server is not None:
            self._lean_server.close()
            self._lean_server = None
        if runners:
            await runners[0].cleanup()
        # No more subscription counts to send.
        await self.runtime.subscription_counts.aclose()
        # Leave the cluster: our members and subscriptions are removed at once.
        await self.runtime.adapter.stop()
        # Webhooks: the departures above included; in a cluster what is left
        # stays in Redis for the other nodes.
        loop = asyncio.get_running_loop()
        await self.runtime.webhooks.stop(max(0.0, deadline - loop.time()))
        # Last, the operations port, which answered /ready 503 all along.
        for runner in runners[1:]:
            await runner.cleanup()
