"""Checking an HTTP API signature: ``signatures.verify_api_request``."""

from __future__ import annotations

import hashlib
import hmac
import time

from _timer import bench

from pbxws.protocol.signatures import valid_auth, verify_api_request

KEY, SECRET = "app-key", "app-secret"
BODY = b'{"name":"bench","channel":"presence-pbx-1","data":"1732590000123456"}'


def signed_query(path: str, body: bytes) -> dict[str, str]:
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    q = {
        "auth_key": KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": md5,
    }
    to_sign = "POST\n" + path + "\n" + "&".join(f"{k}={q[k]}" for k in sorted(q))
    q["auth_signature"] = hmac.new(
        SECRET.encode(), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return q


def main() -> None:
    path = "/apps/1/events"
    query = signed_query(path, BODY)
    now = time.time()

    def verify() -> None:
        verify_api_request(
            key=KEY,
            secret=SECRET,
            method="POST",
            path=path,
            query=query,
            body=BODY,
            now=now,
            tolerance=600,
        )

    verify()  # a wrong signature would raise here, not time an error path
    bench("verify_api_request(POST /events, 70 B body)", verify)
    channel_data = '{"user_id":"42","user_info":{"name":"Ann"}}'
    message = f"1234.5678:presence-pbx-1:{channel_data}"
    sig = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    auth = f"{KEY}:{sig}"
    assert valid_auth(KEY, SECRET, auth, message)
    bench(
        "valid_auth(presence channel auth)",
        lambda: valid_auth(KEY, SECRET, auth, message),
    )


if __name__ == "__main__":
    main()
