"""RFC 6455 server side: handshake, frame parsing and the frames we build."""

from __future__ import annotations

import os
import struct

import pytest

from pbxws.protocol import websocket as rfc


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a client sends it (masked)."""
    head = bytes(((0x80 if fin else 0) | rsv | opcode,))
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_accept_key_vector() -> None:
    """The RFC 6455 §1.3 example key gives its documented accept value."""
    assert rfc.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_request_and_upgrade() -> None:
    """A pusher-js upgrade request parses and gets a 101 answer."""
    head = (
        b"GET /app/app-key?protocol=7&client=js HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Origin: https://pbx.example.com"
    )
    request = rfc.parse_request(head)
    assert (request.method, request.path, request.query) == (
        "GET",
        "/app/app-key",
        "protocol=7&client=js",
    )
    assert request.wants_websocket
    assert request.headers["origin"] == "https://pbx.example.com"
    response = rfc.handshake_response(request)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"sec-websocket-version": "8", "sec-websocket-key": "x"}, 426),
        ({"sec-websocket-version": "13", "sec-websocket-key": "short"}, 400),
        ({"sec-websocket-version": "13"}, 400),
    ],
)
def test_bad_handshakes(headers: dict[str, str], status: int) -> None:
    """A wrong version or key is refused with the right status."""
    request = rfc.Request(method="GET", path="/", query="", headers=headers)
    with pytest.raises(rfc.HandshakeError) as info:
        rfc.handshake_response(request)
    assert info.value.status == status


@pytest.mark.parametrize("head", [b"nonsense", b"GET / SPDY/3\r\n", b"GET /\r\nbad"])
def test_malformed_heads(head: bytes) -> None:
    """Garbage request heads raise HandshakeError."""
    with pytest.raises(rfc.HandshakeError):
        rfc.parse_request(head)


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 1000, 65535, 65536, 200_000])
def test_text_round_trip(size: int) -> None:
    """Masked text frames of every length encoding are unmasked exactly."""
    payload = os.urandom(size)
    parser = rfc.FrameParser(1 << 20)
    assert parser.feed(client_frame(rfc.TEXT, payload)) == [(rfc.TEXT, payload)]


def test_byte_by_byte_and_coalesced() -> None:
    """Frames split at every byte, or several in one read, parse the same."""
    frames = client_frame(rfc.TEXT, b'{"event":"a"}') + client_frame(rfc.PING, b"p")
    parser = rfc.FrameParser(1024)
    out = []
    for i in range(len(frames)):
        out += parser.feed(frames[i : i + 1])
    assert out == [(rfc.TEXT, b'{"event":"a"}'), (rfc.PING, b"p")]
    assert rfc.FrameParser(1024).feed(frames) == out


def test_fragmented_message_with_interleaved_ping() -> None:
    """Fragments are reassembled; a control frame may arrive between them."""
    parser = rfc.FrameParser(1024)
    data = (
        client_frame(rfc.TEXT, b"ab", fin=False)
        + client_frame(rfc.PING, b"")
        + client_frame(rfc.CONTINUATION, b"cd", fin=False)
        + client_frame(rfc.CONTINUATION, b"ef")
    )
    assert parser.feed(data) == [(rfc.PING, b""), (rfc.TEXT, b"abcdef")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(rfc.TEXT, b"x", mask=False), 1002),
        (client_frame(rfc.TEXT, b"x", rsv=0x40), 1002),
        (client_frame(rfc.PING, b"x" * 126), 1002),
        (client_frame(rfc.PING, b"x", fin=False), 1002),
        (client_frame(rfc.CONTINUATION, b"x"), 1002),
        (client_frame(0x3, b"x"), 1002),
        (client_frame(0xB, b"x"), 1002),
        (client_frame(rfc.TEXT, b"x" * 2000), 1009),
        (client_frame(rfc.TEXT, b"x", fin=False) + client_frame(rfc.TEXT, b"y"), 1002),
    ],
)
def test_protocol_violations(data: bytes, code: int) -> None:
    """Unmasked, reserved-bit, bad control, orphan and oversized frames raise."""
    with pytest.raises(rfc.WebSocketError) as info:
        rfc.FrameParser(1024).feed(data)
    assert info.value.code == code


def test_size_checked_before_payload_arrives() -> None:
    """A huge declared length fails on its header, before any payload is buffered."""
    header = bytes((0x81, 0xFF)) + struct.pack("!Q", 1 << 40)
    with pytest.raises(rfc.WebSocketError) as info:
        rfc.FrameParser(1 << 20).feed(header)
    assert info.value.code == 1009


def test_fragments_count_toward_the_limit() -> None:
    """A message made of small fragments may not exceed the limit either."""
    parser = rfc.FrameParser(10)
    parser.feed(client_frame(rfc.TEXT, b"x" * 6, fin=False))
    with pytest.raises(rfc.WebSocketError):
        parser.feed(client_frame(rfc.CONTINUATION, b"x" * 6))


def test_close_and_pong_frames() -> None:
    """Server control frames are unmasked, with the code big-endian."""
    assert rfc.close_frame(4009, "bye") == b"\x88\x05\x0f\xa9bye"
    assert len(rfc.close_frame(1000, "x" * 200)) == 2 + 2 + 123
    assert rfc.pong_frame(b"hi") == b"\x8a\x02hi"
    assert rfc.parse_close(b"\x0f\xa0") == 4000
    assert rfc.parse_close(b"") == 1005
    with pytest.raises(rfc.WebSocketError):
        rfc.parse_close(b"\x03")


def test_unmask_matches_bytewise_xor() -> None:
    """The big-integer unmask equals the byte-by-byte definition."""
    key = b"\x01\x02\x03\x04"
    data = os.urandom(1001)
    assert rfc.unmask(key, data) == bytes(b ^ key[i % 4] for i, b in enumerate(data))
