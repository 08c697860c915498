"""The operations listener (Soketi's port 9601) and the main port's traffic probe.

Port 9601: ``/`` and ``/health`` (liveness), ``/ready`` (503 while starting or
draining), ``/usage`` (memory), ``/metrics`` (Prometheus, 404 when metrics are
disabled; ``?json=1`` for prom-client's JSON, as Soketi). The main port also
serves :func:`accept_traffic` for load balancers, as Soketi does.
"""

from __future__ import annotations

import os
import resource

from aiohttp import web

from pbxws.http_api.errors import error_middleware, json_error, json_response
from pbxws.http_api.routes import ready, root
from pbxws.metrics import CONTENT_TYPE
from pbxws.runtime import RUNTIME, Runtime

__all__ = ["accept_traffic", "build_ops_app", "memory_limit", "memory_usage"]

# cgroup v2 and v1 files holding a container's memory limit.
_CGROUP_LIMITS = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)


def _meminfo() -> dict[str, int]:
    """System memory from /proc/meminfo, in bytes (empty off Linux)."""
    fields: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                fields[name] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return fields


def _rss_bytes() -> int:
    """Resident memory of this process now (falls back to the peak)."""
    try:
        with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_usage() -> dict[str, float]:
    """Soketi's ``/usage`` figures: system free/total, this process's use.

    ``used`` is this process's resident memory; ``percent`` is ``used`` as a
    share of the machine's total memory.
    """
    info = _meminfo()
    total = info.get("MemTotal", 0)
    free = info.get("MemAvailable", info.get("MemFree", 0))
    used = _rss_bytes()
    percent = 100.0 * used / total if total else 0.0
    return {"free": free, "used": used, "total": total, "percent": percent}


def memory_limit() -> int:
    """Bytes this process may use: its cgroup's limit if lower than the machine's."""
    total = _meminfo().get("MemTotal", 0)
    for path in _CGROUP_LIMITS:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and (total == 0 or 0 < int(text) < total):
            total = int(text)
        break
    return total


async def accept_traffic(request: web.Request) -> web.Response:
    """GET /accept-traffic (main port): 200 with memory figures, else 503.

    503 while the node starts or drains, and while this process uses more than
    ``server.accept_traffic_memory_threshold`` percent of :func:`memory_limit`
    (Soketi answers 500 in both cases; 503 is what load balancers expect).
    """
    rt = request.app[RUNTIME]
    if not rt.accepting:
        return json_error(503, "The server is closing. Choose another server. :)")
    limit = memory_limit()
    used = _rss_bytes()
    percent = 100.0 * used / limit if limit else 0.0
    if percent > rt.config.server.accept_traffic_memory_threshold:
        return json_error(503, "Low on memory here. Choose another server. :)")
    return json_response(
        {"memory": {"usedSize": used, "totalSize": limit, "percentUsage": percent}}
    )


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: every series in the Prometheus text format (404 if disabled)."""
    registry = request.app[RUNTIME].metrics
    if not registry.enabled:
        raise web.HTTPNotFound
    if request.query.get("json"):
        return json_response(registry.render_json())
    return web.Response(
        body=registry.render_text(), headers={"Content-Type": CONTENT_TYPE}
    )


async def usage(request: web.Request) -> web.Response:
    """GET /usage: memory figures, always on."""
    return json_response({"memory": memory_usage()})


async def health(request: web.Request) -> web.Response:
    """GET /health: the process is alive and its loop answers (liveness probe)."""
    return web.Response(text="OK")


def build_ops_app(rt: Runtime) -> web.Application:
    """The aiohttp application of the operations port."""
    app = web.Application(middlewares=[error_middleware])
    app[RUNTIME] = rt
    app.router.add_get("/", root)
    app.router.add_get("/ready", ready)
    app.router.add_get("/health", health)
    app.router.add_get("/usage", usage)
    app.router.add_get("/metrics", metrics)
    return app
