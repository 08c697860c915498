"""Structured logs: who each line is about, and no secret on any line."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from typing import Any

from structlog.testing import capture_logs

from pbxws.logs import mask_secrets

from .conftest import (
    APP_ID,
    APP_KEY,
    APP_SECRET,
    ApiFactory,
    NodeFactory,
    WsFactory,
    channel_auth,
    default_app,
    sign,
)


def _strings(value: Any) -> list[str]:
    """Every string inside a log value (nested dicts and lists included)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list | tuple | set):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


async def test_no_secret_signature_or_auth_string_is_ever_logged(
    node: NodeFactory, ws: WsFactory, api: ApiFactory
) -> None:
    """Good and bad signatures, secrets and auth strings go through; none reaches a log line."""
    server = await node(
        apps=[
            default_app(
                enable_client_messages=True,
                enable_user_authentication=True,
                max_client_events_per_sec=1,
            )
        ]
    )
    secrets = {APP_SECRET}
    with capture_logs() as lines:
        client = await ws(server)
        good = channel_auth(client.socket_id, "private-room")
        secrets.add(good.split(":", 1)[1])
        await client.subscribe("private-room", auth=good)
        bad = f"{APP_KEY}:{'0' * 64}"
        secrets.add("0" * 64)
        await client.subscribe("private-other", auth=bad)
        data = json.dumps({"user_id": "u1"})
        presence_auth = channel_auth(client.socket_id, "presence-x", data)
        secrets.add(presence_auth.split(":", 1)[1])
        await client.subscribe("presence-x", auth=presence_auth, channel_data=data)
        await client.send("client-a", {"n": 1}, channel="private-room")
        await client.send("client-b", {"n": 2}, channel="private-room")
        await client.expect("pusher:error")
        http = api(server)
        status, _ = await http.trigger("private-room", "e", "x")
        assert status == 200
        status, _ = await http.call("GET", f"/apps/{APP_ID}/channels", secret="nope")
        assert status == 401
        secrets.add("nope")
        user_data = json.dumps({"id": "u1"})
        signature = sign(APP_SECRET, f"{client.socket_id}::user::{user_data}")
        secrets.add(signature)
        await client.send(
            "pusher:signin", {"auth": f"{APP_KEY}:{signature}", "user_data": user_data}
        )
        await client.expect("pusher:signin_success")
        intruder = await ws(server)
        wrong = sign(APP_SECRET, "something else")
        secrets.add(wrong)
        await intruder.send(
            "pusher:signin", {"auth": f"{APP_KEY}:{wrong}", "user_data": user_data}
        )
        assert await intruder.closed() == 4009
        await client.ws.close()
        await intruder.ws.close()
    assert lines, "nothing was logged"
    for line in lines:
        for text in _strings(line):
            for secret in secrets:
                assert secret not in text, (secret, line)
    events = {line["event"] for line in lines}
    assert {"connection_established", "subscribed", "subscription_refused"} <= events
    for line in lines:
        if line["event"] in (
            "connection_established",
            "connection_closed",
            "subscribed",
            "subscription_refused",
            "client_event_rejected",
            "signed_in",
        ):
            assert line["app_id"] == APP_ID, line
            assert line["socket_id"], line
        if line["event"] in (
            "subscribed",
            "subscription_refused",
            "client_event_rejected",
        ):
            assert line["channel"], line


def test_mask_secrets_masks_credential_keys_whatever_the_call_site() -> None:
    """A secret-named key never reaches a renderer with its value."""
    event = mask_secrets(
        None,
        "info",
        {
            "event": "x",
            "secret": "s3cr3t",
            "auth": "k:sig",
            "password": "",
            "channel": "c",
        },
    )
    assert event == {
        "event": "x",
        "secret": "****",
        "auth": "****",
        "password": "",
        "channel": "c",
    }


_EMIT = (
    "from pbxws.logs import configure_logging; import structlog; "
    "configure_logging('info'); "
    "structlog.get_logger('t').info('subscribed', app_id='1', socket_id='1.2', "
    "channel='news', secret='s3cr3t'); "
    "structlog.get_logger('t').debug('hidden_at_info')"
)


def test_json_lines_when_not_on_a_terminal() -> None:
    """Piped (a container's stdout): one JSON object per line, secrets masked."""
    out = subprocess.run(
        [sys.executable, "-c", _EMIT], capture_output=True, check=True, timeout=60
    ).stdout.decode()
    (line,) = out.splitlines()
    record = json.loads(line)
    assert record["event"] == "subscribed"
    assert record["channel"] == "news"
    assert record["level"] == "info"
    assert record["secret"] == "****"
    assert record["timestamp"].endswith("Z")


def test_console_lines_on_a_terminal() -> None:
    """On a terminal the same line is human-readable, not JSON."""
    controller, terminal = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-c", _EMIT],
            stdout=terminal,
            stderr=terminal,
            check=True,
            timeout=60,
        )
    finally:
        os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: everything written has been read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    text = b"".join(chunks).decode(errors="replace")
    assert "subscribed" in text
    assert "channel" in text
    assert "s3cr3t" not in text
    assert "hidden_at_info" not in text
    assert not text.lstrip().startswith("{")
