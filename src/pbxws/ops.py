"""The operations listener (Soketi's port 9601): health, readiness and usage."""

from __future__ import annotations

import os
import resource

from aiohttp import web

from pbxws.http_api.errors import error_middleware, json_response
from pbxws.http_api.routes import ready, root
from pbxws.runtime import RUNTIME, Runtime

__all__ = ["build_ops_app", "memory_usage"]


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
    return app
