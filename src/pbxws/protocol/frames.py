"""Server-to-client WebSocket frames, built once per publish.

A server frame is never masked (RFC 6455 §5.1), so the bytes of one text
frame are the same for every subscriber: the fan-out path frames an event once
and hands the same ``bytes`` object to every transport.
"""

from __future__ import annotations

import struct

__all__ = ["text_frame"]

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """Return one unmasked, final TEXT frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload
