"""Counting HTTP API calls for the metrics, once per request, after the answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from pbxws.runtime import RUNTIME

__all__ = ["metrics_middleware"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: _Handler
) -> web.StreamResponse:
    """Count ``/apps/{app_id}/...`` calls: bytes in and out, refusals by status.

    Placed outside :func:`~pbxws.http_api.errors.error_middleware`, so that it
    sees the JSON error answers too. Calls naming an unknown app are counted as
    refusals of app ``""`` only: ids sent by clients never create series.
    """
    response = await handler(request)
    app_id = request.match_info.get("app_id")
    if app_id is None:
        return response
    rt = request.app[RUNTIME]
    stats = rt.metrics.app(app_id)
    if app_id in rt.apps.by_id:
        stats.http_call(request.content_length or 0, response.content_length or 0)
    if response.status >= 400:
        stats.rejected("http", response.status)
    return response
