"""Liveness: ping silent clients, close those that don't answer (4201).

One sweep for all connections instead of a timer per connection: every frame
received only stores a timestamp (no timer re-arming on the hot path), and the
sweep, a few times per timeout, pings sockets silent for ``activity_timeout``
and closes those still silent ``pong_timeout`` after the ping.

The same sweep enforces user authentication (apps with
``enable_user_authentication``): a socket whose ``auth_deadline`` passed
without a sign-in or a private/presence subscription is closed with 4009.
"""

from __future__ import annotations

import asyncio

from pbxws.protocol.errors import ErrorCode
from pbxws.protocol.messages import ping
from pbxws.runtime import Runtime

from .connection import ConnState

__all__ = ["run_heartbeat", "sweep"]


def sweep(rt: Runtime, now: float) -> None:
    """Ping or close the connections whose silence passed a deadline."""
    server = rt.config.server
    idle_after = server.activity_timeout
    pong_timeout = server.pong_timeout
    ping_frame = ping()
    # close_soon/send never change rt.connections synchronously: no copy needed.
    for conn in rt.connections.values():
        deadline = conn.auth_deadline
        if deadline is not None and now >= deadline:
            conn.auth_deadline = None
            if conn.state is not ConnState.OPEN:
                continue  # already closing or closed
            conn.stats.rejected("connection", ErrorCode.UNAUTHORIZED)
            conn.close_soon(
                ErrorCode.UNAUTHORIZED, "Connection not authorized within timeout."
            )
            continue
        if conn.pinged_at is None:
            if now - conn.last_seen >= idle_after:
                conn.pinged_at = now
                conn.send_message(ping_frame)
        elif now - conn.pinged_at >= pong_timeout:
            conn.close_soon(ErrorCode.PONG_NOT_RECEIVED, "Pong reply not received.")


async def run_heartbeat(rt: Runtime) -> None:
    """Sweep forever, four times per shortest timeout (at most every 5 s)."""
    server = rt.config.server
    timeouts = [server.activity_timeout, server.pong_timeout]
    if any(app.enable_user_authentication for app in rt.apps.by_id.values()):
        timeouts.append(server.user_authentication_timeout)
    interval = min(5.0, max(0.05, min(timeouts) / 4))
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        sweep(rt, loop.time())
