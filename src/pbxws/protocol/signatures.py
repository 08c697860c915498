"""HMAC signatures: channel auth, user sign-in and HTTP API requests.

All signatures are lower-case hex HMAC-SHA256 with the app secret and are
compared with :func:`hmac.compare_digest`. Strings to sign use the exact bytes
the client sent (``channel_data`` and ``user_data`` are never re-serialised).
"""

from __future__ import annotations

import functools
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


# HMAC (RFC 2104) over SHA-256: the key padded to the block size, XORed with
# these bytes, starts the inner and the outer hash.
_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


@functools.lru_cache(maxsize=256)
def _keyed(secret: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after the inner and the outer padded key of ``secret``."""
    key = secret.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def sign(secret: str, message: str) -> str:
    """Return the hex HMAC-SHA256 of ``message`` keyed with ``secret``.

    The same as ``hmac.new(secret, message, sha256).hexdigest()``, at less
    than half the cost: the hash states after the padded key are computed once
    per secret and copied, where ``hmac`` sets up OpenSSL's HMAC each time
    (1.4 µs against 0.5 µs here; one per API request and per private subscribe).
    """
    inner, outer = _keyed(secret)
    h = inner.copy()
    h.update(message.encode())
    o = outer.copy()
    o.update(h.digest())
    return o.hexdigest()


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


# The parameters of a signed POST, as all SDKs send them (in sorted order,
# auth_signature aside).
_SDK_POST_QUERY = frozenset(
    ("auth_key", "auth_signature", "auth_timestamp", "auth_version", "body_md5")
)


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
    if query.keys() == _SDK_POST_QUERY:  # every SDK's publish: skip the sort
        get = query.__getitem__
        return (
            f"{method.upper()}\n{path}\nauth_key={get('auth_key')}"
            f"&auth_timestamp={get('auth_timestamp')}"
            f"&auth_version={get('auth_version')}&body_md5={body_md5(body)}"
        )
    params = {k.lower(): v for k, v in query.items()}
    params.pop("auth_signature", None)
    sent_md5 = params.pop("body_md5", None)
    if body or sent_md5 is not None:
        params["body_md5"] = body_md5(body)
    query_string = "&".join([f"{k}={v}" for k, v in sorted(params.items())])
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
