"""Pusher error codes and the errors the pure core raises.

Hierarchy::

    PusherError                 carries a Pusher ``code`` and a human message
    ├── ConnectionRefused        close the socket with ``code`` (40xx/41xx/42xx)
    ├── SubscriptionRefused      answer ``pusher:subscription_error`` on the channel
    ├── ClientEventRejected      answer ``pusher:error`` (43xx); the socket stays open
    └── ApiError                 HTTP API: answer ``status`` with a JSON error body
        ├── AuthenticationFailed 401
        ├── PayloadTooLarge      413
        └── RateLimited          429, with Retry-After and X-RateLimit-* headers

Each error says what the caller must do next, as h11's ``error_status_hint``
does, so the I/O layers translate without interpreting messages.
"""

from __future__ import annotations

import enum

__all__ = [
    "ApiError",
    "AuthenticationFailed",
    "ClientEventRejected",
    "ConnectionRefused",
    "ErrorCode",
    "PayloadTooLarge",
    "PusherError",
    "RateLimited",
    "SubscriptionRefused",
]


class ErrorCode(enum.IntEnum):
    """Close and error codes from the Pusher protocol (reference §5)."""

    SSL_ONLY = 4000
    APP_NOT_FOUND = 4001
    APP_DISABLED = 4003
    OVER_CONNECTION_QUOTA = 4004
    PATH_NOT_FOUND = 4005
    INVALID_VERSION_FORMAT = 4006
    UNSUPPORTED_PROTOCOL = 4007
    NO_PROTOCOL_VERSION = 4008
    UNAUTHORIZED = 4009
    OVER_CAPACITY = 4100
    RECONNECT = 4200
    PONG_NOT_RECEIVED = 4201
    CLOSED_AFTER_INACTIVITY = 4202
    CLIENT_EVENT_REJECTED = 4301
    WATCHLIST_LIMIT = 4302


class PusherError(Exception):
    """Base class: a refusal with a Pusher code and a message for the peer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        # Pusher error code sent to the client (close code or pusher:error code).
        self.code = code
        # Human-readable reason, sent to the client as is.
        self.message = message


class ConnectionRefused(PusherError):
    """The connection must be closed: send ``pusher:error`` then close with ``code``."""


class SubscriptionRefused(PusherError):
    """The subscription fails: send ``pusher:subscription_error`` on the channel.

    ``kind`` is Soketi's ``type`` field (``AuthError``, ``LimitReached``, ...);
    ``code`` becomes its ``status`` (401 for bad signatures, 4009/4100/4301 for limits).
    """

    def __init__(self, code: int, message: str, kind: str) -> None:
        super().__init__(code, message)
        # Soketi's `type` field of the subscription_error payload.
        self.kind = kind


class ClientEventRejected(PusherError):
    """A client event is refused: answer ``pusher:error`` and keep the socket open."""


class ApiError(PusherError):
    """An HTTP API request is refused: answer ``code`` as the HTTP status."""


class AuthenticationFailed(ApiError):
    """Bad key, signature or timestamp: the route must answer 401 and do nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)


class PayloadTooLarge(ApiError):
    """A size or count limit was exceeded: the route must answer 413."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class RateLimited(ApiError):
    """The app used its per-second quota: answer 429 with the rate headers."""

    def __init__(
        self, message: str, *, limit: int, remaining: int, retry_after: int
    ) -> None:
        super().__init__(429, message)
        # For X-RateLimit-Limit, X-RateLimit-Remaining and Retry-After.
        self.limit = limit
        self.remaining = remaining
        self.retry_after = retry_after
