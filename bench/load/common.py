"""Shared bits of the load generator: app credentials, signing, the wire format.

Every process of the bench (orchestrator, subscriber workers, publisher) speaks
to its parent with one JSON object per line on stdin/stdout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from typing import Any

APP_ID = "1"
APP_KEY = "app-key"
APP_SECRET = "app-secret"  # noqa: S105 - the bench app, not a secret

# The event every publish carries. Its ``data`` is the scheduled send time in
# microseconds of CLOCK_MONOTONIC (shared by all processes of this machine),
# optionally followed by a space and padding; subscribers find it with
# ``TS_PATTERN`` without decoding the JSON.
EVENT_NAME = "bench"
TS_PATTERN = rb'"data":"(\d+)[ "]'


def now_us() -> int:
    """CLOCK_MONOTONIC in microseconds: the same clock in every process."""
    return time.monotonic_ns() // 1000


def hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def presence_auth(socket_id: str, channel: str, channel_data: str) -> str:
    """``auth`` of a presence subscription (key:HMAC(socket_id:channel:data))."""
    sig = hmac_hex(APP_SECRET, f"{socket_id}:{channel}:{channel_data}")
    return f"{APP_KEY}:{sig}"


def signed_events_target(body: bytes, app_id: str = APP_ID) -> str:
    """Path and signed query of ``POST /apps/{id}/events`` for ``body``."""
    path = f"/apps/{app_id}/events"
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    query = (
        f"auth_key={APP_KEY}&auth_timestamp={int(time.time())}"
        f"&auth_version=1.0&body_md5={md5}"
    )
    sig = hmac_hex(APP_SECRET, f"POST\n{path}\n{query}")
    return f"{path}?{query}&auth_signature={sig}"


def reply(obj: dict[str, Any]) -> None:
    """Answer the parent: one JSON line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run(main: Any) -> None:
    """Run ``main()`` on uvloop when installed (as pbxws does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(main())
    else:
        uvloop.run(main())
