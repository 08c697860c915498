"""Fixtures shared by every test directory.

Servers are real: ``pbxws_process`` runs ``pbxws serve`` as a subprocess on free
ports, ``pbxws_server`` runs :class:`pbxws.server.Server` in the test's event loop,
``redis_server`` runs a throw-away ``redis-server``, and ``node_driver`` runs the
official Pusher clients under Node (``tests/interop/node/driver.mjs``).

Nothing here sleeps to synchronise. Readiness is a log line, a reply or an event,
awaited with a timeout scaled from one constant: ``TIMEOUT_FACTOR=3`` on a slow machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.webhook_receiver import ReceiverFactory

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "interop" / "node"

#: Every wait in the tests is a multiple of this factor (doubled on CI runners).
TIMEOUT_FACTOR = float(os.environ.get("TIMEOUT_FACTOR", "1")) * (
    2.0 if os.environ.get("CI", "").lower() in ("1", "true", "yes") else 1.0
)
#: The default time to wait for something that should happen "now" (a reply, an event).
TIMEOUT = 5.0 * TIMEOUT_FACTOR

#: The app servers start with unless a test says otherwise (Soketi's default app).
APP_ID = "app-id"
APP_KEY = "app-key"
APP_SECRET = "app-secret"
#: A fixed 32-byte end-to-end encryption master key, base64 (private-encrypted-).
MASTER_KEY_BASE64 = "cGJ4d3MtaW50ZXJvcC10ZXN0cy0zMi1ieXRlLWtleSE="


def timeout(multiple: float = 1.0) -> float:
    """Return ``multiple`` times the default wait, in seconds."""
    return TIMEOUT * multiple


@dataclass(frozen=True)
class App:
    """Credentials of one app, for the server, the SDKs and the auth endpoint."""

    id: str = APP_ID
    key: str = APP_KEY
    secret: str = APP_SECRET
    master_key: str = MASTER_KEY_BASE64

    def as_env(self) -> dict[str, str]:
        """Return the credentials as Soketi's default-app environment variables."""
        return {
            "SOKETI_DEFAULT_APP_ID": self.id,
            "SOKETI_DEFAULT_APP_KEY": self.key,
            "SOKETI_DEFAULT_APP_SECRET": self.secret,
        }

    def as_driver(self) -> dict[str, str]:
        """Return the credentials in the shape ``driver.mjs`` expects."""
        return {
            "id": self.id,
            "key": self.key,
            "secret": self.secret,
            "master_key": self.master_key,
        }


@pytest.fixture
def app() -> App:
    """The default app's credentials."""
    return App()


def free_port() -> int:
    """Return a TCP port that was free a moment ago (for servers that can't bind 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- reports
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _tail(lines: list[str], n: int = 60) -> str:
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------- pbxws subprocess
class ProcessOutput:
    """Lines a subprocess writes, collected in the background and awaitable."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []  # every line so far, decoded, without the newline
        self.closed = False  # the stream reached EOF
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._pump(stream))

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                async with self._changed:
                    self.lines.append(line.decode(errors="replace").rstrip("\n"))
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self.closed = True
                self._changed.notify_all()

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield the lines that are JSON objects (structlog's JSON renderer)."""
        for line in self.lines:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    yield obj

    async def wait_for_record(
        self, predicate: Callable[[dict[str, Any]], bool], wait: float
    ) -> dict[str, Any]:
        """Return the first JSON record matching ``predicate`` (wait ``wait`` s)."""

        def found() -> dict[str, Any] | None:
            return next((r for r in self.records() if predicate(r)), None)

        async def until() -> dict[str, Any]:
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None or self.closed)
            record = found()
            if record is None:
                raise EOFError("the process closed its output first")
            return record

        return await asyncio.wait_for(until(), wait)

    async def aclose(self) -> None:
        """Wait for the pump to finish (the process has exited or is about to)."""
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, timeout(1))
        self._task.cancel()


@dataclass
class PbxwsProcess:
    """A ``pbxws serve`` subprocess that reported ``server_started``."""

    proc: asyncio.subprocess.Process
    output: ProcessOutput  # stdout and stderr, merged
    port: int
    metrics_port: int
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """Base URL of the HTTP API and WebSocket endpoint, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the server (by its pid); a no-op once it has exited."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    async def wait(self, wait: float | None = None) -> int:
        """Wait for the process to exit and return its exit status."""
        return await asyncio.wait_for(self.proc.wait(), wait or timeout(3))

    async def wait_for_log(
        self, event: str, wait: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Return the first JSON log record with this ``event`` (and ``fields``)."""
        return await self.output.wait_for_record(
            lambda r: (
                r.get("event") == event
                and all(r.get(k) == v for k, v in fields.items())
            ),
            wait or timeout(),
        )

    async def stop(self) -> int:
        """Terminate the process: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc.returncode is None:
            self.kill(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout(3))
            except TimeoutError:
                self.kill(signal.SIGKILL)
                await self.proc.wait()
        await self.output.aclose()
        assert self.proc.returncode is not None
        return self.proc.returncode


def pbxws_executable() -> list[str]:
    """Return the argv prefix that runs the installed ``pbxws`` console script.

    ``PBXWS_TEST_SERVER_BIN`` replaces it with any executable taking the same
    ``serve`` arguments and logging the same ``server_started`` line, e.g. a shim
    running Soketi, to check the tests themselves against the reference server.
    """
    if override := os.environ.get("PBXWS_TEST_SERVER_BIN"):
        return [override]
    script = Path(sys.executable).with_name("pbxws")
    if not script.exists():
        pytest.fail(
            f"{script} does not exist: run scripts/setup",
            pytrace=False,
        )
    return [str(script)]


def hermetic_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a server under test: ours minus SOKETI_*/PBXWS_*."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOKETI_", "PBXWS_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["SOKETI_SHUTDOWN_GRACE_PERIOD"] = "0"  # tests stop servers often; don't linger
    env.update(extra or {})
    return env


StartProcess = Callable[..., Awaitable[PbxwsProcess]]


@pytest.fixture
async def pbxws_process(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StartProcess]:
    """Factory: start ``pbxws serve --port 0 --metrics-port 0`` as a real subprocess.

    ``await pbxws_process(env={...}, config="[server]\\n...", args=[...])`` returns a
    :class:`PbxwsProcess` once the server logged ``server_started``. ``config`` is TOML
    text (written to a temp file) or a path. Each process is killed by pid at teardown.
    """
    started: list[PbxwsProcess] = []

    async def start(
        *,
        env: Mapping[str, str] | None = None,
        config: str | Path | None = None,
        args: list[str] | tuple[str, ...] = (),
        host: str = "127.0.0.1",
    ) -> PbxwsProcess:
        argv = [
            *pbxws_executable(),
            "serve",
            "--host",
            host,
            "--port",
            "0",
            "--metrics-port",
            "0",
        ]
        if config is not None:
            if isinstance(config, str):
                path = tmp_path / f"pbxws-{len(started)}.toml"
                path.write_text(config)
                config = path
            argv += ["--config", str(config)]
        argv += list(args)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=hermetic_env(env),
            cwd=tmp_path,
            limit=2**22,
        )
        assert proc.stdout is not None
        output = ProcessOutput(proc.stdout)
        server = PbxwsProcess(
            proc=proc, output=output, port=0, metrics_port=0, argv=argv
        )
        started.append(server)
        try:
            record = await server.wait_for_log("server_started", timeout(3))
        except (TimeoutError, EOFError):
            why = (
                "timed out" if proc.returncode is None else f"exited {proc.returncode}"
            )
            await server.stop()
            pytest.fail(
                f"`{' '.join(argv)}` did not log server_started ({why}); "
                f"output:\n{_tail(output.lines)}",
                pytrace=False,
            )
        server.port = int(record["port"])
        server.metrics_port = int(record["metrics_port"])
        return server

    yield start

    for server in reversed(started):
        await server.stop()
        if _failed(request):
            print(f"\n----- pbxws pid {server.pid} output (last lines) -----")
            print(_tail(server.output.lines, 120))


# ---------------------------------------------------------------- pbxws in-process
@pytest.fixture
async def pbxws_server() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Factory: start :class:`pbxws.server.Server` in this event loop on port 0.

    ``await pbxws_server()`` serves the default app (client messages enabled);
    ``await pbxws_server(config)`` serves a given :class:`pbxws.config.Config`;
    keyword arguments override fields of the default :class:`~pbxws.config.AppConfig`.
    The server is stopped at teardown; its port is ``server.port``.
    """
    from pbxws.config import AppConfig, Config, MetricsConfig, ServerConfig
    from pbxws.server import Server

    servers: list[Any] = []

    async def start(config: Any = None, /, **app_fields: Any) -> Any:
        if config is None:
            app_kw: dict[str, Any] = {
                "id": APP_ID,
                "key": APP_KEY,
                "secret": APP_SECRET,
                "enable_client_messages": True,
                **app_fields,
            }
            config = Config(
                server=ServerConfig(host="127.0.0.1", port=0, shutdown_grace_period=0),
                metrics=MetricsConfig(host="127.0.0.1", port=0),
                apps=[AppConfig(**app_kw)],
            )
        server = Server(config)
        await asyncio.wait_for(server.start(), timeout(2))
        servers.append(server)
        return server

    yield start

    for server in reversed(servers):
        await asyncio.wait_for(server.stop(), timeout(3))


# ---------------------------------------------------------------- redis-server
REDIS_INSTALL_HINT = (
    "redis-server is required (the tests start their own on a free port): "
    "run scripts/setup as root, or install it with `sudo apt-get install redis-server` "
    "(Debian/Ubuntu) or `brew install redis` (macOS)"
)


class RedisServer:
    """A throw-away ``redis-server`` on a free port, without persistence."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []  # everything redis-server printed, across restarts

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Start redis-server; return once it accepts connections and answers PING."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._drainer: threading.Thread | None = None
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.workdir),
                "--logfile", "",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self._wait_ready(self.proc.stdout, time.monotonic() + timeout(3))
        self._drainer = threading.Thread(
            target=self._drain, args=(self.proc.stdout,), daemon=True
        )
        self._drainer.start()
        assert self.ping(), (
            f"redis-server on {self.port} does not answer PING:\n{_tail(self.log)}"
        )

    def _wait_ready(self, stream: Any, deadline: float) -> None:
        # os.read, not readline: a buffered readline could swallow the ready line
        # into Python's buffer where select() can't see it.
        fd = stream.fileno()
        pending = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self.log.append(line.decode(errors="replace").rstrip())
                    if b"Ready to accept connections" in line:
                        return
        self.stop()
        pytest.fail(
            f"redis-server did not become ready:\n{_tail(self.log)}", pytrace=False
        )

    def _drain(self, stream: Any) -> None:
        with stream:  # closed at EOF, when redis-server exits
            for line in stream:
                self.log.append(line.decode(errors="replace").rstrip())

    def _reap(self) -> None:
        """After the process exited: wait for the drain thread to close stdout."""
        drainer = getattr(self, "_drainer", None)
        if drainer is not None:
            drainer.join(timeout(1))
        elif self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def ping(self) -> bool:
        """Send PING over a fresh connection; True if redis answered PONG."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout(1)) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to redis-server (by pid) and wait for it to exit."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout(3))
            self._reap()

    def restart(self) -> None:
        """Kill redis-server and start it again on the same port (all data is lost)."""
        self.kill()
        self.start()

    def flush(self) -> None:
        """FLUSHALL, so one test's keys don't leak into the next."""
        with socket.create_connection(("127.0.0.1", self.port), timeout(1)) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(64)

    def stop(self) -> None:
        """Terminate redis-server (by pid)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout(3))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self._reap()


@pytest.fixture(scope="session")
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], RedisServer]]:
    """Factory: start another ``redis-server`` (fails with an install hint)."""
    binary = shutil.which("redis-server") or shutil.which(
        "redis-server", path="/usr/sbin"
    )
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        if binary is None:
            pytest.fail(REDIS_INSTALL_HINT, pytrace=False)
        server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
        servers.append(server)
        server.start()
        return server

    yield start

    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def redis_session(redis_server_factory: Callable[[], RedisServer]) -> RedisServer:
    """One redis-server shared by the session (started on first use)."""
    return redis_server_factory()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> RedisServer:
    """The session's redis-server, running and empty at the start of the test."""
    if redis_session.proc is None or redis_session.proc.poll() is not None:
        redis_session.start()  # a previous test killed it
    redis_session.flush()
    return redis_session


# ---------------------------------------------------------------- Node driver
class DriverError(Exception):
    """``driver.mjs`` could not carry out a command (bad arguments, unknown client)."""


class JsonLinesProcess:
    """A Node helper spoken to in JSON lines: ``{"id", "cmd", ...}`` in, replies out.

    Lines carrying ``id`` and ``ok`` answer a command; every other line is an
    event appended to :attr:`events`. The first ``{"type": "ready"}`` event
    resolves :meth:`wait_ready`. Subclasses name their error and diagnostics.
    """

    #: Raised when the helper can't carry out a command or has exited.
    error: type[Exception] = RuntimeError
    #: How failure messages name the helper.
    name = "helper"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin and proc.stdout and proc.stderr
        self.proc = proc
        self.events: list[dict[str, Any]] = []  # every non-reply line, in arrival order
        self.stderr = ProcessOutput(proc.stderr)
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._closed = False
        self._ready: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._reader = asyncio.create_task(self._read(proc.stdout))

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = {"type": "noise", "line": line.decode(errors="replace")}
                if "id" in msg and "ok" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut and not fut.done():
                        fut.set_result(msg)
                    continue
                if msg.get("type") == "ready" and not self._ready.done():
                    self._ready.set_result(msg)
                async with self._changed:
                    self.events.append(msg)
                    self._changed.notify_all()
        finally:
            self._closed = True
            error = self.error(f"{self.name} exited:\n{self.diagnostics()}")
            for fut in [*self._pending.values(), self._ready]:
                if not fut.done():
                    fut.set_exception(error)
            async with self._changed:
                self._changed.notify_all()

    async def wait_ready(self, wait: float) -> dict[str, Any]:
        """The helper's ``ready`` line (its error if it exited first)."""
        return await asyncio.wait_for(self._ready, wait)

    async def send(
        self, cmd: str, /, *, wait: float | None = None, **fields: Any
    ) -> Any:
        """Run one command, return its ``result`` (:attr:`error` if it failed)."""
        __tracebackhide__ = True
        if self._closed:
            raise self.error(f"{self.name} has exited:\n{self.diagnostics()}")
        self._next_id += 1
        ident = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            json.dumps({"id": ident, "cmd": cmd, **fields}).encode() + b"\n"
        )
        await self.proc.stdin.drain()
        limit = wait or timeout()
        try:
            reply = await asyncio.wait_for(fut, limit)
        except TimeoutError:
            self._pending.pop(ident, None)
            raise AssertionError(
                f"{self.name} command {cmd} {fields} got no reply in {limit} s\n"
                f"{self.diagnostics()}"
            ) from None
        if not reply["ok"]:
            raise self.error(f"{cmd} {fields}: {reply['error']}")
        return reply.get("result")

    def diagnostics(self, n: int = 50) -> str:
        """The last events and the helper's stderr, for failure messages."""
        lines = [f"#{i} {json.dumps(e)}" for i, e in enumerate(self.events)][-n:]
        return (
            "events:\n  "
            + "\n  ".join(lines or ["(none)"])
            + f"\n{self.name} stderr:\n  "
            + "\n  ".join(self.stderr.lines[-n // 2 :] or ["(none)"])
        )

    async def close(self) -> None:
        """Ask the helper to exit; kill it (by pid) if it won't."""
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("shutdown", wait=timeout(1))
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout(2))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, timeout(1))
        await self.stderr.aclose()


class NodeDriver(JsonLinesProcess):
    """pytest's handle on ``tests/interop/node/driver.mjs`` (Pusher clients in Node).

    ``await send("connect", client="a", ...)`` runs a command and returns its result.
    Everything the clients observe is appended to :attr:`events`; :meth:`expect` waits
    for the first event matching some fields and/or a predicate.
    """

    error = DriverError
    name = "driver"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        super().__init__(proc)
        self.auth_port = 0  # the driver's auth endpoint, from its "ready" line
        self.app = App()  # credentials used when a command does not name an app

    async def ready(self) -> None:
        msg = await self.wait_ready(timeout(3))
        self.auth_port = int(msg["auth_port"])

    # -- observing ------------------------------------------------------------
    def mark(self) -> int:
        """Return a position in :attr:`events`, to pass as ``since``."""
        return len(self.events)

    def matching(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        /,
        *,
        since: int = 0,
        **fields: Any,
    ) -> list[dict[str, Any]]:
        """Return the events (from ``since``) matching ``fields`` and ``predicate``."""
        return [
            e
            for e in self.events[since:]
            if all(e.get(k) == v for k, v in fields.items())
            and (predicate is None or predicate(e))
        ]

    async def expect(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        /,
        *,
        since: int = 0,
        wait: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Wait for the first event (from ``since``) matching the filters."""
        __tracebackhide__ = True

        async def until() -> dict[str, Any]:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: (
                        bool(self.matching(predicate, since=since, **fields))
                        or self._closed
                    )
                )
            found = self.matching(predicate, since=since, **fields)
            if not found:
                raise DriverError("driver exited")
            return found[0]

        try:
            return await asyncio.wait_for(until(), wait or timeout())
        except (TimeoutError, DriverError):
            what = ", ".join(f"{k}={v!r}" for k, v in fields.items())
            if predicate is not None:
                what += f" and {getattr(predicate, '__name__', 'predicate')}"
            raise AssertionError(
                f"no event with {what} within {wait or timeout()} s "
                f"(since #{since}); the clients saw:\n{self.diagnostics()}"
            ) from None

    # -- conveniences over the commands ---------------------------------------
    async def connect(
        self,
        client: str,
        port: int,
        *,
        key: str = APP_KEY,
        auth: Mapping[str, Any] | None = None,
        until: tuple[str, ...] | None = ("connected",),
        echo: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a pusher-js (or, with ``echo``, a Laravel Echo) client.

        ``auth`` is the auth endpoint's profile for this client (see driver.mjs); it
        gets :attr:`app`'s credentials unless it has its own ``app``. Returns the
        client state once the connection reaches one of the ``until`` states (None:
        return at once).
        """
        profile = {"app": self.app.as_driver(), **(auth or {})}
        return await self.send(
            "echo_connect" if echo else "connect",
            client=client,
            key=key,
            port=port,
            auth=profile,
            options=dict(options or {}),
            **({"await": list(until)} if until else {}),
        )

    async def subscribe(
        self,
        client: str,
        channel: str,
        *,
        expect: str | None = "subscription_succeeded",
    ) -> dict[str, Any] | None:
        """Subscribe with pusher-js; return its ``subscription_succeeded``."""
        since = self.mark()
        await self.send("subscribe", client=client, channel=channel)
        if expect is None:
            return None
        return await self.expect(
            client=client, channel=channel, type=expect, since=since
        )

    async def sync(self, *clients: str) -> None:
        """Ping/pong each client, so every frame sent to it before now is reported."""
        for client in clients:
            await self.send("sync", client=client)

    async def sdk(
        self, server_port: int, op: str, *args: Any, app: App | None = None
    ) -> dict[str, Any]:
        """Call the Node ``pusher`` SDK: ``{"status", "body"}`` or ``{"value"}``."""
        return await self.send(
            "sdk",
            app=(app or self.app).as_driver(),
            port=server_port,
            op=op,
            args=list(args),
        )


async def start_node_script(
    folder: Path,
    script: str,
    package: str,
    tests: str,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Start ``node folder/script`` with pipes; fail with an install hint if
    node or the folder's npm ``package`` is missing (the ``tests`` need them)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"node is required for the {tests} tests: apt-get install nodejs npm",
            pytrace=False,
        )
    if not (folder / "node_modules" / package).is_dir():
        pytest.fail(
            f"{folder}/node_modules is missing: run scripts/setup", pytrace=False
        )
    return await asyncio.create_subprocess_exec(
        node,
        str(folder / script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=folder,
        env=None if env is None else {**os.environ, **env},
        limit=2**22,
    )


@pytest.fixture
async def node_driver(request: pytest.FixtureRequest) -> AsyncIterator[NodeDriver]:
    """A running ``driver.mjs`` (official pusher-js, Laravel Echo and Node SDK)."""
    proc = await start_node_script(NODE_DIR, "driver.mjs", "pusher-js", "interop")
    driver = NodeDriver(proc)
    try:
        await driver.ready()
        yield driver
    finally:
        await driver.close()
        if _failed(request):
            print(
                f"\n----- node driver pid {driver.pid} -----\n{driver.diagnostics(200)}"
            )


@pytest.fixture
async def receiver() -> AsyncIterator[ReceiverFactory]:
    """Factory of SDK-verifying webhook receivers (``tests/webhook_receiver``)."""
    from tests.webhook_receiver import receivers  # it imports this module

    async with receivers() as start:
        yield start
