"""Webhook events and requests as bytes: what Pusher's receivers expect.

Pure functions, no I/O. A request body is ``{"time_ms": ..., "events": [...]}``
(reference §15), signed with ``X-Pusher-Signature``, the hex HMAC-SHA256 of
the exact body bytes under the app secret, next to ``X-Pusher-Key``.

Every event carries one field Pusher does not send, ``id``: a string unique
across the cluster and fixed when the event is created, so that a receiver
can drop the copies that at-least-once delivery may bring (a retry after a
lost answer, a delivery taken over from a dead node). The official SDKs
ignore unknown fields. Because a delivery may be retried for minutes and the
SDKs refuse a ``time_ms`` more than five minutes away from their clock,
``time_ms`` is the time of each attempt (the body is signed again each time);
the ``id`` is what identifies an event.

Events are encoded once, when created; a body is their concatenation, so the
bytes signed are the bytes stored and sent.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import msgspec

from pbxws.config import AppConfig, WebhookConfig

__all__ = [
    "DOWN",
    "MAX_BATCH",
    "UP",
    "Endpoint",
    "EventIds",
    "Rule",
    "app_endpoints",
    "body",
    "cache_miss",
    "client_event",
    "request_headers",
    "safe_url",
    "signature",
    "subscription_count",
    "targets",
    "transition",
]

#: Most events in one request; a longer backlog goes out in several.
MAX_BATCH: Final = 100

#: Event names of an up transition and of its down counterpart, per level.
UP: Final = {False: "channel_occupied", True: "member_added"}
DOWN: Final = {False: "channel_vacated", True: "member_removed"}

# Header names set by us, which an endpoint's own headers can't replace.
_PUSHER_HEADERS: Final = frozenset({"x-pusher-key", "x-pusher-signature"})
_NULL: Final = msgspec.Raw(b"null")


class _Event(msgspec.Struct, omit_defaults=True):
    """One webhook event in Pusher's shape, plus our ``id``."""

    name: str
    channel: str
    event: str | None = None
    data: msgspec.Raw | None = None
    socket_id: str | None = None
    user_id: str | None = None
    subscription_count: int | None = None
    id: str = ""


_encoder: Final = msgspec.json.Encoder()


class EventIds:
    """Makes event ids: ``<node>-<n>``, unique across a cluster.

    ``node`` is the node's random socket-id prefix; ``n`` counts from 1.
    """

    def __init__(self, node: str) -> None:
        self._node = node
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A fresh id."""
        return f"{self._node}-{next(self._counter)}"


def transition(name: str, channel: str, user_id: str, event_id: str) -> bytes:
    """A transition event: a channel's (``user_id`` "") or a presence member's."""
    return _encoder.encode(_Event(name, channel, user_id=user_id or None, id=event_id))


def client_event(
    channel: str,
    event: str,
    data: msgspec.Raw,
    socket_id: str,
    user_id: str | None,
    event_id: str,
) -> bytes:
    """``client_event``: ``data`` as the client wrote it; ``user_id`` on presence."""
    return _encoder.encode(
        _Event(
            "client_event",
            channel,
            event=event,
            data=data or _NULL,
            socket_id=socket_id,
            user_id=user_id,
            id=event_id,
        )
    )


def cache_miss(channel: str, event_id: str) -> bytes:
    """``cache_miss``: a client subscribed to a cache channel with nothing cached."""
    return _encoder.encode(_Event("cache_miss", channel, id=event_id))


def subscription_count(channel: str, count: int, event_id: str) -> bytes:
    """``subscription_count``: the channel's cluster-wide count changed."""
    return _encoder.encode(
        _Event("subscription_count", channel, subscription_count=count, id=event_id)
    )


def body(time_ms: int, events: Sequence[bytes]) -> bytes:
    """The request body: the events, already encoded, joined without re-encoding."""
    return b'{"time_ms":%d,"events":[%b]}' % (time_ms, b",".join(events))


def signature(secret: str, payload: bytes) -> str:
    """``X-Pusher-Signature``: hex HMAC-SHA256 of ``payload`` under ``secret``."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def request_headers(
    key: str, secret: str, payload: bytes, custom: Mapping[str, str]
) -> dict[str, str]:
    """Headers of one request: the endpoint's own, then ours, which win."""
    headers = {k: v for k, v in custom.items() if k.lower() not in _PUSHER_HEADERS}
    headers["Content-Type"] = "application/json"
    headers["X-Pusher-Key"] = key
    headers["X-Pusher-Signature"] = signature(secret, payload)
    return headers


class Rule(msgspec.Struct, frozen=True):
    """What one configured webhook wants: event names, channel conditions (AND)."""

    event_types: frozenset[str]
    starts_with: str | None = None
    ends_with: str | None = None

    def wants(self, name: str, channel: str) -> bool:
        """Whether event ``name`` on ``channel`` passes this rule."""
        return (
            name in self.event_types
            and (self.starts_with is None or channel.startswith(self.starts_with))
            and (self.ends_with is None or channel.endswith(self.ends_with))
        )


class Endpoint(msgspec.Struct, frozen=True):
    """One webhook URL of an app: its headers and the rules of its webhooks."""

    url: str
    headers: dict[str, str]
    rules: tuple[Rule, ...]

    def wants(self, name: str, channel: str) -> bool:
        """Whether event ``name`` on ``channel`` goes to this URL."""
        return any(rule.wants(name, channel) for rule in self.rules)


def _rule(hook: WebhookConfig) -> Rule:
    flt = hook.filter
    return Rule(
        event_types=frozenset(hook.event_types),
        starts_with=None if flt is None else flt.channel_name_starts_with,
        ends_with=None if flt is None else flt.channel_name_ends_with,
    )


def app_endpoints(app: AppConfig) -> dict[str, Endpoint]:
    """An app's endpoints by URL.

    Several webhooks with one URL are merged: the URL gets every event any of
    them wants, once, with the first one's headers. Deliveries are queued by
    URL, so a configuration that reorders its webhooks keeps its queues.
    """
    merged: dict[str, Endpoint] = {}
    for hook in app.webhooks:
        first = merged.get(hook.url)
        if first is None:
            merged[hook.url] = Endpoint(hook.url, dict(hook.headers), (_rule(hook),))
        else:
            merged[hook.url] = Endpoint(
                hook.url, first.headers, (*first.rules, _rule(hook))
            )
    return merged


def targets(endpoints: Iterable[Endpoint], name: str, channel: str) -> tuple[str, ...]:
    """URLs of the endpoints that want event ``name`` on ``channel``."""
    return tuple(e.url for e in endpoints if e.wants(name, channel))


def safe_url(url: str) -> str:
    """``url`` without user name and password, for logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
