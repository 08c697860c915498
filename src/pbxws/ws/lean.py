"""The lean WebSocket path: upgrades served on a small asyncio protocol.

Theory of operation. :class:`pbxws.front.Front` reads each new connection's
request head; a WebSocket upgrade for ``[prefix]/app/{key}`` switches the
transport to a :class:`LeanSocket`, which answers the upgrade, parses frames
with the pure :class:`~pbxws.protocol.websocket.FrameParser` and hands text
messages to the dispatcher.

Why: an idle connection on aiohttp's ``WebSocketResponse`` costs several
objects (request, response, reader, writer, parser, a handler task); here it is
one protocol object, one :class:`~pbxws.ws.connection.Connection` and a
parser, and no task at all while nothing is being handled. Messages of one
connection run in order through its :class:`~pbxws.inbox.Inbox`: started at
once when the connection is idle, queued behind one that waits.
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import parse_qsl

import structlog

from pbxws.inbox import Inbox, Job
from pbxws.protocol import messages as m, websocket as rfc
from pbxws.protocol.frames import text_frame
from pbxws.runtime import Runtime

from .connection import Connection, ConnState
from .dispatch import dispatch
from .session import Refusal, admit, register, unregister

__all__ = ["LeanSocket"]

log = structlog.get_logger(__name__)

# Seconds we wait for the client's close frame after ours.
_CLOSE_TIMEOUT: Final = 5.0
# Messages queued for one connection before we stop reading its socket (until
# the queue has run dry).
_INBOX_HIGH: Final = 64


class LeanSocket(asyncio.Protocol):
    """One WebSocket connection, from the 101 answer to the last frame."""

    __slots__ = (
        "_close_waiter",
        "_conn",
        "_jobs",
        "_left",
        "_parser",
        "_paused",
        "_rt",
        "_transport",
    )

    def __init__(self, rt: Runtime, transport: asyncio.Transport) -> None:
        self._rt = rt
        self._transport = transport
        self._parser = rfc.FrameParser(rt.config.server.max_message_size)
        # The Pusher connection once admitted; None while refusing.
        self._conn: Connection | None = None
        # Jobs (registration, messages, unregistration), run in order.
        self._jobs = Inbox(self, inline=rt.adapter.inline)
        # Whether reading is paused because too many messages wait.
        self._paused = False
        # Resolved when the client answers our close frame.
        self._close_waiter: asyncio.Future[None] | None = None
        # Whether the connection's channels have been (or are being) left.
        self._left = False

    # --- opening ---------------------------------------------------------------

    def start(self, request: rfc.Request, key: str, rest: bytes) -> None:
        """Answer the upgrade, then admit or refuse the client."""
        transport = self._transport
        try:
            transport.write(rfc.handshake_response(request))
        except rfc.HandshakeError as exc:
            transport.write(
                f"HTTP/1.1 {exc.status} Bad Request\r\nContent-Length: "
                f"{len(exc.reason)}\r\nConnection: close\r\n\r\n{exc.reason}".encode()
            )
            transport.close()
            return
        rt = self._rt
        query = dict(parse_qsl(request.query))
        admitted = admit(rt, key, query.get("protocol"), request.headers.get("origin"))
        if isinstance(admitted, Refusal):
            self._refuse(admitted)
            return
        app, stats = admitted
        loop = asyncio.get_running_loop()
        conn = self._conn = Connection(
            rt.socket_ids.new(rt.connections),
            app,
            transport,
            self._close_handshake,
            send_buffer_limit=rt.config.server.send_buffer_limit,
            now=loop.time(),
            stats=stats,
            watch_buffer=False,
        )
        # Past this many unsent bytes the transport calls pause_writing: the
        # client is a slow consumer.
        transport.set_write_buffer_limits(high=rt.config.server.send_buffer_limit)
        self._enqueue(self._register(conn))
        if rest:
            self.data_received(rest)

    async def _register(self, conn: Connection) -> None:
        refusal = await register(self._rt, conn)
        if refusal is not None:
            self._conn = None
            self._refuse(refusal)

    def _refuse(self, refusal: Refusal) -> None:
        refusal.stats.rejected("connection", refusal.code)
        self._transport.write(text_frame(m.error(refusal.code, refusal.reason)))
        self._start_close(refusal.code, refusal.reason)

    # --- reading ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._parser.feed(data)
        except rfc.WebSocketError as exc:
            self._protocol_error(exc.code, exc.reason)
            return
        conn = self._conn
        if conn is not None and frames:
            conn.last_seen = asyncio.get_running_loop().time()
            conn.pinged_at = None
        for opcode, payload in frames:
            if opcode == rfc.TEXT:
                if conn is not None and conn.state is ConnState.OPEN:
                    conn.stats.received(len(payload))
                    self._enqueue(dispatch(self._rt, conn, payload))
            elif opcode == rfc.BINARY:
                if conn is not None:
                    conn.stats.received(len(payload))
                    conn.send_message(
                        m.error(
                            None, "Binary frames are not part of the Pusher protocol."
                        )
                    )
            elif opcode == rfc.PING:
                if not self._transport.is_closing():
                    self._transport.write(rfc.pong_frame(payload))
            elif opcode == rfc.CLOSE:
                self._close_received(payload)
                return

    def _enqueue(self, job: Job) -> None:
        jobs = self._jobs
        jobs.submit(job)
        if len(jobs) > _INBOX_HIGH and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def jobs_drained(self) -> None:
        if self._paused:
            self._paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def job_failed(self, exc: Exception) -> None:
        log.error(
            "connection_handler_failed",
            socket_id=None if self._conn is None else self._conn.socket_id,
            exc_info=exc,
        )
        self._transport.abort()

    # --- closing ---------------------------------------------------------------

    def _protocol_error(self, code: int, reason: str) -> None:
        log.info(
            "websocket_protocol_error",
            socket_id=None if self._conn is None else self._conn.socket_id,
            code=code,
            reason=reason,
        )
        if self._conn is not None:
            self._conn.state = ConnState.CLOSING
        self._start_close(code, reason)

    def _start_close(self, code: int, reason: str) -> None:
        """Send our close frame and close TCP on the answer or after a timeout.

        The connection leaves its channels now, not when TCP is gone: a client
        that stopped reading may never let the close complete.
        """
        self._leave()
        transport = self._transport
        if transport.is_closing() or self._close_waiter is not None:
            return
        transport.write(rfc.close_frame(code, reason))
        loop = asyncio.get_running_loop()
        waiter = self._close_waiter = loop.create_future()
        loop.call_later(_CLOSE_TIMEOUT, _resolve, waiter)
        waiter.add_done_callback(lambda _: _finish(transport))

    def _leave(self) -> None:
        """Queue the connection's unregistration, once."""
        conn = self._conn
        if conn is None or self._left:
            return
        self._left = True
        self._enqueue(_unregister(self._rt, conn))

    async def _close_handshake(self, code: int, reason: str) -> None:
        """The Connection's closer: our close frame, then wait for the answer."""
        self._start_close(code, reason)
        if self._close_waiter is not None:
            await self._close_waiter

    def _close_received(self, payload: bytes) -> None:
        conn = self._conn
        if conn is not None and conn.state is ConnState.OPEN:
            conn.state = ConnState.CLOSING
        if self._close_waiter is not None:  # the answer to our close
            _resolve(self._close_waiter)
            return
        try:
            code = rfc.parse_close(payload)
        except rfc.WebSocketError:
            code = 1002
        self._leave()
        transport = self._transport
        if not transport.is_closing():
            transport.write(rfc.close_frame(1000 if code == 1005 else code))
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_waiter is not None:
            _resolve(self._close_waiter)
        if self._conn is not None:
            self._conn.state = ConnState.CLOSED  # no more writes to a dead socket
        if self._conn is not None and not self._left:
            self._jobs.clear()  # nobody is left to answer
            self._leave()

    def pause_writing(self) -> None:
        """More than ``send_buffer_limit`` bytes wait: cut the slow consumer off."""
        if self._conn is not None:
            self._conn.slow_consumer()

    def resume_writing(self) -> None:
        """Nothing to resume: a paused connection is already closing."""


async def _unregister(rt: Runtime, conn: Connection) -> None:
    if conn.socket_id in rt.connections:  # registered (not refused, not lost first)
        await unregister(rt, conn, None)


def _finish(transport: asyncio.Transport) -> None:
    """Close TCP; drop it at once if the client never read what we sent."""
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
