"""Starting and stopping the servers under test, and reading /proc about them.

Both servers get the production settings issue 7 asks for: HTTP API
signatures checked (always on in both), metrics enabled
(``SOKETI_METRICS_ENABLED=true``), logs at info level (Soketi's default,
``SOKETI_DEBUG`` off; pbxws ``--log-level info``). Logs go to files under the
run's results folder, never to a pipe nobody reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import APP_ID, APP_KEY, APP_SECRET

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
SOKETI_JS = BENCH / "node_modules" / "@soketi" / "soketi" / "bin" / "server.js"
PBXWS_BIN = ROOT / ".venv" / "bin" / "pbxws"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all CPUs), from /proc/stat.

    Minus the server's and the generator's, it is what other processes took
    during a measurement: a noisy neighbour shows up in the results.
    """
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in fields[:8]
    )
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOKETI_", "PBXWS_"))
    }
    env.update(
        SOKETI_DEFAULT_APP_ID=APP_ID,
        SOKETI_DEFAULT_APP_KEY=APP_KEY,
        SOKETI_DEFAULT_APP_SECRET=APP_SECRET,
        SOKETI_METRICS_ENABLED="true",
        SOKETI_HOST="127.0.0.1",
        SOKETI_METRICS_HOST="127.0.0.1",
        SOKETI_SHUTDOWN_GRACE_PERIOD="1000",
        # Both default to 100 members; the PBX shape has 4 per channel.
    )
    return env


@dataclass
class Running:
    """A started server."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            for _ in range(150):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class StartError(RuntimeError):
    pass


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# CPUs the servers (and the cluster's redis-server) may run on, as ``taskset -c``
# takes them ("0", "0-1"); None: any. Set by ``bench/run --server-cpus``.
SERVER_CPUS: str | None = None


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """``argv`` run on ``cpus`` only (all its threads: the mask is set before exec)."""
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def _spawn(
    argv: list[str], log: Path, env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start a server in its own session, its output going to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            pinned(argv, SERVER_CPUS),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def _started_line(log: Path) -> dict[str, object] | None:
    """pbxws's ``server_started`` log line, once written."""
    for line in log.read_text(errors="replace").splitlines():
        if '"server_started"' in line:
            return dict(json.loads(line))
    return None


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


# Settings for every pbxws started, e.g. {"PBXWS_SERVER_PUBLISH_COALESCING_WINDOW":
# "0"}; set by ``bench/run --pbxws-env``.
PBXWS_ENV: dict[str, str] = {}


async def start_pbxws(log: Path, env_extra: dict[str, str] | None = None) -> Running:
    env = base_env()
    env.update(PBXWS_ENV)
    env.update(env_extra or {})
    argv = [str(PBXWS_BIN), "serve", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--metrics-port", "0", "--log-level", "info"]
    proc = _spawn(argv, log, env, ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"pbxws exited with {proc.returncode}:\n{_tail(log)}")
        info = _started_line(log)
        if info is not None:
            port, metrics_port = int(str(info["port"])), int(str(info["metrics_port"]))
            return Running("pbxws", proc, port, metrics_port, log)
        await asyncio.sleep(0.05)
    proc.kill()
    raise StartError(f"pbxws did not log server_started in 30 s:\n{_tail(log)}")


async def start_soketi(log: Path, env_extra: dict[str, str] | None = None) -> Running:
    if not SOKETI_JS.exists():
        raise StartError(
            f"Soketi is not installed ({SOKETI_JS}); run bench/run without --no-install"
        )
    port, metrics_port = free_port(), free_port()
    env = base_env()
    env.update(SOKETI_PORT=str(port), SOKETI_METRICS_SERVER_PORT=str(metrics_port))
    env.update(env_extra or {})
    proc = _spawn(["node", str(SOKETI_JS), "start"], log, env, BENCH)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"Soketi exited with {proc.returncode}:\n{_tail(log)}")
        if await asyncio.to_thread(_ready, port):
            return Running("soketi", proc, port, metrics_port, log)
        await asyncio.sleep(0.1)
    proc.kill()
    raise StartError(f"Soketi did not answer GET / in 30 s:\n{_tail(log)}")


STARTERS = {"pbxws": start_pbxws, "soketi": start_soketi}


class Group:
    """Two nodes of one server sharing a Redis (the cluster scenario).

    Looks like :class:`Running` to the scenarios: ``port`` is node A's (the
    publisher's target), CPU and RSS are the sum over both nodes. Redis's own
    CPU is reported apart (``redis_cpu``), never added to the server's.
    """

    def __init__(
        self, name: str, nodes: list[Running], redis: subprocess.Popen[bytes]
    ) -> None:
        self.name = name
        self.nodes = nodes
        self.redis = redis
        self.port = nodes[0].port
        self.ports = [n.port for n in nodes]

    def cpu(self) -> float:
        return sum(n.cpu() for n in self.nodes)

    def redis_cpu(self) -> float:
        return cpu_seconds(self.redis.pid)

    def rss(self) -> int:
        return sum(n.rss() for n in self.nodes)

    def threads(self) -> int:
        return sum(n.threads() for n in self.nodes)

    def alive(self) -> bool:
        return all(n.alive() for n in self.nodes) and self.redis.poll() is None

    async def stop(self) -> int | None:
        codes = [await n.stop() for n in self.nodes]
        if self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()
        return next((c for c in codes if c not in (0, -15)), codes[0])


async def start_group(name: str, log: Path) -> Group:
    """A throwaway redis-server (no persistence) and two nodes of ``name``."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no"]
    try:
        redis = _spawn(argv, log.with_suffix(".redis.log"), dict(os.environ), BENCH)
    except FileNotFoundError:
        raise StartError(
            "redis-server not found (apt-get install redis-server)"
        ) from None
    env = {
        "SOKETI_ADAPTER_DRIVER": "redis",
        "SOKETI_DB_REDIS_HOST": "127.0.0.1",
        "SOKETI_DB_REDIS_PORT": str(port),
    }
    nodes: list[Running] = []
    try:
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.1)
        for i in range(2):
            nodes.append(await STARTERS[name](log.with_suffix(f".node{i}.log"), env))
    except BaseException:
        for n in nodes:
            await n.stop()
        redis.kill()
        redis.wait()
        raise
    return Group(name, nodes, redis)
