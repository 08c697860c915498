"""The main port's first protocol: reads a request head and routes the connection.

A WebSocket upgrade for ``[prefix]/app/{key}`` goes to the lean WebSocket
protocol (:mod:`pbxws.ws.lean`), a publish (``POST /apps/{id}/events`` or
``/batch_events``) to the lean HTTP path (:mod:`pbxws.http_api.fast`), and
anything else, with the bytes read so far, to aiohttp's request handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast
from urllib.parse import unquote

from pbxws.http_api.fast import FastApi, publish_route
from pbxws.protocol import websocket as rfc
from pbxws.runtime import Runtime
from pbxws.ws.lean import LeanSocket

__all__ = ["Front"]


class Front(asyncio.Protocol):
    """Reads a request head, then gives the connection to its real protocol."""

    __slots__ = ("_head", "_http_factory", "_rt", "_transport")

    def __init__(
        self, rt: Runtime, http_factory: Callable[[], asyncio.Protocol]
    ) -> None:
        self._rt = rt
        # aiohttp's RequestHandler factory (``runner.server``).
        self._http_factory = http_factory
        self._head = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 16384:
                transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
                transport.close()
            return
        try:
            request = rfc.parse_request(bytes(self._head[:end]))
        except rfc.HandshakeError:
            request = None
        key = None if request is None else self._websocket_key(request)
        if request is None or key is None:
            if request is not None and publish_route(self._rt, request) is not None:
                api = FastApi(self._rt, transport, self._http_factory)
                transport.set_protocol(api)
                api.data_received(bytes(self._head))
                return
            self._to_aiohttp(transport)
            return
        socket = LeanSocket(self._rt, transport)
        transport.set_protocol(socket)
        socket.start(request, key, bytes(self._head[end + 4 :]))

    def _websocket_key(self, request: rfc.Request) -> str | None:
        """The app key of a WebSocket upgrade for ``[prefix]/app/{key}``."""
        if not request.wants_websocket:
            return None
        route = f"{self._rt.config.server.path_prefix}/app/"
        if not request.path.startswith(route):
            return None
        key = unquote(request.path[len(route) :])
        return key if key and "/" not in key else None

    def _to_aiohttp(self, transport: asyncio.Transport) -> None:
        handler = self._http_factory()
        handler.connection_made(transport)
        transport.set_protocol(handler)
        handler.data_received(bytes(self._head))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
