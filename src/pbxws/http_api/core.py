"""The HTTP API's decisions, independent of the HTTP library serving them.

The aiohttp routes (:mod:`pbxws.http_api.routes`) and the lean publish path
(:mod:`pbxws.http_api.fast`) both call these: find the app, verify the
signature, take the rate-limit points, publish and build the answer. Refusals
are :class:`~pbxws.protocol.errors.ApiError` carrying the HTTP status.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from pbxws.apps import App
from pbxws.protocol.api import Trigger, decode_batch, decode_trigger
from pbxws.protocol.errors import ApiError, RateLimited
from pbxws.protocol.frames import text_frame
from pbxws.protocol.messages import channel_event
from pbxws.protocol.names import ChannelKind, channel_kind, is_cache_channel
from pbxws.protocol.signatures import verify_api_request
from pbxws.runtime import Runtime

__all__ = [
    "BACKEND_EVENTS",
    "READ_REQUESTS",
    "batch_events",
    "channel_attributes",
    "consume",
    "events",
    "find_app",
    "publish",
    "verify",
]

# Quota kinds, as Soketi names its limiter keys.
BACKEND_EVENTS: Final = "backend_events"
READ_REQUESTS: Final = "read_requests"


def find_app(rt: Runtime, app_id: str) -> App:
    """The app of ``/apps/{app_id}/...``.

    Raises:
        ApiError: 404 for an unknown app id.
    """
    app = rt.apps.by_id.get(app_id)
    if app is None:
        raise ApiError(404, f"The app {app_id[:64]} could not be found.")
    return app


def verify(
    rt: Runtime,
    app: App,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
) -> None:
    """Check the request's signature; ``path`` still has the server's prefix.

    Raises:
        AuthenticationFailed: 401 for a bad key, signature or timestamp.
        ApiError: 403 for a disabled app (checked after the signature, so an
            unsigned request learns nothing about the app).
    """
    prefix = rt.config.server.path_prefix
    verify_api_request(
        key=app.key,
        secret=app.secret,
        method=method,
        path=path[len(prefix) :] if prefix else path,
        query=query,
        body=body,
        now=time.time(),
        tolerance=rt.config.server.api_timestamp_tolerance,
    )
    if not app.enabled:
        raise ApiError(403, f"The app {app.id} is disabled.")


async def consume(rt: Runtime, app: App, kind: str, points: int) -> None:
    """Take ``points`` of the app's ``kind`` quota (a limit below 0 is none).

    Raises:
        RateLimited: If the quota of this second is used up; then answer 429
            and do nothing.
    """
    limit = (
        app.max_backend_events_per_sec
        if kind == BACKEND_EVENTS
        else app.max_read_req_per_sec
    )
    if limit < 0:
        return
    decision = await rt.adapter.rate_limit(app.id, kind, points, limit)
    if not decision.allowed:
        rt.metrics.app(app.id).limited(kind)
        raise RateLimited(
            f"Too many requests: app {app.id} may use {limit} "
            f"{kind.replace('_', ' ')} per second.",
            limit=limit,
            remaining=decision.remaining,
            retry_after=decision.retry_after,
        )


async def publish(rt: Runtime, app: App, trigger: Trigger, started: float) -> None:
    """Frame the event once per channel and hand it to the adapter.

    ``started`` is when the request arrived (``time.perf_counter()``), for the
    publish-to-write latency.
    """
    adapter = rt.adapter
    stats = rt.metrics.app(app.id)
    for channel in trigger.channels:
        frame = text_frame(channel_event(trigger.name, channel, trigger.data))
        sent = await adapter.publish(app.id, channel, frame, trigger.socket_id)
        stats.published(sent, len(frame), started)
        if is_cache_channel(channel):
            await adapter.cache_put(
                app.id,
                channel,
                trigger.name,
                trigger.data,
                app.limits.channel_cache_ttl,
            )


async def channel_attributes(
    rt: Runtime, app: App, channel: str, info: frozenset[str]
) -> dict[str, int]:
    """The ``info`` attributes asked for one channel."""
    attributes: dict[str, int] = {}
    if not info:
        return attributes
    counts = await rt.adapter.channel(app.id, channel)
    if "user_count" in info and channel_kind(channel) is ChannelKind.PRESENCE:
        attributes["user_count"] = counts.user_count
    if "subscription_count" in info:
        attributes["subscription_count"] = counts.subscription_count
    return attributes


async def events(rt: Runtime, app: App, body: bytes, started: float) -> dict[str, Any]:
    """``POST /apps/{id}/events``: decode, count, publish; the answer's body."""
    trigger = decode_trigger(body, app.limits)
    await consume(rt, app, BACKEND_EVENTS, len(trigger.channels))
    await publish(rt, app, trigger, started)
    if not trigger.info:
        return {}
    return {
        "channels": {
            ch: await channel_attributes(rt, app, ch, trigger.info)
            for ch in trigger.channels
        }
    }


async def batch_events(
    rt: Runtime, app: App, body: bytes, started: float
) -> dict[str, Any]:
    """``POST /apps/{id}/batch_events``: the same for up to N events."""
    triggers = decode_batch(body, app.limits)
    await consume(rt, app, BACKEND_EVENTS, sum(len(t.channels) for t in triggers))
    for trigger in triggers:
        await publish(rt, app, trigger, started)
    if not any(t.info for t in triggers):
        return {}
    return {
        "batch": [
            await channel_attributes(rt, app, t.channels[0], t.info) for t in triggers
        ]
    }
