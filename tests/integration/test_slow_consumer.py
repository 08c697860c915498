"""A client that stops reading is cut off (4100); nobody else waits for it."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

from tests.conftest import timeout

from .conftest import ApiFactory, NodeFactory, WsFactory


async def _raw_client(port: int) -> socket.socket:
    """A WebSocket client on a socket with a tiny receive buffer that we don't read."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    return sock


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + body


async def _read_frames(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    frames = []
    while True:
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        frames.append((head[0] & 0x0F, await reader.readexactly(length)))
        if head[0] & 0x0F == 0x8:
            return frames


async def test_slow_consumer_closed_4100(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """Past send_buffer_limit the reader-less socket gets 4100; a healthy one gets all."""
    server = await node(send_buffer_limit=64 * 1024)
    loop = asyncio.get_running_loop()
    sock = await _raw_client(server.port)
    subscribe = b'{"event":"pusher:subscribe","data":{"channel":"feed"}}'
    await loop.sock_sendall(sock, _masked_text(subscribe))
    healthy = await ws(server)
    await healthy.subscribe("feed")
    http = api(server)
    payload = "x" * 9000
    sent = 0
    async with asyncio.timeout(timeout(4)):
        while len(server.runtime.connections) == 2:
            status, _ = await http.trigger("feed", "e", payload)
            assert status == 200
            sent += 1
            assert (await healthy.expect("e"))["data"] == payload
    assert sent < 2000, "the slow socket was never cut off"
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
    frames = await asyncio.wait_for(_read_frames(reader), timeout())
    opcode, body = frames[-1]
    assert opcode == 0x8
    assert struct.unpack("!H", body[:2])[0] == 4100
    writer.close()
    # The healthy client still receives after the cut.
    await http.trigger("feed", "after", "ok")
    assert (await healthy.expect("after"))["data"] == "ok"
