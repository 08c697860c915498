"""The PBX example backend's Laravel shapes, without a browser (examples/pbx/backend.py).

The broadcasting routes answer as Laravel's ``PusherBroadcaster`` does, the channel
callbacks are those of the seed's ``routes/channels.php``, and the signatures verify
with the app secret (the strings pbxws checks, pusher-protocol.md §8).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from examples.pbx import backend as pbx

from tests.e2e.conftest import EXAMPLE_DIR

SECRET = "pbxappsecret"
SOCKET_ID = "1234.5678"


def signature(text: str) -> str:
    return (
        "pbxappkey:"
        + hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    if not (EXAMPLE_DIR / "node_modules" / "laravel-echo").is_dir():
        pytest.fail(
            f"{EXAMPLE_DIR}/node_modules is missing: run scripts/setup", pytrace=False
        )
    settings = pbx.Settings.from_env(
        # Nothing listens there: the health check must say so.
        {"PUSHER_PORT": str(closed_port()), "PBX_SESSION_SECRET": "test"}
    )
    app = pbx.PbxBackend(settings, pbx.Directory.load()).application()
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def login(client: TestClient[Any, Any], user: int) -> str:
    """Log in as ``user`` (the cookie jar keeps the session); return the bearer token."""
    response = await client.get(f"/login?user={user}", allow_redirects=False)
    assert response.status == 302
    me = await (await client.get("/api/v1/me")).json()
    assert me["user"]["id"] == user
    return str(me["token"])


async def auth(
    client: TestClient[Any, Any],
    channel: str,
    token: str | None,
    *,
    as_json: bool = False,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"socket_id": SOCKET_ID, "channel_name": channel}
    response = await client.post(
        "/broadcasting/auth",
        headers=headers,
        **({"json": body} if as_json else {"data": body}),
    )
    return response.status, await response.json(content_type=None)


async def test_presence_auth_is_laravels_and_only_for_the_organization(
    client: TestClient[Any, Any],
) -> None:
    client.session.cookie_jar.clear()
    alice = await login(client, 1)
    client.session.cookie_jar.clear()  # from here on, only the bearer token counts
    status, body = await auth(client, "presence-org.1", alice)
    assert status == 200
    assert json.loads(body["channel_data"]) == {
        "user_id": "1",  # Laravel's (string) cast
        "user_info": {
            "id": 1,
            "name": "Alice Nguyen",
            "email": "alice@acme.example",
            "role": "owner",
        },
    }
    assert body["auth"] == signature(
        f"{SOCKET_ID}:presence-org.1:{body['channel_data']}"
    )
    # JSON requests work too (Echo with a custom authorizer, axios).
    status, body = await auth(client, "presence-org.1", alice, as_json=True)
    assert status == 200 and "channel_data" in body

    for channel in ("presence-org.2", "presence-org.x", "presence-other.1", "org.1"):
        assert (await auth(client, channel, alice))[0] == 403, channel
    assert (await auth(client, "presence-org.1", None))[0] == 403
    forged = alice[:-1] + ("1" if alice.endswith("0") else "0")
    assert (await auth(client, "presence-org.1", forged))[0] == 403


async def test_private_channels(client: TestClient[Any, Any]) -> None:
    bob = await login(client, 2)
    dave = await login(client, 4)
    status, body = await auth(client, "private-user.2", bob)
    assert (status, body) == (200, {"auth": signature(f"{SOCKET_ID}:private-user.2")})
    assert (await auth(client, "private-user.1", bob))[0] == 403
    # Extensions of one's own organization, never another's.
    assert (await auth(client, "private-extension.101", bob))[0] == 200
    assert (await auth(client, "private-extension.201", bob))[0] == 403
    assert (await auth(client, "private-extension.101", dave))[0] == 403
    assert (await auth(client, "private-extension.999", dave))[0] == 403
    # The SDK's socket id check (Laravel: "Invalid socket ID").
    response = await client.post(
        "/broadcasting/auth",
        headers={"Authorization": f"Bearer {bob}"},
        data={"socket_id": "abc", "channel_name": "private-user.2"},
    )
    assert response.status == 422


async def test_user_authentication(client: TestClient[Any, Any]) -> None:
    token = await login(client, 3)
    response = await client.post(
        "/broadcasting/user-auth",
        headers={"Authorization": f"Bearer {token}"},
        data={"socket_id": SOCKET_ID},
    )
    body = await response.json()
    assert response.status == 200
    assert json.loads(body["user_data"])["id"] == "3"
    assert body["auth"] == signature(f"{SOCKET_ID}::user::{body['user_data']}")
    client.session.cookie_jar.clear()
    response = await client.post(
        "/broadcasting/user-auth", data={"socket_id": SOCKET_ID}
    )
    assert response.status == 403


async def test_calls_are_kept_per_organization_when_pbxws_is_down(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/api/v1/websocket/health")
    body = await response.json()
    assert response.status == 503
    assert (body["status"], body["websocket"], body["driver"]) == (
        "error",
        "disconnected",
        "pusher",
    )
    assert body["timestamp"].endswith("Z")

    response = await client.post(
        "/api/webhooks/pbx/calls", json={"organization_id": 2, "from_number": "+1555"}
    )
    created = await response.json()
    assert response.status == 201
    assert created["broadcast"]["ok"] is False  # stored all the same
    assert created["broadcast"]["name"] == "call.initiated"
    assert created["broadcast"]["channels"] == ["presence-org.2"]
    call_id = created["call"]["call_id"]
    response = await client.post(
        f"/api/webhooks/pbx/calls/{call_id}/answered", json={"extension_id": "101"}
    )
    assert response.status == 422  # an extension of another organization

    await login(client, 1)
    assert (await (await client.get("/api/v1/calls")).json())["active"] == []
    await login(client, 5)
    calls = await (await client.get("/api/v1/calls")).json()
    assert [c["call_id"] for c in calls["active"]] == [call_id]
