"""The lean publish path over raw HTTP/1.1: keep-alive, pipelining, handoff."""

from __future__ import annotations

import asyncio
import json

from pbxws.coalesce import DENSE, SPARE
from pbxws.server import Server
from tests.conftest import timeout

from .conftest import APP_ID, NodeFactory, WsClient, WsFactory, signed_query
from .test_metrics import scrape


def signed_request(
    path: str, body: bytes, *, method: str = "POST", headers: str = ""
) -> bytes:
    """A complete signed request as an SDK sends it."""
    query = signed_query(method, path, body)
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return (
        f"{method} {path}?{qs} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


def event(channel: str, data: str) -> bytes:
    return json.dumps({"name": "e", "channel": channel, "data": data}).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout())
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status, await reader.readexactly(length)


async def subscriber_and_api_connection(
    node: NodeFactory, ws: WsFactory
) -> tuple[WsClient, asyncio.StreamReader, asyncio.StreamWriter]:
    """A node, a WebSocket client subscribed to ``c``, a raw HTTP connection."""
    server = await node()
    client = await ws(server)
    await client.subscribe("c")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    return client, reader, writer


async def test_keep_alive_and_pipelining(node: NodeFactory, ws: WsFactory) -> None:
    """Many publishes on one connection, some pipelined in one write, answer in order."""
    client, reader, writer = await subscriber_and_api_connection(node, ws)
    path = f"/apps/{APP_ID}/events"
    writer.write(signed_request(path, event("c", "1")))
    assert await read_response(reader) == (200, b"{}")
    writer.write(
        signed_request(path, event("c", "2")) + signed_request(path, event("c", "3"))
    )
    assert await read_response(reader) == (200, b"{}")
    assert await read_response(reader) == (200, b"{}")
    assert [(await client.expect("e"))["data"] for _ in range(3)] == ["1", "2", "3"]
    # Then a GET on the same connection: handed to aiohttp, still answered.
    writer.write(signed_request(f"/apps/{APP_ID}/channels", b"", method="GET"))
    status, body = await read_response(reader)
    assert status == 200
    assert json.loads(body) == {"channels": {"c": {}}}
    writer.close()
    await writer.wait_closed()


async def test_errors_on_the_fast_path(node: NodeFactory) -> None:
    """Bad signature 401, unknown app 404, malformed body 400 keep the connection."""
    server = await node()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    good = signed_request(f"/apps/{APP_ID}/events", event("c", "x"))
    writer.write(good.replace(b"auth_signature=", b"auth_signature=0"))
    status, body = await read_response(reader)
    assert status == 401
    assert json.loads(body)["code"] == 401
    writer.write(signed_request("/apps/999/events", event("c", "x")))
    assert (await read_response(reader))[0] == 404
    writer.write(signed_request(f"/apps/{APP_ID}/events", b"{nope"))
    status, body = await read_response(reader)
    assert status == 400
    assert "Invalid event body" in json.loads(body)["error"]
    writer.write(good)
    assert await read_response(reader) == (200, b"{}")
    writer.close()
    await writer.wait_closed()


async def test_oversized_body_is_413_and_closed(node: NodeFactory) -> None:
    """A Content-Length over max_request_size is refused without reading the body."""
    server = await node(max_request_size=1000)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode()
    )
    status, body = await read_response(reader)
    assert status == 413
    assert json.loads(body)["code"] == 413
    assert await asyncio.wait_for(reader.read(), timeout()) == b""
    writer.close()
    await writer.wait_closed()


async def test_expect_continue_and_connection_close(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Expect: 100-continue gets a 100 first; Connection: close closes after the answer."""
    client, reader, writer = await subscriber_and_api_connection(node, ws)
    request = signed_request(
        f"/apps/{APP_ID}/events",
        event("c", "late"),
        headers="Expect: 100-continue\r\nConnection: close\r\n",
    )
    head, body = request.split(b"\r\n\r\n", 1)
    writer.write(head + b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout()) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(body)
    assert await read_response(reader) == (200, b"{}")
    assert await asyncio.wait_for(reader.read(), timeout()) == b""
    writer.close()
    await writer.wait_closed()
    assert (await client.expect("e"))["data"] == "late"


async def test_requests_cut_anywhere_and_a_handoff_in_the_same_read(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A publish arriving in pieces, then a publish and a GET in one write."""
    client, reader, writer = await subscriber_and_api_connection(node, ws)
    path = f"/apps/{APP_ID}/events"
    request = signed_request(path, event("c", "pieces"))
    cuts = [
        0,
        1,
        7,
        len(request) // 2,
        request.index(b"\r\n\r\n") + 2,
        len(request) - 1,
    ]
    for start, stop in zip(cuts, [*cuts[1:], len(request)], strict=True):
        writer.write(request[start:stop])
        await writer.drain()
        await asyncio.sleep(0.005)  # let each piece arrive as its own read
    assert await read_response(reader) == (200, b"{}")
    assert (await client.expect("e"))["data"] == "pieces"
    writer.write(
        signed_request(path, event("c", "before-get"))
        + signed_request(f"/apps/{APP_ID}/channels", b"", method="GET")
    )
    assert await read_response(reader) == (200, b"{}")
    status, body = await read_response(reader)
    assert status == 200
    assert json.loads(body) == {"channels": {"c": {}}}
    assert (await client.expect("e"))["data"] == "before-get"
    writer.close()
    await writer.wait_closed()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Publisher:
    """A subscriber to ``c`` and raw API connections that publish to it."""

    def __init__(self, client: WsClient, connections: list[Connection]) -> None:
        self.client, self.connections = client, connections
        self.sent = 0

    @classmethod
    async def open(cls, server: Server, ws: WsFactory, connections: int) -> Publisher:
        client = await ws(server)
        await client.subscribe("c")
        return cls(
            client,
            [
                await asyncio.open_connection("127.0.0.1", server.port)
                for _ in range(connections)
            ],
        )

    async def burst(self, n: int, on: int | None = None) -> None:
        """``n`` publishes on each of the first ``on`` connections (default all),
        pipelined; all answered and delivered."""
        path = f"/apps/{APP_ID}/events"
        sent = []
        used = self.connections[:on]
        for _, writer in used:
            data = [str(i) for i in range(self.sent, self.sent + n)]
            self.sent += n
            sent += data
            writer.write(b"".join(signed_request(path, event("c", d)) for d in data))
        for reader, _ in used:
            for _ in range(n):
                assert await read_response(reader) == (200, b"{}")
        got = [(await self.client.expect("e"))["data"] for _ in sent]
        assert sorted(got) == sorted(sent)

    async def close(self) -> None:
        for _, writer in self.connections:
            writer.close()
            await writer.wait_closed()


async def sleeps(server: Server) -> float:
    return (await scrape(server))("soketi_publish_coalescing_sleeps_total", app_id=None)


WINDOW = 0.1


async def dense_traffic(server: Server, ws: WsFactory, used: int, idle: int) -> None:
    """Bursts on ``used`` connections, ``idle`` more open, until the loop slept."""
    publisher = await Publisher.open(server, ws, used + idle)
    await publisher.burst(1)  # every connection is a publish connection now
    await asyncio.sleep(WINDOW)  # the rate is judged once a window has passed
    for _ in range(20):  # bursts closer than half a window, until a sleep
        await publisher.burst(3, on=used)
        if await sleeps(server):
            break
    await publisher.close()


async def test_dense_publishes_are_served_per_window(
    node: NodeFactory, ws: WsFactory
) -> None:
    """DENSE+ publishes per window with connections to spare: the loop sleeps to batch."""
    server = await node(publish_coalescing_window=WINDOW)
    used = 2 * DENSE
    await dense_traffic(server, ws, used, idle=(SPARE - 1) * used)
    metrics = await scrape(server)
    naps = metrics("soketi_publish_coalescing_sleeps_total", app_id=None)
    slept = metrics("soketi_publish_coalescing_seconds_total", app_id=None)
    assert naps >= 1
    assert 0 < slept < 2 * WINDOW * naps  # each at most a window (and any overshoot)


async def test_no_sleep_when_sparse_without_spare_connections_or_off(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Fewer than DENSE per window, no connection to spare, or window 0: no sleep."""
    sparse = await node(publish_coalescing_window=0.01)
    publisher = await Publisher.open(sparse, ws, DENSE - 1)
    for _ in range(6):  # DENSE - 1 publishes per window at most
        await publisher.burst(1)
        await asyncio.sleep(0.01)
    await publisher.close()
    # The same dense traffic as above, but every open connection is in use.
    busy = await node(publish_coalescing_window=WINDOW)
    await dense_traffic(busy, ws, 2 * DENSE, idle=0)
    off = await node(publish_coalescing_window=0)
    await dense_traffic(off, ws, 2 * DENSE, idle=2 * DENSE)
    for server in (sparse, busy, off):
        assert await sleeps(server) == 0
        assert (
            "soketi_publish_coalescing_sleeps_total" in (await scrape(server)).names()
        )
