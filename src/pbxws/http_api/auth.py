"""Finding the app of an API request and checking its signature."""

from __future__ import annotations

import time

from aiohttp import web

from pbxws.apps import App
from pbxws.protocol.errors import ApiError, RateLimited
from pbxws.protocol.signatures import verify_api_request
from pbxws.runtime import RUNTIME

__all__ = ["authenticate", "check_rate"]


async def authenticate(request: web.Request) -> tuple[App, bytes]:
    """Return the app named in the path and the raw body, once verified.

    Raises:
        ApiError: 404 for an unknown app id, 403 for a disabled app, 401
            (``AuthenticationFailed``) for a bad key, signature or timestamp.
    """
    rt = request.app[RUNTIME]
    app_id = request.match_info["app_id"]
    app = rt.apps.by_id.get(app_id)
    if app is None:
        raise ApiError(404, f"The app {app_id[:64]} could not be found.")
    body = await request.read()
    prefix = rt.config.server.path_prefix
    path = request.path[len(prefix) :] if prefix else request.path
    verify_api_request(
        key=app.key,
        secret=app.secret,
        method=request.method,
        path=path,
        query=dict(request.query.items()),
        body=body,
        now=time.time(),
        tolerance=rt.config.server.api_timestamp_tolerance,
    )
    if not app.enabled:
        raise ApiError(403, f"The app {app.id} is disabled.")
    return app, body


async def check_rate(request: web.Request, app: App, kind: str, points: int) -> None:
    """Consume ``points`` of the app's ``kind`` quota (a limit below 0 is none).

    Raises:
        RateLimited: If the quota of this second is used up; then the route
            must answer 429 and do nothing.
    """
    limit = (
        app.max_backend_events_per_sec
        if kind == BACKEND_EVENTS
        else app.max_read_req_per_sec
    )
    if limit < 0:
        return
    decision = await request.app[RUNTIME].adapter.rate_limit(
        app.id, kind, points, limit
    )
    if not decision.allowed:
        request.app[RUNTIME].metrics.app(app.id).limited(kind)
        raise RateLimited(
            f"Too many requests: app {app.id} may use {limit} {kind.replace('_', ' ')} "
            "per second.",
            limit=limit,
            remaining=decision.remaining,
            retry_after=decision.retry_after,
        )


# Quota kinds, as Soketi names its limiter keys.
BACKEND_EVENTS = "backend_events"
READ_REQUESTS = "read_requests"
