"""The lean publish path: ``POST /apps/{id}/events`` without aiohttp's machinery.

Theory of operation. In the PBX shape every call event is one API request, so
the HTTP layer costs as much as the fan-out: aiohttp's request objects,
routing and middlewares took about a quarter of the CPU per event. A
connection whose first request is a publish (``/events`` or
``/batch_events``) is served here: a minimal HTTP/1.1 parser, the same
decisions as the aiohttp routes (:mod:`pbxws.http_api.core`), a response
written straight to the transport, keep-alive and pipelining in order. The
first request that is anything else (another route, a chunked body) hands the
connection, with the bytes already read, to aiohttp for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote

import msgspec
import structlog

from pbxws.adapters.base import AdapterUnavailable
from pbxws.inbox import Inbox
from pbxws.protocol import websocket as rfc
from pbxws.protocol.errors import ApiError, RateLimited
from pbxws.protocol.query import parse_query
from pbxws.runtime import Runtime

from . import core

__all__ = ["FastApi", "publish_route"]

log = structlog.get_logger(__name__)

_encode: Final = msgspec.json.Encoder().encode
_EMPTY: Final = b"{}"
_MAX_HEAD: Final = 16384
_PUBLISH_KINDS: Final = frozenset(("events", "batch_events"))


def publish_route(rt: Runtime, request: rfc.Request) -> tuple[str, str] | None:
    """``(app_id, "events" | "batch_events")`` for a publish this path serves."""
    if request.method != "POST":
        return None
    encoding = request.headers.get("transfer-encoding")
    if encoding is not None and "chunked" in encoding.lower():
        return None
    root = rt.config.server.path_prefix + "/apps/"
    path = _unquote(request.path)
    if not path.startswith(root):
        return None
    app_id, _, kind = path[len(root) :].partition("/")
    if not app_id or kind not in _PUBLISH_KINDS:
        return None
    return app_id, kind


def _unquote(path: str) -> str:
    return unquote(path) if "%" in path else path


def _response(status: int, body: bytes, headers: dict[str, str], close: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# The answer to nearly every publish, built once.
_OK: Final = _response(200, _EMPTY, {}, close=False)
_OK_CLOSE: Final = _response(200, _EMPTY, {}, close=True)


class FastApi(asyncio.Protocol):
    """Serves publish requests on one kept-alive connection, in order."""

    __slots__ = (
        "_buffer",
        "_handoff",
        "_http_factory",
        "_jobs",
        "_rt",
        "_transport",
    )

    def __init__(
        self,
        rt: Runtime,
        transport: asyncio.Transport,
        http_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._rt = rt
        self._transport = transport
        # aiohttp's RequestHandler factory, for the first request we don't serve.
        self._http_factory = http_factory
        # Bytes read and not yet parsed.
        self._buffer = bytearray()
        # Requests parsed and not yet answered (answers go out in order).
        self._jobs = Inbox(self, inline=rt.adapter.inline)
        # Set once a request for aiohttp arrived: parse no more, hand over when idle.
        self._handoff = False
        rt.coalescer.opened(self)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        pos = 0  # where the next request starts in ``data``
        while not self._handoff and pos < len(data):
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(data) - pos > _MAX_HEAD:
                    self._fail(431, "Request head too large.")
                    return
                break
            try:
                request = rfc.parse_request(data[pos:end])
            except rfc.HandshakeError:
                request = None  # aiohttp answers malformed requests
            route = None if request is None else publish_route(self._rt, request)
            if request is None or route is None:
                self._buffer += data[pos:]
                self._start_handoff()
                return
            try:
                length = int(request.headers.get("content-length", "0"))
            except ValueError:
                self._fail(400, "Invalid Content-Length.")
                return
            if length < 0 or length > self._rt.config.server.max_request_size:
                self._fail(
                    413,
                    "The request body is larger than the server's max_request_size.",
                )
                return
            stop = end + 4 + length
            if len(data) < stop:
                if request.headers.get("expect", "").lower() == "100-continue":
                    self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    data = data[:pos] + _without_expect(data[pos:end]) + data[end:]
                break
            close = request.headers.get("connection", "").lower() == "close"
            self._jobs.submit(self.serve(route, request, data[end + 4 : stop], close))
            self._rt.coalescer.note(self)
            pos = stop
        if pos < len(data):
            self._buffer += data[pos:]  # an incomplete request, or aiohttp's

    def jobs_drained(self) -> None:
        if self._handoff:
            self._hand_off()

    def job_failed(self, exc: Exception) -> None:
        """Not expected: :meth:`serve` answers every error itself."""
        log.error("api_connection_failed", error=repr(exc))
        self._transport.abort()

    async def serve(
        self, route: tuple[str, str], request: rfc.Request, body: bytes, close: bool
    ) -> None:
        """Answer one publish request."""
        started = time.perf_counter()
        rt = self._rt
        app_id, kind = route
        status, payload, headers = 200, _EMPTY, {}
        try:
            app = core.find_app(rt, app_id)
            query = parse_query(request.query)
            core.verify(rt, app, "POST", _unquote(request.path), query, body)
            handle = core.events if kind == "events" else core.batch_events
            answer = await handle(rt, app, body, started)
            if answer:
                payload = _encode(answer)
        except ApiError as exc:
            status, payload = (
                exc.code,
                _encode({"error": exc.message, "code": exc.code}),
            )
            if isinstance(exc, RateLimited):
                headers = {
                    "Retry-After": str(exc.retry_after),
                    "X-RateLimit-Limit": str(exc.limit),
                    "X-RateLimit-Remaining": str(exc.remaining),
                }
            log.info(
                "api_request_refused",
                app_id=app_id[:64],
                path=request.path[:200],
                status=exc.code,
                reason=exc.message,
            )
        except AdapterUnavailable as exc:
            status = 503
            payload = _encode({"error": f"{exc} Retry later.", "code": 503})
            log.error("api_publish_unavailable", app_id=app_id[:64], reason=str(exc))
        except Exception:  # a bug must cost this request only, never the connection
            log.exception("api_request_failed", app_id=app_id[:64])
            status = 500
            payload = _encode({"error": "Internal server error.", "code": 500})
        stats = rt.metrics.app(app_id)
        if app_id in rt.apps.by_id:
            stats.http_call(len(body), len(payload))
        transport = self._transport
        if status == 200 and payload is _EMPTY:  # nearly every publish
            response = _OK_CLOSE if close else _OK
        else:
            if status >= 400:
                stats.rejected("http", status)
            response = _response(status, payload, headers, close)
        if not transport.is_closing():
            transport.write(response)
            if close:
                transport.close()

    def _fail(self, status: int, reason: str) -> None:
        """Answer an unusable request and close (after the ones before it)."""
        body = _encode({"error": reason, "code": status})
        self._handoff = True  # stop parsing
        self._jobs.submit(self._answer_and_close(_response(status, body, {}, True)))

    async def _answer_and_close(self, response: bytes) -> None:
        transport = self._transport
        if not transport.is_closing():
            transport.write(response)
            transport.close()

    def _start_handoff(self) -> None:
        self._handoff = True
        if not self._jobs.busy:
            self._hand_off()
        else:
            self._transport.pause_reading()  # until our answers are out

    def _hand_off(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        self._rt.coalescer.closed(self)
        handler = self._http_factory()
        handler.connection_made(transport)
        transport.set_protocol(handler)
        transport.resume_reading()
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            handler.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._jobs.clear()
        self._rt.coalescer.closed(self)


def _without_expect(head: bytes) -> bytes:
    """The head without its Expect line, so 100 Continue is sent only once."""
    return b"\r\n".join(
        line for line in head.split(b"\r\n") if not line.lower().startswith(b"expect:")
    )
