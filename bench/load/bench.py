"""pbxws vs Soketi, side by side: the orchestrator behind ``bench/run``.

For each scenario and round it starts a fresh server (pbxws, then Soketi: A B
A B ...), starts the load-generator processes (``subscribers.py`` workers and
one ``publisher.py``), runs the scenario, stops everything it started (by
pid), and finally prints a table of medians (min-max) with pbxws/Soketi
ratios, writes JSON and a PNG under ``bench/results/``.

Server CPU is utime+stime from ``/proc/<pid>/stat`` over the measured window,
RSS is VmRSS from ``/proc/<pid>/status``; the generator's CPU is measured the
same way over its processes and printed next to the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import servers
from servers import (
    BENCH,
    ROOT,
    STARTERS,
    Group,
    Running,
    StartError,
    cpu_seconds,
    machine_busy,
    start_group,
)

HERE = Path(__file__).resolve().parent
# CPUs the load-generator processes may run on (``bench/run --gen-cpus``).
GEN_CPUS: str | None = None
BUCKET_US = 100
PASS_P99_MS = 100.0
# A failed rate step is measured again (twice at most) when other processes took
# more CPU than NOISY during it; every step first waits until they take < QUIET.
NOISY = 0.25
QUIET = 0.15

# --------------------------------------------------------------------------- config

FULL = {
    "rounds": 3,
    "workers": 2,
    "idle_sizes": [5000, 10000],
    "idle_per_channel": 100,
    "fanout_subs": 1000,
    "fanout_rates": [50, 75, 100, 125, 150, 175, 200, 250, 300, 400, 600, 1000],
    "pbx_clients": 2000,
    "pbx_size": 4,
    "pbx_rates": [
        500,
        1000,
        2000,
        3000,
        4000,
        5000,
        6000,
        8000,
        10000,
        12000,
        16000,
        20000,
        24000,
        28000,
    ],
    "churn_clients": 400,
    "churn_size": 4,
    "step_seconds": 4.0,
    "churn_seconds": 5.0,
    # Bisection steps between the last passed and the first failed ladder rate.
    # With one, the PBX max rate could only be a ladder rate or one midpoint
    # (pbxws 16,000 / 17,890 / 20,000, Soketi 8,940 / 10,000), so the ratio
    # jumped between 1.79 and 2.00. Three resolve about 3 % of the rate.
    "refine": 3,
    # Requests in flight at once (one per connection). 8 were too few: at
    # 12,000-16,000 ev/s a lane's round trip, stretched by four processes
    # sharing two CPUs, made the publisher fall behind while pbxws idled at 70%.
    "publisher_conns": 32,
    # The per-event loops of the generator in C (fastgen.c) or in Python. The
    # Python generator needed as much CPU per event as pbxws itself, on the same
    # two CPUs: at the top of the PBX ladder the machine, not the server, was full.
    "generator": "c",
    # Ask for Connection: close on every request (a connection per event).
    "publisher_close": False,
}
QUICK = {
    **FULL,
    "rounds": 1,
    "idle_sizes": [5000, 10000],
    "fanout_rates": [50, 100, 150, 200, 300, 500],
    "pbx_rates": [500, 1000, 2000, 4000, 6000, 8000, 12000, 16000],
    "step_seconds": 2.0,
    "churn_seconds": 3.0,
    "refine": 1,
}
SMOKE = {
    **FULL,
    "rounds": 1,
    "workers": 1,
    "idle_sizes": [200],
    "idle_per_channel": 20,
    "fanout_subs": 50,
    "fanout_rates": [20, 50],
    "pbx_clients": 40,
    "pbx_rates": [20, 50],
    "churn_clients": 40,
    "step_seconds": 1.0,
    "churn_seconds": 1.0,
    "refine": 0,
    "publisher_conns": 2,
}
SCENARIOS = ["idle", "fanout", "pbx", "churn", "cluster"]

# --------------------------------------------------------------------------- helpers


def src_digest() -> str:
    """A short digest of pbxws's source files now (others edit src/ during runs).

    Stored with every pbxws result, so rounds that measured different code show.
    """
    h = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Child:
    """A load-generator process spoken to in JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @classmethod
    async def start(cls, script: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *servers.pinned([sys.executable, str(HERE / script)], GEN_CPUS),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=HERE,
            limit=1 << 26,
        )
        child = cls(proc, script)
        hello = await child._read(30)
        assert hello.get("ready"), hello
        return child

    async def _read(self, limit: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), limit)
        if not line:
            raise RuntimeError(f"{self.name} (pid {self.proc.pid}) died")
        return json.loads(line)

    async def call(self, limit: float = 300, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._read(limit)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd":"exit"}\n')
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 10)
            except (TimeoutError, ConnectionError, OSError):
                self.proc.kill()
                await self.proc.wait()


class Gen:
    """The load generator of one run: subscriber workers and a publisher."""

    def __init__(
        self, workers: list[Child], publisher: Child | None, engine: str
    ) -> None:
        self.workers = workers
        self.publisher = publisher
        # "c": per-event work in fastgen.c; "python": all in Python (churn always).
        self.engine = engine

    @classmethod
    async def start(cls, n_workers: int, publisher: bool, engine: str) -> Gen:
        workers = await asyncio.gather(
            *(Child.start("subscribers.py") for _ in range(n_workers))
        )
        pub = await Child.start("publisher.py") if publisher else None
        return cls(list(workers), pub, engine)

    async def publish(self, **cmd: Any) -> dict[str, Any]:
        """One publish step (see publisher.py); answers when it is done."""
        assert self.publisher is not None
        return await self.publisher.call(cmd="publish", engine=self.engine, **cmd)

    def cpu(self) -> float:
        children = [*self.workers, *([self.publisher] if self.publisher else [])]
        return sum(c.cpu() for c in children)

    async def all(self, **cmd: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.call(**cmd) for w in self.workers)))

    async def connect(
        self,
        server: Running,
        specs: list[tuple[str, str | None]],
        concurrency: int = 100,
    ) -> dict[str, Any]:
        n = len(self.workers)
        shares = [specs[i::n] for i in range(n)]
        t0 = time.monotonic()
        # Worker i talks to node i mod nodes (one node unless it is a Group).
        ports = getattr(server, "ports", [server.port])
        res = await asyncio.gather(
            *(
                w.call(
                    cmd="connect",
                    host="127.0.0.1",
                    port=ports[i % len(ports)],
                    specs=s,
                    concurrency=concurrency,
                    engine=self.engine,
                )
                for i, (w, s) in enumerate(zip(self.workers, shares, strict=True))
            )
        )
        elapsed = time.monotonic() - t0
        connected = sum(r["connected"] for r in res)
        errors = [e for r in res for e in r["errors"]][:5]
        return {
            "connected": connected,
            "failed": len(specs) - connected,
            "elapsed": elapsed,
            "errors": errors,
        }

    async def stats(self) -> dict[str, Any]:
        res = await self.all(cmd="stats")
        hist: dict[int, int] = {}
        churn_hist: dict[int, int] = {}
        for r in res:
            for k, v in r["hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
            for k, v in r["churn_hist"].items():
                churn_hist[int(k)] = churn_hist.get(int(k), 0) + v
        return {
            "received": sum(r["received"] for r in res),
            "max_us": max(r["max_us"] for r in res),
            "closed": sum(r["closed"] for r in res),
            "open": sum(r["open"] for r in res),
            "churn_ops": sum(r["churn_ops"] for r in res),
            "hist": hist,
            "churn_hist": churn_hist,
        }

    async def stop(self) -> None:
        children = [*self.workers, *([self.publisher] if self.publisher else [])]
        for w in self.workers:
            with contextlib.suppress(RuntimeError, TimeoutError):
                await w.call(cmd="close", limit=30)
        await asyncio.gather(*(c.stop() for c in children))


def percentiles(hist: dict[int, int], max_us: int) -> dict[str, float]:
    total = sum(hist.values())
    out = {"p50": math.nan, "p95": math.nan, "p99": math.nan, "max": max_us / 1000}
    if not total:
        return out
    wanted = [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)]
    acc = 0
    keys = sorted(hist)
    j = 0
    for name, q in wanted:
        target = q * total
        while j < len(keys) and acc + hist[keys[j]] < target:
            acc += hist[keys[j]]
            j += 1
        b = keys[min(j, len(keys) - 1)]
        out[name] = min((b + 0.5) * BUCKET_US / 1000, max_us / 1000)
    return out


# --------------------------------------------------------------------------- scenarios


async def scenario_idle(server: Running, cfg: dict[str, Any], n: int) -> dict[str, Any]:
    gen = await Gen.start(cfg["workers"], publisher=False, engine=cfg["generator"])
    try:
        await asyncio.sleep(1.0)
        rss0 = server.rss()
        cpu0 = server.cpu()
        per = cfg["idle_per_channel"]
        specs = [(f"idle-{i // per}", None) for i in range(n)]
        conn = await gen.connect(server, specs)
        cpu1 = server.cpu()
        await asyncio.sleep(2.0)
        rss1 = server.rss()
        st = await gen.stats()
        return {
            "connections": n,
            "connected": conn["connected"],
            "still_open": st["open"],
            "errors": conn["errors"],
            "rss_before_mib": rss0 / 2**20,
            "rss_after_mib": rss1 / 2**20,
            "rss_per_conn_kib": (rss1 - rss0) / max(1, conn["connected"]) / 1024,
            "connect_rate": conn["connected"] / conn["elapsed"]
            if conn["elapsed"]
            else 0.0,
            "connect_seconds": conn["elapsed"],
            "server_cpu_ms_per_1k_connects": (cpu1 - cpu0)
            * 1e6
            / max(1, conn["connected"]),
            "ok": conn["connected"] == n and st["open"] == n,
        }
    finally:
        await gen.stop()


async def wait_quiet(server: Running, gen: Gen, limit: float = 30.0) -> float:
    """Wait (up to ``limit`` s) until other processes leave the CPUs alone.

    Other processes on this 2-CPU machine (a test suite, a build) take CPU
    from the server and the generator and make a rate step fail that would
    pass. Returns the CPUs they still used in the last 0.3 s probe.
    """
    deadline = time.monotonic() + limit
    while True:
        b0, s0, g0 = machine_busy(), server.cpu(), gen.cpu()
        await asyncio.sleep(0.3)
        others = (
            max(0.0, (machine_busy() - b0) - (server.cpu() - s0) - (gen.cpu() - g0))
            / 0.3
        )
        if others < QUIET or time.monotonic() > deadline:
            return others


async def rate_step(
    server: Running,
    gen: Gen,
    channels: list[str],
    subs: int,
    rate: float,
    cfg: dict[str, Any],
) -> dict[str, Any]:
    """Publish at ``rate`` for ``step_seconds``, wait for delivery, measure."""
    ens = await gen.all(cmd="ensure")
    await wait_quiet(server, gen)
    reconnected = sum(r["connected"] for r in ens)
    await gen.all(cmd="reset")
    assert gen.publisher is not None
    pcpu0 = gen.publisher.cpu()
    cpu0, gcpu0, t0, busy0 = server.cpu(), gen.cpu(), time.monotonic(), machine_busy()
    pub = await gen.publish(
        host="127.0.0.1",
        port=server.port,
        channels=channels,
        rate=rate,
        duration=cfg["step_seconds"],
        conns=cfg["publisher_conns"],
        close_each=cfg["publisher_close"],
    )
    expected = pub["ok"] * subs
    last, still = -1, 0.0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        st = await gen.stats()
        if st["received"] >= expected:
            break
        if st["received"] == last:
            still += 0.1
            if still >= 1.0:
                break
        else:
            last, still = st["received"], 0.0
        await asyncio.sleep(0.1)
    st = await gen.stats()
    cpu1, gcpu1, t1, busy1 = server.cpu(), gen.cpu(), time.monotonic(), machine_busy()
    pub_cpu = gen.publisher.cpu() - pcpu0
    pct = percentiles(st["hist"], st["max_us"])
    delivered = st["received"]
    server_cpu = cpu1 - cpu0
    gen_cpu = gcpu1 - gcpu0
    ok = (
        pub["ok"] == pub["scheduled"]
        and delivered >= pub["scheduled"] * subs
        and st["closed"] == 0
        and pct["p99"] < PASS_P99_MS
    )
    return {
        "rate": rate,
        "scheduled": pub["scheduled"],
        "published_ok": pub["ok"],
        "publish_failed": pub["failed"],
        "achieved_rate": pub["achieved_rate"],
        "publisher_reconnects": pub["reconnects"],
        "slip_max_ms": pub["slip_max_ms"],
        "expected": expected,
        "delivered": delivered,
        "closed_by_server": st["closed"],
        "reconnected_before": reconnected,
        **pct,
        "window_s": t1 - t0,
        "server_cpu_s": server_cpu,
        "gen_cpu_s": gen_cpu,
        # The publisher's share of gen_cpu_s (one process: its ceiling is a CPU).
        "publisher_cpu_s": pub_cpu,
        "server_cpu_util": server_cpu / (t1 - t0),
        # CPU other processes of the machine took in the window (noise).
        "other_cpu_util": max(0.0, (busy1 - busy0) - server_cpu - gen_cpu) / (t1 - t0),
        "server_cpu_s_per_100k": server_cpu * 1e5 / delivered
        if delivered
        else math.nan,
        "gen_cpu_s_per_100k": gen_cpu * 1e5 / delivered if delivered else math.nan,
        "pass": ok,
    }


async def rate_search(
    server: Running,
    gen: Gen,
    channels: list[str],
    subs: int,
    rates: list[int],
    cfg: dict[str, Any],
    label: str,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    last_ok, first_fail = 0.0, math.nan

    async def step(rate: float) -> bool:
        r = await rate_step(server, gen, channels, subs, rate, cfg)
        for retry in (1, 2):
            if r["pass"] or r["other_cpu_util"] <= NOISY:
                break
            # Another process took the CPU we measure with: measure again.
            log(
                f"  {label} {server.name} {rate:>7.0f}/s: failed while other processes "
                f"took {r['other_cpu_util']:.0%} of a CPU; again"
            )
            r = await rate_step(server, gen, channels, subs, rate, cfg)
            r["retried"] = retry
        steps.append(r)
        verdict = "pass" if r["pass"] else "FAIL"
        log(
            f"  {label} {server.name} {rate:>7.0f}/s: {verdict} "
            f"delivered {r['delivered']}/{r['scheduled'] * subs} "
            f"p50 {r['p50']:.1f} p99 {r['p99']:.1f} max {r['max']:.1f} ms, "
            f"server cpu {r['server_cpu_util']:.0%}, "
            f"{r['server_cpu_s_per_100k']:.2f} s/100k "
            f"(gen {r['gen_cpu_s_per_100k']:.2f}, publisher cpu "
            f"{r['publisher_cpu_s'] / r['window_s']:.0%}), "
            f"others {r['other_cpu_util']:.0%}"
        )
        if not server.alive():
            raise RuntimeError(f"{server.name} exited")
        return bool(r["pass"])

    for rate in rates:
        if await step(rate):
            last_ok = rate
        else:
            first_fail = rate
            break
    for _ in range(cfg["refine"]):
        if math.isnan(first_fail) or last_ok == 0:
            break
        mid = round(math.sqrt(last_ok * first_fail), -1)
        if mid <= last_ok or mid >= first_fail:
            break
        if await step(mid):
            last_ok = mid
        else:
            first_fail = mid
    return {
        "max_rate": last_ok,
        "first_fail": first_fail,
        "capped": math.isnan(first_fail),
        "steps": steps,
    }


async def scenario_fanout(server: Running, cfg: dict[str, Any]) -> dict[str, Any]:
    gen = await Gen.start(cfg["workers"], publisher=True, engine=cfg["generator"])
    try:
        n = cfg["fanout_subs"]
        conn = await gen.connect(server, [("fanout", None)] * n)
        if conn["connected"] != n:
            raise RuntimeError(
                f"only {conn['connected']}/{n} subscribed: {conn['errors']}"
            )
        res = await rate_search(
            server, gen, ["fanout"], n, cfg["fanout_rates"], cfg, "fanout"
        )
        res["subscribers"] = n
        return res
    finally:
        await gen.stop()


def presence_specs(
    clients: int, size: int, prefix: str
) -> list[tuple[str, str | None]]:
    return [(f"presence-{prefix}-{i // size}", f"u{i}") for i in range(clients)]


async def scenario_pbx(server: Running, cfg: dict[str, Any]) -> dict[str, Any]:
    gen = await Gen.start(cfg["workers"], publisher=True, engine=cfg["generator"])
    try:
        n, size = cfg["pbx_clients"], cfg["pbx_size"]
        specs = presence_specs(n, size, "pbx")
        conn = await gen.connect(server, specs)
        if conn["connected"] != n:
            raise RuntimeError(
                f"only {conn['connected']}/{n} subscribed: {conn['errors']}"
            )
        channels = sorted(
            {ch for ch, _ in specs}, key=lambda c: int(c.rsplit("-", 1)[1])
        )
        res = await rate_search(
            server, gen, channels, size, cfg["pbx_rates"], cfg, "pbx"
        )
        res.update(clients=n, channels=len(channels), connect_seconds=conn["elapsed"])
        return res
    finally:
        await gen.stop()


async def scenario_churn(server: Running, cfg: dict[str, Any]) -> dict[str, Any]:
    # Churn's per-operation work (unsubscribe+subscribe, parse the answer) is Python's.
    gen = await Gen.start(cfg["workers"], publisher=False, engine="python")
    try:
        n, size = cfg["churn_clients"], cfg["churn_size"]
        conn = await gen.connect(server, presence_specs(n, size, "churn"))
        if conn["connected"] != n:
            raise RuntimeError(
                f"only {conn['connected']}/{n} subscribed: {conn['errors']}"
            )
        await wait_quiet(server, gen)
        cpu0, gcpu0 = server.cpu(), gen.cpu()
        res = await gen.all(cmd="churn", duration=cfg["churn_seconds"])
        cpu1, gcpu1 = server.cpu(), gen.cpu()
        ops = sum(r["churn_ops"] for r in res)
        elapsed = max(r["elapsed"] for r in res)
        hist: dict[int, int] = {}
        for r in res:
            for k, v in r["churn_hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
        pct = percentiles(hist, max(hist, default=0) * BUCKET_US + BUCKET_US)
        st = await gen.stats()
        return {
            "clients": n,
            "pairs": ops,
            "joins_leaves_per_s": 2 * ops / elapsed,
            "join_p50_ms": pct["p50"],
            "join_p99_ms": pct["p99"],
            "server_cpu_util": (cpu1 - cpu0) / elapsed,
            "server_cpu_ms_per_1k_pairs": (cpu1 - cpu0) * 1e6 / max(1, ops),
            "gen_cpu_ms_per_1k_pairs": (gcpu1 - gcpu0) * 1e6 / max(1, ops),
            "closed_by_server": st["closed"],
            "ok": ops > 0 and st["closed"] == 0,
        }
    finally:
        await gen.stop()


async def cluster_check(results_dir: Path, engine: str) -> str | None:
    """None when two pbxws nodes fan out across Redis, else why not (tried)."""
    try:
        group = await start_group(
            "pbxws", results_dir / "logs" / "cluster-check-pbxws.log"
        )
    except StartError as exc:
        lines = [ln for ln in str(exc).splitlines() if "redis" in ln.lower()]
        return "needs the redis adapter: " + (
            lines[0].strip() if lines else str(exc).splitlines()[0]
        )
    try:
        gen = await Gen.start(2, publisher=True, engine=engine)
        try:
            conn = await gen.connect(group, [("cluster-check", None)] * 4)
            if conn["connected"] != 4:
                return f"needs the redis adapter: subscribing failed: {conn['errors']}"
            await gen.all(cmd="reset")
            await gen.publish(
                host="127.0.0.1",
                port=group.port,
                channels=["cluster-check"],
                rate=10,
                duration=0.3,
                conns=1,
            )
            for _ in range(30):
                st = await gen.stats()
                if st["received"] >= 12:
                    return None
                await asyncio.sleep(0.1)
            return (
                f"needs the redis adapter: an event published on node A reached "
                f"{st['received']}/12 subscribers across both nodes"
            )
        finally:
            await gen.stop()
    finally:
        await group.stop()


async def scenario_cluster(server: Running, cfg: dict[str, Any]) -> dict[str, Any]:
    """The fan-out scenario over two nodes and Redis; publishes go to node A."""
    assert isinstance(server, Group)
    r0 = server.redis_cpu()
    # At least one subscriber process per node, so deliveries cross Redis.
    res = await scenario_fanout(server, {**cfg, "workers": max(2, cfg["workers"])})
    res["redis_cpu_s"] = server.redis_cpu() - r0
    return res


# --------------------------------------------------------------------------- run

Runner = Callable[[Running, dict[str, Any]], Awaitable[dict[str, Any]]]


def units(cfg: dict[str, Any], only: list[str]) -> list[tuple[str, Runner]]:
    out: list[tuple[str, Runner]] = []
    if "idle" in only:
        for n in cfg["idle_sizes"]:
            out.append((f"idle-{n}", lambda s, c, n=n: scenario_idle(s, c, n)))
    if "fanout" in only:
        out.append(("fanout", scenario_fanout))
    if "pbx" in only:
        out.append(("pbx", scenario_pbx))
    if "churn" in only:
        out.append(("churn", scenario_churn))
    return out


async def run_all(
    args: argparse.Namespace, cfg: dict[str, Any], results_dir: Path, stamp: str
) -> dict[str, Any]:
    servers: list[str] = args.servers
    only: list[str] = args.only
    data: dict[str, Any] = {"scenarios": {}, "skipped": {}}
    todo = units(cfg, only)
    if "cluster" in only:
        why = await cluster_check(results_dir, cfg["generator"])
        if why is None:
            todo.append(("cluster", scenario_cluster))
        else:
            data["skipped"]["cluster"] = why
            log(f"cluster: skipped: {why}")
    for name, runner in todo:
        data["scenarios"][name] = {s: [] for s in servers}
        for rnd in range(1, cfg["rounds"] + 1):
            for sname in servers:
                logf = results_dir / "logs" / f"{stamp}-{name}-{sname}-r{rnd}.log"
                log(f"{name} round {rnd}/{cfg['rounds']}: {sname}")
                server = None
                # The code this pbxws imports at its start.
                digest = src_digest() if sname == "pbxws" else ""
                try:
                    if name == "cluster":
                        server = await start_group(sname, logf)
                    else:
                        server = await STARTERS[sname](logf)
                    t0 = time.monotonic()
                    res = await runner(server, cfg)
                    res["seconds"] = time.monotonic() - t0
                    if digest:
                        res["pbxws_src"] = digest
                    res["server_threads"] = server.threads()
                    res["round"] = rnd
                except (
                    RuntimeError,
                    StartError,
                    OSError,
                    TimeoutError,
                    AssertionError,
                ) as exc:
                    log(f"  {name} {sname} round {rnd} failed: {exc}")
                    traceback.print_exc(file=sys.stderr)
                    res = {"round": rnd, "error": f"{type(exc).__name__}: {exc}"}
                finally:
                    if server is not None:
                        code = await server.stop()
                        if code not in (0, -15, 143, None):
                            log(f"  {sname} exit code {code} (log: {logf})")
                data["scenarios"][name][sname].append(res)
                if name.startswith("idle") and "error" not in res:
                    log(
                        f"  {sname}: {res['rss_per_conn_kib']:.2f} KiB/conn, "
                        f"{res['connect_rate']:.0f} conn/s"
                    )
                if name == "churn" and "error" not in res:
                    log(
                        f"  {sname}: {res['joins_leaves_per_s']:.0f} joins+leaves/s, "
                        f"join p99 {res['join_p99_ms']:.1f} ms"
                    )
    return data


# --------------------------------------------------------------------------- summary


def _med(values: list[float]) -> tuple[float, float, float] | None:
    vals = [
        v
        for v in values
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    ]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def _step_at(run: dict[str, Any], rate: float) -> dict[str, Any] | None:
    for s in run.get("steps", []):
        if s["rate"] == rate:
            return s
    return None


def summary_rows(
    data: dict[str, Any], cfg: dict[str, Any], servers: list[str]
) -> list[dict[str, Any]]:
    """One row per figure: per-server (median, min, max), ratio, target."""
    rows: list[dict[str, Any]] = []
    sc = data["scenarios"]

    def add(
        scen: str,
        metric: str,
        unit: str,
        getter: Callable[[dict[str, Any]], float | None],
        target: str = "",
        good: str = "lower",
    ) -> None:
        if scen not in sc:
            return
        row: dict[str, Any] = {
            "scenario": scen,
            "metric": metric,
            "unit": unit,
            "target": target,
            "good": good,
        }
        for s in servers:
            runs = [r for r in sc[scen].get(s, []) if "error" not in r]
            row[s] = _med([getter(r) for r in runs])
        if (
            "pbxws" in servers
            and "soketi" in servers
            and row["pbxws"]
            and row["soketi"]
            and row["soketi"][0]
        ):
            row["ratio"] = row["pbxws"][0] / row["soketi"][0]
            if target:
                op, val = target[:2], float(target[2:])
                row["holds"] = (
                    row["ratio"] <= val if op == "<=" else row["ratio"] >= val
                )
        rows.append(row)

    for n in cfg["idle_sizes"]:
        scen = f"idle-{n}"
        add(scen, "RSS per connection", "KiB", lambda r: r["rss_per_conn_kib"], "<=0.6")
        add(scen, "connect rate", "conn/s", lambda r: r["connect_rate"], good="higher")
        add(
            scen,
            "server CPU per 1k connects",
            "ms",
            lambda r: r["server_cpu_ms_per_1k_connects"],
        )

    ref = cfg["fanout_rates"][0]
    for scen, ref_rate, cpu_target, rate_target in (
        ("fanout", ref, "<=0.7", ">=1.0"),
        ("pbx", cfg["pbx_rates"][0], "<=0.5", ">=2.0"),
        ("cluster", ref, "", ""),
    ):
        if scen not in sc:
            continue
        add(
            scen,
            "max rate, all delivered, p99<100ms",
            "ev/s",
            lambda r: r["max_rate"],
            rate_target,
            "higher",
        )

        def at(rate: float, key: str) -> Callable[[dict[str, Any]], float | None]:
            def g(run: dict[str, Any]) -> float | None:
                step = _step_at(run, rate)
                return None if step is None else step[key]

            return g

        # The highest ladder rate every round of every server passed.
        common = None
        for rate in cfg["pbx_rates" if scen == "pbx" else "fanout_rates"]:
            passed = all(
                (s := _step_at(r, rate)) is not None and s["pass"]
                for sv in servers
                for r in sc[scen].get(sv, [])
                if "error" not in r
            )
            if passed:
                common = rate
        for rate in sorted({ref_rate, common or ref_rate}):
            tag = f"@{rate:g}/s"
            add(
                scen,
                f"server CPU per 100k deliveries {tag}",
                "s",
                at(rate, "server_cpu_s_per_100k"),
                cpu_target,
            )
            add(
                scen,
                f"  generator CPU per 100k deliveries {tag}",
                "s",
                at(rate, "gen_cpu_s_per_100k"),
            )
            add(scen, f"latency p50 {tag}", "ms", at(rate, "p50"))
            add(scen, f"latency p95 {tag}", "ms", at(rate, "p95"))
            add(
                scen,
                f"latency p99 {tag}",
                "ms",
                at(rate, "p99"),
                "<=1.0" if scen == "fanout" and rate == ref_rate else "",
            )
            add(scen, f"latency max {tag}", "ms", at(rate, "max"))
            add(
                scen,
                f"delivered/expected {tag}",
                "%",
                lambda r, rate=rate: (
                    None
                    if (s := _step_at(r, rate)) is None
                    else 100.0
                    * s["delivered"]
                    / max(1, s["scheduled"] * (r.get("subscribers") or cfg["pbx_size"]))
                ),
                good="higher",
            )
    add(
        "churn",
        "joins+leaves per second",
        "/s",
        lambda r: r["joins_leaves_per_s"],
        good="higher",
    )
    add("churn", "join latency p99 (closed loop)", "ms", lambda r: r["join_p99_ms"])
    add(
        "churn",
        "server CPU per 1k leave+join pairs",
        "ms",
        lambda r: r["server_cpu_ms_per_1k_pairs"],
    )
    return rows


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _cell(t: tuple[float, float, float] | None) -> str:
    if t is None:
        return "—"
    med, lo, hi = t
    return f"{_fmt(med)} ({_fmt(lo)}-{_fmt(hi)})" if lo != hi else _fmt(med)


def capped_notes(data: dict[str, Any]) -> list[str]:
    """Say where a max rate is only a lower bound: a round passed every rate."""
    notes = []
    for scen, per in data["scenarios"].items():
        for name, runs in per.items():
            capped = [r for r in runs if "error" not in r and r.get("capped")]
            if capped:
                notes.append(
                    f"note: {scen} {name}: {len(capped)} of {len(runs)} round(s) "
                    f"passed the top of the ladder ({capped[0]['max_rate']:,.0f}/s): "
                    "its max rate is a lower bound; extend the ladder"
                )
    return notes


def render_table(
    rows: list[dict[str, Any]], servers: list[str], skipped: dict[str, str]
) -> str:
    head = ["scenario", "figure", "unit", *servers]
    both = "pbxws" in servers and "soketi" in servers
    if both:
        head += ["pbxws/Soketi", "target", "holds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["scenario"],
            r["metric"],
            r["unit"],
            *[_cell(r.get(s)) for s in servers],
        ]
        if both:
            ratio = f"{r['ratio']:.2f}" if "ratio" in r else "—"
            holds = "" if "holds" not in r else ("yes" if r["holds"] else "**no**")
            cells += [ratio, r["target"] or "", holds]
        lines.append("| " + " | ".join(cells) + " |")
    for scen, why in skipped.items():
        lines.append(f"\n{scen}: skipped — {why}")
    return "\n".join(lines)


def plot(data: dict[str, Any], servers: list[str], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed; no plot"
    scens = [s for s in ("fanout", "pbx", "cluster") if s in data["scenarios"]]
    if not scens:
        return "no rate scenario run; no plot"
    fig, axes = plt.subplots(2, len(scens), figsize=(7 * len(scens), 9), squeeze=False)
    colors = {"pbxws": "tab:blue", "soketi": "tab:orange"}
    styles = {"p50": ":", "p95": "--", "p99": "-", "max": (0, (1, 4))}
    for j, scen in enumerate(scens):
        ax, cax = axes[0][j], axes[1][j]
        for s in servers:
            by_rate: dict[float, list[dict[str, Any]]] = {}
            for r in data["scenarios"][scen].get(s, []):
                for st in r.get("steps", []):
                    by_rate.setdefault(st["rate"], []).append(st)
            # Rates most rounds reached: not the one-round refinement points.
            need = max(1, (len(data["scenarios"][scen].get(s, [])) + 1) // 2)
            rates = sorted(x for x in by_rate if len(by_rate[x]) >= need)
            for p, ls in styles.items():
                ys = [statistics.median([st[p] for st in by_rate[x]]) for x in rates]
                ax.plot(
                    rates,
                    ys,
                    linestyle=ls,
                    marker="o",
                    ms=3,
                    color=colors.get(s),
                    label=f"{s} {p}",
                )
            cpu = [
                statistics.median([st["server_cpu_s_per_100k"] for st in by_rate[x]])
                for x in rates
            ]
            cax.plot(rates, cpu, marker="o", color=colors.get(s), label=f"{s} server")
            gcpu = [
                statistics.median([st["gen_cpu_s_per_100k"] for st in by_rate[x]])
                for x in rates
            ]
            cax.plot(
                rates,
                gcpu,
                marker=".",
                linestyle="--",
                color=colors.get(s),
                alpha=0.5,
                label=f"generator (vs {s})",
            )
        ax.axhline(PASS_P99_MS, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (events/s)")
        ax.set_ylabel("latency (ms)")
        title = {
            "fanout": "1 channel x 1,000 subscribers",
            "pbx": "PBX: 500 presence channels x 4",
            "cluster": "2 nodes + Redis, 1 channel x 1,000",
        }[scen]
        ax.set_title(f"{title}: latency percentiles (median of rounds)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        cax.set_xscale("log")
        cax.set_xlabel("offered rate (events/s)")
        cax.set_ylabel("CPU seconds per 100k deliveries")
        cax.set_title("CPU per delivery")
        cax.grid(True, which="both", alpha=0.3)
        cax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def environment() -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        except OSError:
            return ""

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    server_python = servers.PBXWS_BIN.parent / "python"
    return {
        "python": platform.python_version(),
        # The interpreter pbxws runs on (its venv's), and its build options.
        "pbxws_python": out(
            [
                str(server_python),
                "-c",
                "import sys, sysconfig; print(sys.executable, sys.version.split()[0],"
                " sysconfig.get_config_var('CONFIG_ARGS'))",
            ]
        ),
        "node": out(["node", "--version"]),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "pbxws": out([str(servers.PBXWS_BIN), "--version"]),
        "pbxws_git": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "pbxws_dirty": bool(
            out(["git", "-C", str(ROOT), "status", "--porcelain", "src"])
        ),
    }


def setup_notes(cfg: dict[str, Any]) -> str:
    """``"; servers on CPU 0, generator on CPU 1"``: what the run did unusually."""
    parts = [
        f"{who} on CPU {cfg[key]}"
        for who, key in (("servers", "server_cpus"), ("generator", "gen_cpus"))
        if cfg.get(key)
    ]
    parts += [f"pbxws with {k}={v}" for k, v in cfg.get("pbxws_env", {}).items()]
    return "; " + ", ".join(parts) if parts else ""


def _cpu_list(spec: str) -> set[int]:
    """``"0,2-3"`` -> ``{0, 2, 3}`` (the ``taskset -c`` list syntax)."""
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="1 round, 2 s steps, coarse rate ladders"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, pbxws only, for the test suite; exits 1 on a wrong figure",
    )
    p.add_argument("--rounds", type=int, help="rounds of A B (default 3; quick 1)")
    p.add_argument("--only", help=f"comma-separated scenarios: {','.join(SCENARIOS)}")
    p.add_argument(
        "--servers", help="comma-separated: pbxws,soketi (default both; smoke: pbxws)"
    )
    p.add_argument("--workers", type=int, help="subscriber processes (default 2)")
    p.add_argument("--step-seconds", type=float, help="publishing time per rate step")
    p.add_argument(
        "--fanout-subs",
        type=int,
        help="subscribers on the fan-out channel (default 1000)",
    )
    p.add_argument(
        "--idle-sizes", help="comma-separated connection counts (default 5000,10000)"
    )
    p.add_argument(
        "--publisher-conns",
        type=int,
        help="publisher connections, one request in flight on each (default 32)",
    )
    p.add_argument(
        "--publisher-close",
        action="store_true",
        default=None,
        help="a new API connection per event (Connection: close), as PHP without "
        "a queue worker publishes; Soketi closes after every answer anyway",
    )
    p.add_argument(
        "--generator",
        choices=["c", "python"],
        help="per-event loops of the load generator: compiled fastgen.c "
        "(default) or all Python",
    )
    p.add_argument(
        "--refine",
        type=int,
        help="steps of bisection between the last passed and the first failed "
        "ladder rate (default 3; --quick 1)",
    )
    p.add_argument(
        "--server-cpus",
        help="run the servers on these CPUs only (taskset -c syntax: 0 or 0-1; "
        "the cluster scenario's two nodes and redis-server too); with --gen-cpus, "
        "the server stops sharing CPUs with the generator",
    )
    p.add_argument("--gen-cpus", help="run the load generator on these CPUs only")
    p.add_argument("--fanout-rates", help="comma-separated ladder, events/s")
    p.add_argument("--pbx-rates", help="comma-separated ladder, events/s")
    p.add_argument(
        "--pbxws-bin",
        help="the pbxws executable to measure (default .venv/bin/pbxws), e.g. one "
        "installed in a venv of another Python build",
    )
    p.add_argument(
        "--pbxws-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for pbxws only, repeatable, e.g. "
        "PBXWS_SERVER_PUBLISH_COALESCING_WINDOW=0 to measure without coalescing",
    )
    p.add_argument("--results", default=str(BENCH / "results"), help="output folder")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args()

    cfg = dict(SMOKE if args.smoke else QUICK if args.quick else FULL)
    for key in (
        "rounds",
        "workers",
        "step_seconds",
        "fanout_subs",
        "publisher_conns",
        "generator",
        "publisher_close",
        "refine",
    ):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    for key in ("idle_sizes", "fanout_rates", "pbx_rates"):
        if getattr(args, key) is not None:
            cfg[key] = [int(x) for x in getattr(args, key).split(",")]
    cpus = os.sched_getaffinity(0)
    for flag, given in (
        ("--server-cpus", args.server_cpus),
        ("--gen-cpus", args.gen_cpus),
    ):
        if given is None:
            continue
        try:
            wanted = _cpu_list(given)
        except ValueError:
            p.error(f"{flag} {given}: expected CPU numbers like 0, 0-1 or 0,2-3")
        if not wanted <= cpus:
            p.error(f"{flag} {given}: this machine has CPUs {sorted(cpus)}")
    servers.SERVER_CPUS = cfg["server_cpus"] = args.server_cpus
    global GEN_CPUS
    GEN_CPUS = cfg["gen_cpus"] = args.gen_cpus
    for setting in args.pbxws_env:
        name, eq, value = setting.partition("=")
        if not eq or not name.startswith(("PBXWS_", "SOKETI_")):
            p.error(
                f"--pbxws-env {setting}: expected PBXWS_NAME=VALUE or SOKETI_NAME=VALUE"
            )
        servers.PBXWS_ENV[name] = value
    cfg["pbxws_env"] = dict(servers.PBXWS_ENV)
    if args.pbxws_bin:
        servers.PBXWS_BIN = Path(args.pbxws_bin).absolute()
    args.only = args.only.split(",") if args.only else list(SCENARIOS)
    bad = set(args.only) - set(SCENARIOS)
    if bad:
        p.error(f"unknown scenario(s): {', '.join(sorted(bad))}")
    args.servers = (
        args.servers.split(",")
        if args.servers
        else (["pbxws"] if args.smoke else ["pbxws", "soketi"])
    )
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(cfg["idle_sizes"]) + 1000
    if hard < need:
        log(f"warning: open-file limit {hard} < {need}; idle scenarios may fail")

    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    log(
        f"bench {mode}: servers {args.servers}, scenarios {args.only}, "
        f"{cfg['rounds']} round(s)"
    )
    t0 = time.monotonic()
    data = asyncio.run(run_all(args, cfg, results_dir, stamp))
    rows = summary_rows(data, cfg, args.servers)
    table = render_table(rows, args.servers, data["skipped"])
    out = {
        "mode": mode,
        "started": stamp,
        "seconds": time.monotonic() - t0,
        "command": " ".join(["bench/run", *sys.argv[1:]]),
        "config": cfg,
        "servers": args.servers,
        "environment": environment(),
        "rows": rows,
        **data,
    }
    jpath = results_dir / f"bench-{stamp}.json"
    jpath.write_text(json.dumps(out, indent=1, default=str))
    (results_dir / "latest.json").write_text(jpath.read_text())
    print(
        f"\npbxws bench ({mode}, {cfg['rounds']} round(s), median (min-max) over "
        f"rounds; {out['environment']['cpus']} CPUs, "
        f"{out['environment']['cpu_model']}{setup_notes(cfg)})\n"
    )
    print(table)
    for line in capped_notes(data):
        print(line)
    print(f"\nJSON: {jpath}")
    if not (args.no_plot or args.smoke):
        png = results_dir / f"bench-{stamp}-latency.png"
        why = plot(data, args.servers, png)
        print(f"plot: {png}" if why is None else f"plot: {why}")

    errors = [
        f"{scen}/{s} round {r['round']}: {r['error']}"
        for scen, per in data["scenarios"].items()
        for s, runs in per.items()
        for r in runs
        if "error" in r
    ]
    if args.smoke:
        # The smoke checks correctness: every scenario ran, the lowest rate
        # delivered everything.
        for scen, per in data["scenarios"].items():
            for s, runs in per.items():
                for r in runs:
                    if "error" in r:
                        continue
                    if scen.startswith("idle") or scen == "churn":
                        if not r["ok"]:
                            errors.append(f"{scen}/{s}: {r}")
                    elif (
                        not r["steps"]
                        or r["steps"][0]["delivered"] < r["steps"][0]["expected"]
                        or r["steps"][0]["expected"] == 0
                    ):
                        errors.append(
                            f"{scen}/{s}: lowest rate did not deliver everything"
                        )
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
