"""RFC 6455 for the server side, without I/O: handshake and frames.

The lean connection path (:mod:`pbxws.ws.lean`) feeds raw bytes to a
:class:`FrameParser` and writes the bytes this module builds. Only what a
Pusher server needs is here: no extensions (no compression), text and binary
messages, fragmentation, ping/pong and the close handshake.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Final

import msgspec

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "FrameParser",
    "HandshakeError",
    "Request",
    "WebSocketError",
    "accept_key",
    "close_frame",
    "handshake_response",
    "parse_close",
    "parse_request",
    "pong_frame",
    "unmask",
]

CONTINUATION, TEXT, BINARY = 0x0, 0x1, 0x2
CLOSE, PING, PONG = 0x8, 0x9, 0xA

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD: Final = 16384


class WebSocketError(Exception):
    """The client broke RFC 6455; close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        # Close code to send (1002 protocol error, 1009 too big, ...).
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """The upgrade request is unusable; answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Request(msgspec.Struct, frozen=True):
    """An HTTP request head: what is needed to route and upgrade it."""

    method: str
    # Path without the query string, undecoded.
    path: str
    query: str
    # Header names lower-cased; a repeated header keeps its last value.
    headers: dict[str, str]

    @property
    def wants_websocket(self) -> bool:
        """Whether this is a WebSocket upgrade request."""
        return (
            self.method == "GET"
            and self.headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in self.headers.get("connection", "").lower()
        )


def parse_request(head: bytes) -> Request:
    """Parse a request head (request line and headers, without the body).

    Raises:
        HandshakeError: If it is not an HTTP/1.1 request head; then the
            connection must answer 400 and close.
    """
    if len(head) > _MAX_HEAD:
        raise HandshakeError(431, "Request head too large.")
    line, _, rest = head.decode("latin-1").partition("\r\n")
    try:
        method, target, version = line.split(" ")
    except ValueError:
        raise HandshakeError(400, "Malformed request line.") from None
    if not version.startswith("HTTP/1."):
        raise HandshakeError(400, "Not an HTTP/1.x request.")
    headers: dict[str, str] = {}
    for raw in rest.split("\r\n") if rest else ():
        name, sep, value = raw.partition(":")
        if not sep:
            if not raw:
                continue
            raise HandshakeError(400, "Malformed header line.")
        headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    return Request(method=method, path=path, query=query, headers=headers)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324 - RFC 6455 mandates SHA-1


def handshake_response(request: Request) -> bytes:
    """The 101 answer to an upgrade request.

    Raises:
        HandshakeError: If the version or key is missing or wrong; then answer
            the error status and close.
    """
    if request.headers.get("sec-websocket-version") != "13":
        raise HandshakeError(426, "Only WebSocket version 13 is supported.")
    key = request.headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise HandshakeError(400, "Invalid Sec-WebSocket-Key.") from None
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode()


def unmask(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (done on big integers, in C)."""
    n = len(data)
    if not n:
        return data
    key = (mask * (n // 4 + 1))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(n, "little")


def _control(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


def pong_frame(payload: bytes) -> bytes:
    """A pong answering a ping with ``payload`` (at most 125 bytes)."""
    return _control(PONG, payload[:125])


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and a reason cut to fit 123 bytes of UTF-8."""
    data = reason.encode()[:123]
    return _control(CLOSE, struct.pack("!H", code) + data)


def parse_close(payload: bytes) -> int:
    """The code of a received close frame (1005 when it has none).

    Raises:
        WebSocketError: If the payload is one byte long (1002).
    """
    if not payload:
        return 1005
    if len(payload) < 2:
        raise WebSocketError(1002, "Close frame with a one-byte payload.")
    return int(struct.unpack("!H", payload[:2])[0])


class FrameParser:
    """Turns client bytes into complete messages and control frames.

    :meth:`feed` returns ``(opcode, payload)`` pairs: ``TEXT``/``BINARY`` with
    the whole (reassembled) message, or a control opcode. Sizes are checked on
    the declared length, before any payload is buffered, so a client can't make
    us hold more than ``max_message_size`` bytes plus one frame header.
    """

    def __init__(self, max_message_size: int) -> None:
        self._max = max_message_size
        # Bytes received and not yet parsed.
        self._buffer = bytearray()
        # Opcode and parts of a fragmented message in progress.
        self._opcode: int | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Parse what ``data`` completes.

        Raises:
            WebSocketError: On a protocol violation or a message over the size
                limit; then close with its code.
        """
        buf = self._buffer
        buf += data
        out: list[tuple[int, bytes]] = []
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    break
                length = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length = int.from_bytes(buf[2:10], "big")
                pos = 10
            if b0 & 0x70:
                raise WebSocketError(1002, "RSV bits set without an extension.")
            if not b1 & 0x80:
                raise WebSocketError(1002, "Client frames must be masked.")
            fin = b0 & 0x80
            if opcode >= CLOSE:
                if not fin or length > 125:
                    raise WebSocketError(1002, "Invalid control frame.")
            elif self._size + length > self._max:
                raise WebSocketError(1009, f"Message larger than {self._max} bytes.")
            end = pos + 4 + length
            if len(buf) < end:
                break
            payload = unmask(bytes(buf[pos : pos + 4]), bytes(buf[pos + 4 : end]))
            del buf[:end]
            if opcode >= CLOSE:
                if opcode not in (CLOSE, PING, PONG):
                    raise WebSocketError(1002, f"Unknown opcode {opcode}.")
                out.append((opcode, payload))
            elif opcode == CONTINUATION:
                if self._opcode is None:
                    raise WebSocketError(1002, "Continuation without a message.")
                self._parts.append(payload)
                self._size += length
                if fin:
                    out.append((self._opcode, b"".join(self._parts)))
                    self._opcode, self._parts, self._size = None, [], 0
            elif opcode in (TEXT, BINARY):
                if self._opcode is not None:
                    raise WebSocketError(1002, "New message inside a fragmented one.")
                if fin:
                    out.append((opcode, payload))
                else:
                    self._opcode, self._parts, self._size = opcode, [payload], length
            else:
                raise WebSocketError(1002, f"Unknown opcode {opcode}.")
        return out
