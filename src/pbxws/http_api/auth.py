"""Finding the app of an aiohttp API request and checking its signature."""

from __future__ import annotations

from aiohttp import web

from pbxws.apps import App
from pbxws.runtime import RUNTIME

from . import core
from .core import BACKEND_EVENTS, READ_REQUESTS

__all__ = ["BACKEND_EVENTS", "READ_REQUESTS", "authenticate", "check_rate"]


async def authenticate(request: web.Request) -> tuple[App, bytes]:
    """Return the app named in the path and the raw body, once verified.

    Raises:
        ApiError: 404 for an unknown app id, 403 for a disabled app, 401
            (``AuthenticationFailed``) for a bad key, signature or timestamp.
    """
    rt = request.app[RUNTIME]
    app = core.find_app(rt, request.match_info["app_id"])
    body = await request.read()
    core.verify(
        rt, app, request.method, request.path, dict(request.query.items()), body
    )
    return app, body


async def check_rate(request: web.Request, app: App, kind: str, points: int) -> None:
    """Take ``points`` of the app's ``kind`` quota (see :func:`core.consume`)."""
    await core.consume(request.app[RUNTIME], app, kind, points)
