"""Pusher HTTP API routes (reference §14) and the main port's health routes."""

from __future__ import annotations

import time

from aiohttp import web

from pbxws.protocol.api import parse_info
from pbxws.protocol.errors import ApiError
from pbxws.protocol.names import ChannelKind, channel_kind, is_cache_channel
from pbxws.runtime import RUNTIME

from . import core
from .auth import READ_REQUESTS, authenticate, check_rate
from .errors import json_response

__all__ = ["add_routes"]

_OK_TEXT = "OK"


async def trigger_event(request: web.Request) -> web.Response:
    """POST /apps/{app_id}/events: publish one event to up to N channels."""
    started = time.perf_counter()
    app, body = await authenticate(request)
    return json_response(await core.events(request.app[RUNTIME], app, body, started))


async def trigger_batch(request: web.Request) -> web.Response:
    """POST /apps/{app_id}/batch_events: publish up to N events."""
    started = time.perf_counter()
    app, body = await authenticate(request)
    answer = await core.batch_events(request.app[RUNTIME], app, body, started)
    return json_response(answer)


async def list_channels(request: web.Request) -> web.Response:
    """GET /apps/{app_id}/channels: occupied channels, optionally by prefix."""
    rt = request.app[RUNTIME]
    app, _ = await authenticate(request)
    await check_rate(request, app, READ_REQUESTS, 1)
    prefix = request.query.get("filter_by_prefix", "")
    info = parse_info(request.query.get("info"))
    _check_info(info, {"user_count", "subscription_count"})
    if "user_count" in info and not prefix.startswith("presence-"):
        raise ApiError(
            400, "info=user_count needs filter_by_prefix starting with presence-."
        )
    channels = await rt.adapter.channels(app.id, prefix)
    body: dict[str, dict[str, int]] = {}
    for name, counts in channels.items():
        attributes: dict[str, int] = {}
        if "user_count" in info:
            attributes["user_count"] = counts.user_count
        if "subscription_count" in info:
            attributes["subscription_count"] = counts.subscription_count
        body[name] = attributes
    return json_response({"channels": body})


def _check_info(info: frozenset[str], allowed: set[str]) -> None:
    unknown = info - allowed
    if unknown:
        raise ApiError(400, f"Unknown info attributes: {', '.join(sorted(unknown))}.")


async def channel_info(request: web.Request) -> web.Response:
    """GET /apps/{app_id}/channels/{channel}: occupancy and requested counts."""
    rt = request.app[RUNTIME]
    app, _ = await authenticate(request)
    await check_rate(request, app, READ_REQUESTS, 1)
    channel = request.match_info["channel"]
    info = parse_info(request.query.get("info"))
    _check_info(info, {"user_count", "subscription_count", "cache"})
    presence = channel_kind(channel) is ChannelKind.PRESENCE
    if "user_count" in info and not presence:
        raise ApiError(400, "info=user_count is only available on presence channels.")
    if "cache" in info and not is_cache_channel(channel):
        raise ApiError(400, "info=cache is only available on cache channels.")
    counts = await rt.adapter.channel(app.id, channel)
    body: dict[str, object] = {"occupied": counts.subscription_count > 0}
    if "user_count" in info:
        body["user_count"] = counts.user_count
    if "subscription_count" in info:
        body["subscription_count"] = counts.subscription_count
    if "cache" in info:
        cached = await rt.adapter.cache_get(app.id, channel)
        if cached is not None:
            ttl = max(0, round(cached.expires_at - time.monotonic()))
            body["cache"] = {"data": cached.data, "ttl": ttl}
    return json_response(body)


async def channel_users(request: web.Request) -> web.Response:
    """GET /apps/{app_id}/channels/{channel}/users: presence members."""
    rt = request.app[RUNTIME]
    app, _ = await authenticate(request)
    await check_rate(request, app, READ_REQUESTS, 1)
    channel = request.match_info["channel"]
    if channel_kind(channel) is not ChannelKind.PRESENCE:
        raise ApiError(400, "Users can only be listed for presence channels.")
    members = await rt.adapter.members(app.id, channel)
    return json_response({"users": [{"id": user_id} for user_id in members]})


async def terminate_connections(request: web.Request) -> web.Response:
    """POST /apps/{app_id}/users/{user_id}/terminate_connections."""
    rt = request.app[RUNTIME]
    app, _ = await authenticate(request)
    await rt.adapter.terminate_user(app.id, request.match_info["user_id"])
    return json_response({})


async def root(request: web.Request) -> web.Response:
    """GET /: the server is up."""
    return web.Response(text=_OK_TEXT)


async def ready(request: web.Request) -> web.Response:
    """GET /ready: 200 while accepting connections, 503 while starting or draining."""
    if request.app[RUNTIME].accepting:
        return web.Response(text=_OK_TEXT)
    return json_response(
        {"error": "The server is not accepting traffic.", "code": 503}, 503
    )


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    """Register the HTTP API and health routes under ``prefix``."""
    apps = f"{prefix}/apps/{{app_id}}"
    router.add_get(f"{prefix}/", root)
    router.add_get(f"{prefix}/ready", ready)
    router.add_post(f"{apps}/events", trigger_event)
    router.add_post(f"{apps}/batch_events", trigger_batch)
    router.add_get(f"{apps}/channels", list_channels)
    router.add_get(f"{apps}/channels/{{channel}}", channel_info)
    router.add_get(f"{apps}/channels/{{channel}}/users", channel_users)
    router.add_post(
        f"{apps}/users/{{user_id}}/terminate_connections", terminate_connections
    )
