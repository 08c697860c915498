"""A Pusher connection's life, whatever carries its frames.

Both the aiohttp endpoint (:mod:`pbxws.ws.endpoint`) and the lean protocol
(:mod:`pbxws.ws.lean`) run these steps: :func:`admit` checks the request
(unknown key 4001, disabled app 4003, browser origin not allowed 4009,
``protocol`` query 4006/4007, node draining 4200), :func:`register` takes a
place in the app's quota (4004), starts the user-authentication clock of apps
that require sign-in and greets the client, :func:`unregister` leaves every
channel when it goes.
"""

from __future__ import annotations

import asyncio
from typing import Final, NamedTuple

import structlog

from pbxws.apps import App
from pbxws.metrics import AppStats
from pbxws.protocol import messages as m
from pbxws.protocol.errors import ErrorCode
from pbxws.protocol.origins import origin_allowed
from pbxws.runtime import Runtime

from .connection import Connection, ConnState
from .dispatch import leave_all

__all__ = ["Refusal", "admit", "check_protocol", "register", "unregister"]

log = structlog.get_logger(__name__)

# Oldest protocol version we speak; pusher-js sends 7.
_MIN_PROTOCOL: Final = 5
# Longest protocol version accepted as a number.
_MAX_DIGITS: Final = 9


class Refusal(NamedTuple):
    """Why a connection is refused: sent as ``pusher:error`` and as the close code."""

    code: int
    reason: str
    # The app's counters (those of "no app" for an unknown key).
    stats: AppStats


def check_protocol(value: str | None) -> tuple[int, str] | None:
    """Validate the ``protocol`` query parameter; a refusal or None.

    A missing parameter is accepted as 7, as Soketi and Reverb do (Pusher
    infers an old version and still connects).
    """
    if value is None:
        return None
    # ASCII digits only ("²".isdigit() is true but int() refuses it), and few
    # of them (int() refuses more than 4300 digits).
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_DIGITS:
        return (
            ErrorCode.INVALID_VERSION_FORMAT,
            f"Invalid protocol version {value[:20]!r}.",
        )
    if int(value) < _MIN_PROTOCOL:
        return (
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"Unsupported protocol version {value}; use 7.",
        )
    return None


def admit(
    rt: Runtime, key: str, protocol: str | None, origin: str | None
) -> tuple[App, AppStats] | Refusal:
    """The app a new socket connects to, or why it can't.

    ``origin`` is the browser's ``Origin`` header (None for other clients).
    """
    app = rt.apps.by_key.get(key)
    if app is None:
        return Refusal(
            ErrorCode.APP_NOT_FOUND,
            f"App key {key[:64]} does not exist.",
            rt.metrics.app(""),
        )
    stats = rt.metrics.app(app.id)
    if not app.enabled:
        return Refusal(ErrorCode.APP_DISABLED, "The application is disabled.", stats)
    if origin is not None and not origin_allowed(origin, app.allowed_origins):
        return Refusal(
            ErrorCode.UNAUTHORIZED, f"Origin {origin[:100]!r} not allowed.", stats
        )
    refusal = check_protocol(protocol)
    if refusal is not None:
        return Refusal(*refusal, stats)
    if not rt.accepting:
        return Refusal(
            ErrorCode.RECONNECT, "Server is closing; reconnect shortly.", stats
        )
    return app, stats


async def register(rt: Runtime, conn: Connection) -> Refusal | None:
    """Count the connection in its app's quota, track it and greet the client."""
    app = conn.app
    if not await rt.adapter.add_connection(app.id, conn, app.max_connections):
        return Refusal(
            ErrorCode.OVER_CONNECTION_QUOTA,
            "The current concurrent connections quota has been reached.",
            conn.stats,
        )
    if app.enable_user_authentication:
        # Sign in or join a private/presence channel by then (heartbeat sweep).
        conn.auth_deadline = (
            asyncio.get_running_loop().time()
            + rt.config.server.user_authentication_timeout
        )
    rt.add_connection(conn)
    conn.stats.connected()
    log.debug("connection_established", app_id=app.id, socket_id=conn.socket_id)
    conn.send_message(
        m.connection_established(conn.socket_id, rt.config.server.activity_timeout)
    )
    return None


async def unregister(rt: Runtime, conn: Connection, close_code: int | None) -> None:
    """Forget a connection that went away: its channels, its place in the quota."""
    conn.state = ConnState.CLOSED
    conn.stats.disconnected()
    try:
        await leave_all(rt, conn)
        await rt.adapter.remove_connection(conn.app.id, conn)
    finally:
        # Only now: a stopping server waits for this (wait_no_connections), so
        # it never closes the adapter under our feet mid-leave.
        rt.remove_connection(conn)
    log.debug(
        "connection_closed",
        app_id=conn.app.id,
        socket_id=conn.socket_id,
        code=close_code,
    )
