"""The ``[prefix]/app/{key}`` WebSocket endpoint.

Order of checks on a new socket, each refusal sent as ``pusher:error`` and as
the close code: unknown key (4001), disabled app (4003), ``protocol`` query
(4006/4007), node draining (4200), app over its connection quota (4004).
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from aiohttp import WSMsgType, web

from pbxws.metrics import AppStats
from pbxws.protocol import messages as m
from pbxws.protocol.errors import ErrorCode
from pbxws.runtime import RUNTIME

from .connection import Connection, ConnState
from .dispatch import dispatch, leave_all

__all__ = ["check_protocol", "handle_websocket"]

log = structlog.get_logger(__name__)

# Seconds aiohttp waits for the client's close frame after ours.
_CLOSE_TIMEOUT: Final = 5.0
# Oldest protocol version we speak; pusher-js sends 7.
_MIN_PROTOCOL: Final = 5


def check_protocol(value: str | None) -> tuple[int, str] | None:
    """Validate the ``protocol`` query parameter; a refusal or None.

    A missing parameter is accepted as 7, as Soketi and Reverb do (Pusher
    infers an old version and still connects).
    """
    if value is None:
        return None
    if not value.isdigit():
        return ErrorCode.INVALID_VERSION_FORMAT, f"Invalid protocol version {value!r}."
    if int(value) < _MIN_PROTOCOL:
        return (
            ErrorCode.UNSUPPORTED_PROTOCOL,
            f"Unsupported protocol version {value}; use 7.",
        )
    return None


async def _refuse(
    ws: web.WebSocketResponse, code: int, reason: str, stats: AppStats
) -> None:
    stats.rejected("connection", code)
    await ws.send_str(m.error(code, reason).decode())
    await ws.close(code=code, message=reason.encode()[:120])


async def handle_websocket(request: web.Request) -> web.StreamResponse:
    """Serve one Pusher client from the handshake to the last frame."""
    rt = request.app[RUNTIME]
    server = rt.config.server
    ws = web.WebSocketResponse(
        autoping=True,
        compress=False,
        max_msg_size=server.max_message_size,
        timeout=_CLOSE_TIMEOUT,
        decode_text=False,
    )
    await ws.prepare(request)
    key = request.match_info["key"]
    app = rt.apps.by_key.get(key)
    if app is None:
        await _refuse(
            ws,
            ErrorCode.APP_NOT_FOUND,
            f"App key {key[:64]} does not exist.",
            rt.metrics.app(""),
        )
        return ws
    stats = rt.metrics.app(app.id)
    if not app.enabled:
        await _refuse(ws, ErrorCode.APP_DISABLED, "The application is disabled.", stats)
        return ws
    refusal = check_protocol(request.query.get("protocol"))
    if refusal is not None:
        await _refuse(ws, *refusal, stats)
        return ws
    if not rt.accepting:
        await _refuse(
            ws, ErrorCode.RECONNECT, "Server is closing; reconnect shortly.", stats
        )
        return ws
    transport = request.transport
    if transport is None:  # the peer left during the handshake
        return ws
    loop_time = asyncio.get_running_loop().time
    conn = Connection(
        rt.socket_ids.new(rt.connections),
        app,
        ws,
        transport,
        send_buffer_limit=server.send_buffer_limit,
        now=loop_time(),
        stats=stats,
    )
    if not await rt.adapter.add_connection(app.id, conn, app.max_connections):
        await _refuse(
            ws,
            ErrorCode.OVER_CONNECTION_QUOTA,
            "The current concurrent connections quota has been reached.",
            stats,
        )
        return ws
    rt.add_connection(conn)
    stats.connected()
    clog = log.bind(app_id=app.id, socket_id=conn.socket_id)
    clog.debug("connection_established")
    conn.send_message(m.connection_established(conn.socket_id, server.activity_timeout))
    try:
        async for msg in ws:
            conn.last_seen = loop_time()
            conn.pinged_at = None
            if msg.type is WSMsgType.TEXT:
                stats.received(len(msg.data))
                await dispatch(rt, conn, msg.data)
            elif msg.type is WSMsgType.BINARY:
                stats.received(len(msg.data))
                conn.send_message(
                    m.error(None, "Binary frames are not part of the Pusher protocol.")
                )
    finally:
        conn.state = ConnState.CLOSED
        rt.remove_connection(conn)
        stats.disconnected()
        await leave_all(rt, conn)
        await rt.adapter.remove_connection(app.id, conn)
        # If we started the close, finish the handshake before aiohttp drops the
        # TCP connection: the client's close reply must find the socket open.
        await conn.wait_closed()
        clog.debug("connection_closed", code=ws.close_code)
    return ws
