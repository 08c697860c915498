"""One client connection: its state and its non-blocking send path.

Theory of operation: the lean protocol (or aiohttp) parses inbound frames
and answers control frames; outbound, nothing awaits. Every server frame is
unmasked, so an event is framed once per publish (:func:`text_frame`) and the
same bytes are written to each subscriber's transport with a synchronous
``transport.write``. The transport buffers what the kernel does not take at
once; when that buffer passes ``send_buffer_limit`` the client is not keeping
up and is closed with 4100 ("over capacity, back off and reconnect") instead of
growing our memory. Close and pong frames are written whole and synchronously
too, so frames never interleave.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from pbxws.protocol.errors import ErrorCode
from pbxws.protocol.frames import text_frame
from pbxws.protocol.messages import error as error_message

if TYPE_CHECKING:
    from pbxws.apps import App
    from pbxws.metrics import AppStats

__all__ = ["ConnState", "Connection"]

log = structlog.get_logger(__name__)

# Seconds a closing client gets to take the rest of its bytes before we drop it.
_ABORT_AFTER = 10.0


class ConnState(enum.Enum):
    """Where a connection is in its life."""

    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Connection:
    """A Pusher client connected to one app."""

    __slots__ = (
        "__weakref__",
        "_close_task",
        "_closer",
        "_send_buffer_limit",
        "_transport",
        "_watch_buffer",
        "app",
        "auth_deadline",
        "channels",
        "client_events_count",
        "client_events_window",
        "last_seen",
        "pinged_at",
        "socket_id",
        "state",
        "stats",
        "user_id",
        "watchlist",
    )

    def __init__(
        self,
        socket_id: str,
        app: App,
        transport: asyncio.Transport,
        closer: Callable[[int, str], Awaitable[None]],
        *,
        send_buffer_limit: int,
        now: float,
        stats: AppStats,
        watch_buffer: bool = True,
    ) -> None:
        # Unique id "<digits>.<digits>", used for exclusion and signatures.
        self.socket_id = socket_id
        # The tenant this socket connected to (by key in the URL).
        self.app = app
        # Runs the close handshake of whatever carries the frames.
        self._closer = closer
        # Where pre-framed bytes are written; owned by aiohttp.
        self._transport = transport
        # Bytes the transport may buffer before we call the client slow.
        self._send_buffer_limit = send_buffer_limit
        # Check the buffer after each write (False: the protocol's
        # pause_writing reports a slow consumer instead).
        self._watch_buffer = watch_buffer
        # Channels this socket joined -> its presence user id there (None
        # elsewhere). For cleanup on close and for user_id on client events.
        self.channels: dict[str, str | None] = {}
        # User bound by pusher:signin; None until then.
        self.user_id: str | None = None
        # User ids this connection's sign-in watches (watchlist events).
        self.watchlist: tuple[str, ...] = ()
        # Loop time by which an app with user authentication needs this socket
        # signed in or on a private/presence channel (closed 4009 after, by
        # the heartbeat sweep); None when nothing is required (any more).
        self.auth_deadline: float | None = None
        # Monotonic time of the last frame received. Read by the heartbeat sweep.
        self.last_seen = now
        # When the server pinged this silent client; None when not waiting.
        self.pinged_at: float | None = None
        # Fixed one-second window for the client-event rate limit.
        self.client_events_window = 0.0
        self.client_events_count = 0
        self.state = ConnState.OPEN
        # The app's metrics counters (shared by its connections; no-ops if off).
        self.stats = stats
        # The task closing this connection, kept so it isn't garbage-collected.
        self._close_task: asyncio.Task[None] | None = None

    def send(self, frame: bytes) -> None:
        """Write one pre-framed frame now; never awaits.

        On the lean path the transport's high-water mark is the send buffer
        limit and its ``pause_writing`` calls :meth:`slow_consumer`, so a frame
        costs one attribute check and one ``write``. On aiohttp's path the
        buffer is checked here after each write.
        """
        if self.state is ConnState.OPEN:
            transport = self._transport
            if self._watch_buffer:
                if transport.is_closing():
                    return
                transport.write(frame)
                if transport.get_write_buffer_size() > self._send_buffer_limit:
                    self.slow_consumer()
            else:
                transport.write(frame)

    def slow_consumer(self) -> None:
        """The client doesn't read fast enough: close it with 4100 (back off)."""
        if self.state is not ConnState.OPEN:
            return
        log.warning(
            "slow_consumer_closed",
            app_id=self.app.id,
            socket_id=self.socket_id,
            buffered=self._transport.get_write_buffer_size(),
        )
        self.stats.slow_consumer()
        self.close_soon(ErrorCode.OVER_CAPACITY, "Send buffer full: slow consumer")

    def send_message(self, payload: bytes) -> None:
        """Frame and send one JSON message (for replies to this socket only)."""
        frame = text_frame(payload)
        if self.state is ConnState.OPEN:
            self.stats.sent(len(frame))
        self.send(frame)

    def close_soon(self, code: int, reason: str, *, with_error: bool = True) -> None:
        """Start closing with ``code``; the reader loop ends when the close is done.

        With ``with_error`` a ``pusher:error`` carrying the same code goes first,
        for clients that read the reason from the message rather than the close.
        """
        if self.state is not ConnState.OPEN:
            return
        if with_error and not self._transport.is_closing():
            self._transport.write(text_frame(error_message(code, reason)))
        self.state = ConnState.CLOSING
        self._close_task = asyncio.get_running_loop().create_task(
            self._close(code, reason)
        )

    async def wait_closed(self) -> None:
        """Wait for a close we started (the handshake, bounded by aiohttp's timeout)."""
        if self._close_task is not None:
            await asyncio.shield(self._close_task)

    def abort(self) -> None:
        """Drop the TCP connection now, without a close handshake (end of a drain)."""
        self.state = ConnState.CLOSED
        self._transport.abort()

    async def _close(self, code: int, reason: str) -> None:
        # A client that doesn't read would keep its unsent bytes (and our close
        # frame) in memory forever: give it a bounded time, then drop the socket.
        transport = self._transport
        abort = asyncio.get_running_loop().call_later(_ABORT_AFTER, transport.abort)
        try:
            await self._closer(code, reason)
        except (ConnectionError, RuntimeError):  # peer already gone
            pass
        finally:
            self.state = ConnState.CLOSED
            if transport.is_closing() and not transport.get_write_buffer_size():
                abort.cancel()
