"""The ``[prefix]/app/{key}`` WebSocket endpoint served by aiohttp.

The lean protocol (:mod:`pbxws.ws.lean`) serves most upgrades; this path serves
those that reach aiohttp (an upgrade on a kept-alive HTTP connection, or all of
them with ``server.lean_websockets = false``). Both run :mod:`pbxws.ws.session`.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import WSMsgType, web

from pbxws.metrics import AppStats
from pbxws.protocol import messages as m
from pbxws.runtime import RUNTIME

from .connection import Connection
from .dispatch import dispatch
from .session import Refusal, admit, check_protocol, register, unregister

__all__ = ["check_protocol", "handle_websocket"]

# Seconds aiohttp waits for the client's close frame after ours.
_CLOSE_TIMEOUT: Final = 5.0


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
    admitted = admit(
        rt,
        request.match_info["key"],
        request.query.get("protocol"),
        request.headers.get("Origin"),
    )
    if isinstance(admitted, Refusal):
        await _refuse(ws, *admitted)
        return ws
    app, stats = admitted
    transport = request.transport
    if transport is None:  # the peer left during the handshake
        return ws

    async def close(code: int, reason: str) -> None:
        await ws.close(code=code, message=reason.encode()[:120], drain=False)

    loop_time = asyncio.get_running_loop().time
    conn = Connection(
        rt.socket_ids.new(rt.connections),
        app,
        transport,
        close,
        send_buffer_limit=server.send_buffer_limit,
        now=loop_time(),
        stats=stats,
    )
    refusal = await register(rt, conn)
    if refusal is not None:
        await _refuse(ws, *refusal)
        return ws
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
        await unregister(rt, conn, ws.close_code)
        # If we started the close, finish the handshake before aiohttp drops the
        # TCP connection: the client's close reply must find the socket open.
        await conn.wait_closed()
    return ws
