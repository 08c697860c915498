"""HMAC signatures: channel auth, user sign-in and HTTP API requests.

All signatures are lower-case hex HMAC-SHA256 with the app secret and are
compared with :func:`hmac.compare_digest`. Strings to sign use the exact bytes
the client sent (``channel_data`` and ``user_data`` are never re-serialised).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from .errors import AuthenticationFailed

__all__ = [
    "api_string_to_sign",
    "body_md5",
    "sign",
    "valid_auth",
    "verify_api_request",
]


def sign(secret: str, message: str) -> str:
    """Return the hex HMAC-SHA256 of ``message`` keyed with ``secret``."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def valid_auth(key: str, secret: str, auth: str, message: str) -> bool:
    """Check an ``auth`` field ``"<key>:<hex>"`` against ``message``.

    ``message`` is ``socket_id:channel`` (private), ``socket_id:channel:channel_data``
    (presence) or ``socket_id::user::user_data`` (sign-in). The key part must be
    the app's key; both parts are compared in constant time.
    """
    given_key, sep, given_sig = auth.partition(":")
    if not sep:
        return False
    expected = sign(secret, message)
    key_ok = hmac.compare_digest(given_key.encode(), key.encode())
    sig_ok = hmac.compare_digest(given_sig.encode(), expected.encode())
    return key_ok and sig_ok


def body_md5(body: bytes) -> str:
    """Hex MD5 of a request body, the protocol checksum (not a security hash)."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def api_string_to_sign(
    method: str, path: str, query: Mapping[str, str], body: bytes
) -> str:
    """Build the string an HTTP API client signed.

    Keys are lower-cased and sorted, values are not URL-escaped,
    ``auth_signature`` is left out. Any ``body_md5`` the client sent is replaced
    by the MD5 of the body we received, and added when the body is non-empty:
    this verifies the body and accepts both SDK styles (PHP adds it on every
    POST, Python also on GET with an empty body).
    """
    params = {
        k.lower(): v for k, v in query.items() if k.lower() not in ("auth_signature",)
    }
    sent_md5 = params.pop("body_md5", None)
    if body or sent_md5 is not None:
        params["body_md5"] = body_md5(body)
    query_string = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{method.upper()}\n{path}\n{query_string}"


def verify_api_request(
    *,
    key: str,
    secret: str,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float,
) -> None:
    """Check the signature of a Pusher HTTP API request.

    ``path`` is the path the client signed: the server's path prefix removed.

    Raises:
        AuthenticationFailed: If ``auth_key`` is not the app's key, the
            signature doesn't match, or ``auth_timestamp`` is further than
            ``tolerance`` seconds from ``now``; then the route must answer 401
            and do nothing else.
    """
    auth_key = query.get("auth_key")
    signature = query.get("auth_signature")
    timestamp = query.get("auth_timestamp")
    if auth_key is None or signature is None or timestamp is None:
        raise AuthenticationFailed(
            "Missing auth_key, auth_timestamp or auth_signature query parameter."
        )
    if not hmac.compare_digest(auth_key.encode(), key.encode()):
        raise AuthenticationFailed("The auth_key does not belong to this app.")
    try:
        ts = int(timestamp)
        skew = abs(now - ts)  # OverflowError for an absurdly large integer
    except (ValueError, OverflowError):
        raise AuthenticationFailed("auth_timestamp is not an integer.") from None
    if skew > tolerance:
        raise AuthenticationFailed(
            f"auth_timestamp {ts} is more than {int(tolerance)} s away from the "
            f"server time {int(now)}; check the clock of the client."
        )
    expected = sign(secret, api_string_to_sign(method, path, query, body))
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise AuthenticationFailed(
            "Invalid signature: the secret authentication failed."
        )
