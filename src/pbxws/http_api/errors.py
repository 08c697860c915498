"""JSON error bodies for every failure of the HTTP side.

Every error answers ``{"error": "<what is wrong>", "code": <status>}`` (Soketi's
shape) with the real HTTP status, including aiohttp's own 404/405/413.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiohttp import web

from pbxws.adapters.base import AdapterUnavailable
from pbxws.protocol.errors import ApiError, RateLimited

__all__ = ["error_middleware", "json_error", "json_response"]

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode


def json_response(body: object, status: int = 200) -> web.Response:
    """A JSON response encoded with msgspec."""
    return web.Response(
        body=_encode(body), status=status, content_type="application/json"
    )


def json_error(status: int, message: str) -> web.Response:
    """The error body every route answers with."""
    return json_response({"error": message, "code": status}, status)


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(
    request: web.Request, handler: _Handler
) -> web.StreamResponse:
    """Turn refusals into JSON errors; nothing a request sends crashes the process."""
    try:
        return await handler(request)
    except ApiError as exc:
        log.info(
            "api_request_refused",
            app_id=request.match_info.get("app_id"),
            path=request.path,
            status=exc.code,
            reason=exc.message,
        )
        response = json_error(exc.code, exc.message)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
            response.headers["X-RateLimit-Limit"] = str(exc.limit)
            response.headers["X-RateLimit-Remaining"] = str(exc.remaining)
        return response
    except AdapterUnavailable as exc:
        log.error(
            "api_publish_unavailable",
            app_id=request.match_info.get("app_id"),
            path=request.path,
            reason=str(exc),
        )
        return json_error(503, f"{exc} Retry later.")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text or exc.reason
        if exc.status == 404:
            reason = f"No route for {request.method} {request.path}."
        elif exc.status == 413:
            reason = "The request body is larger than the server's max_request_size."
        return json_error(exc.status, reason)
