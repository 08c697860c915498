"""Per-app allowed origins: browsers from elsewhere are refused with 4009."""

from __future__ import annotations

from .conftest import NodeFactory, WsFactory, default_app


async def test_origin_not_allowed_is_refused_4009(
    node: NodeFactory, ws: WsFactory
) -> None:
    """A browser Origin outside allowed_origins gets pusher:error 4009, then close 4009."""
    server = await node(
        apps=[default_app(allowed_origins=["https://app.example.com", "*.corp.io"])]
    )
    client = await ws(server, established=False, origin="https://evil.example")
    error = await client.recv()
    assert error["event"] == "pusher:error"
    assert error["data"]["code"] == 4009
    assert "evil.example" in error["data"]["message"]
    assert await client.closed() == 4009


async def test_allowed_origins_and_non_browsers_connect(
    node: NodeFactory, ws: WsFactory
) -> None:
    """Listed origins, subdomains of a wildcard and clients without Origin connect."""
    server = await node(
        apps=[default_app(allowed_origins=["https://app.example.com", "*.corp.io"])]
    )
    for origin in ("https://app.example.com", "https://eu.corp.io", None):
        kwargs = {} if origin is None else {"origin": origin}
        client = await ws(server, **kwargs)
        assert client.socket_id


async def test_origins_are_per_app(node: NodeFactory, ws: WsFactory) -> None:
    """One app's allowed_origins do not restrict another app."""
    server = await node(
        apps=[
            default_app(allowed_origins=["https://a.example"]),
            default_app(id="2", key="key-2"),
        ]
    )
    open_app = await ws(server, key="key-2", origin="https://anything.example")
    assert open_app.socket_id
    refused = await ws(server, established=False, origin="https://b.example")
    msg = await refused.recv()
    assert msg["data"]["code"] == 4009
    assert await refused.closed() == 4009


async def test_origin_check_without_the_lean_protocol(
    node: NodeFactory, ws: WsFactory
) -> None:
    """The aiohttp WebSocket path refuses a foreign origin the same way."""
    server = await node(
        lean_websockets=False,
        apps=[default_app(allowed_origins=["https://app.example.com"])],
    )
    refused = await ws(server, established=False, origin="https://evil.example")
    assert (await refused.recv())["data"]["code"] == 4009
    assert await refused.closed() == 4009
    allowed = await ws(server, origin="https://app.example.com")
    assert allowed.socket_id
