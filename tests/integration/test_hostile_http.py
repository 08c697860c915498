"""Property test over a live HTTP API: signed garbage gets a 4xx JSON error, never 5xx.

The server runs in a thread with its own event loop, so that hypothesis can
drive plain blocking requests against it. Requests are properly signed (most
of the time) so that the garbage gets past authentication into the routes:
random and protocol-shaped bodies, odd query parameters, odd channel names.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from pbxws.server import Server
from tests.conftest import timeout

from .conftest import APP_ID, make_config, signed_query


class ThreadedServer:
    """A pbxws node running in a background thread's event loop."""

    def __init__(self, redis_port: int | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Server(make_config(redis_port=redis_port))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        self._run(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout())
        self.loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout(3))


@pytest.fixture
def live(adapter_driver: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A started node in its own thread (both adapters)."""
    redis_port = None
    if adapter_driver == "redis":
        redis_port = request.getfixturevalue("redis_server").port
    with ThreadedServer(redis_port) as threaded:
        yield threaded.server


def send(
    server: Server,
    method: str,
    path: str,
    params: dict[str, str],
    body: bytes,
    *,
    signed: bool = True,
) -> tuple[int, bytes, str]:
    """Sign (as the SDKs do) and send one request; status, body, content type."""
    query = signed_query(method, path, body, params=params) if signed else dict(params)
    target = quote(path, safe="/") + "?" + urlencode(query, quote_via=quote)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout())
    try:
        conn.request(method, target, body=body or None)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type") or ""
    finally:
        conn.close()


NAMES = st.sampled_from(
    ["news", "presence-room", "private-a", "#server-to-user-1", "cache-x", ""]
) | st.text(max_size=30)
ROUTES = st.sampled_from(
    [
        ("POST", "/apps/{app}/events"),
        ("POST", "/apps/{app}/batch_events"),
        ("GET", "/apps/{app}/channels"),
        ("GET", "/apps/{app}/channels/{name}"),
        ("GET", "/apps/{app}/channels/{name}/users"),
        ("POST", "/apps/{app}/users/{name}/terminate_connections"),
        ("GET", "/apps/{app}/channels/{name}/{name}"),
        ("PUT", "/apps/{app}/events"),
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | NAMES
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["name", "data", "channel", "channels", "socket_id", "info", "batch"]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)
BODIES = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.builds(
        lambda name, data, channels, info, socket_id: json.dumps(
            {
                "name": name,
                "data": data,
                "channels": channels,
                "info": info,
                "socket_id": socket_id,
            }
        ).encode(),
        NAMES,
        JSON,
        st.lists(NAMES, max_size=4),
        st.text(max_size=30),
        st.text(max_size=12),
    )
)
PARAMS = st.dictionaries(
    st.sampled_from(["info", "filter_by_prefix", "with_user_info", "x", "AUTH_KEY"]),
    st.text(max_size=30),
    max_size=3,
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=ROUTES,
    app=st.sampled_from([APP_ID, APP_ID, "no-such-app"]),
    name=NAMES,
    params=PARAMS,
    body=BODIES,
    signed=st.sampled_from([True, True, True, False]),
)
@example(
    route=("POST", "/apps/{app}/events"),
    app=APP_ID,
    name="",
    params={},
    body=b'{"name":"e","channel":"a","data":{"k":"\xff"}}',
    signed=True,
)
@example(
    route=("POST", "/apps/{app}/batch_events"),
    app=APP_ID,
    name="",
    params={},
    body=b'{"batch":' + b"[" * 5000 + b"]" * 5000 + b"}",
    signed=True,
)
@example(
    route=("GET", "/apps/{app}/channels"),
    app=APP_ID,
    name="",
    params={"auth_timestamp": "9" * 500},
    body=b"",
    signed=False,
)
def test_signed_garbage_gets_a_4xx_json_error(
    live: Server,
    route: tuple[str, str],
    app: str,
    name: str,
    params: dict[str, str],
    body: bytes,
    signed: bool,
) -> None:
    """Whatever the route, query and body: 2xx or 4xx, always JSON, never 5xx."""
    method, template = route
    path = template.format(app=app, name=name)
    status, answer, content_type = send(live, method, path, params, body, signed=signed)
    event(f"HTTP {status}")
    assert status < 500, (status, answer)
    assert content_type.startswith("application/json"), (status, answer)
    decoded = json.loads(answer)
    if status >= 400:
        assert decoded["code"] == status
        assert isinstance(decoded["error"], str)
