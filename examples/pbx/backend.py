#!/usr/bin/env python3
"""The PBX example's backend: plays the Laravel app's role, in aiohttp.

What a Laravel PBX does around Soketi, this does around pbxws:

* ``POST /broadcasting/auth`` and ``POST /broadcasting/user-auth``: Laravel's
  broadcasting routes, same request and response shapes (form-encoded or JSON
  ``socket_id`` + ``channel_name``; JSON ``{"auth": ..., "channel_data": ...}`` and
  ``{"auth": ..., "user_data": ...}``; 403 when the channel callback says no). The
  channel callbacks are those of the app's ``routes/channels.php``:
  ``org.{organizationId}`` (presence, members of that organization only),
  ``user.{userId}`` and ``extension.{extensionId}`` (private).
* A call store (the ``CallLog`` model) and the PBX's webhooks that change it; each
  change is broadcast as ``CallInitiated`` / ``CallAnswered`` / ``CallEnded`` through
  the official ``pusher`` SDK, from one worker thread in order, as Laravel's
  ``pusher`` broadcast driver and a queue worker would.
* ``GET /api/v1/websocket/health``: asks pbxws through the SDK.
* A demo login (pick a user, get a session cookie and a bearer token) and the
  dashboard page, which loads laravel-echo and pusher-js from ``node_modules``.

Configuration is the Laravel app's ``.env`` names: ``PUSHER_APP_ID`` (digits: the
Python SDK refuses other ids), ``PUSHER_APP_KEY``, ``PUSHER_APP_SECRET``,
``PUSHER_HOST``, ``PUSHER_PORT``, ``PUSHER_SCHEME``; ``VITE_WS_HOST`` /
``VITE_WS_PORT`` for the browser (default: the page's host, ``PUSHER_PORT``).

Run: ``python examples/pbx/backend.py --port 8000``; it prints one JSON line
``{"event": "backend_started", "port": N, ...}`` when it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pusher
from aiohttp import web
from pusher.http import Request as PusherRequest

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
NODE_MODULES = HERE / "node_modules"
VENDOR = {
    # URL prefix -> directory, the files a Vite build would bundle.
    "/vendor/laravel-echo": NODE_MODULES / "laravel-echo" / "dist",
    "/vendor/pusher-js": NODE_MODULES / "pusher-js" / "dist" / "web",
}
SESSION_COOKIE = "pbx_session"


def log(event: str, /, **fields: Any) -> None:
    """One JSON line on stdout (run.py and the tests read them)."""
    print(json.dumps({"event": event, "ts": time.time(), **fields}), flush=True)


def iso8601(moment: datetime) -> str:
    """Carbon's ``toIso8601String()``: ``2024-01-01T12:00:00+00:00``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def zulu(moment: datetime) -> str:
    """The health endpoint's timestamp format: ``2024-01-01T12:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    app_id: str
    key: str
    secret: str
    host: str
    port: int
    scheme: str
    ws_host: str  # "" = the host the browser loaded the page from
    ws_port: int
    session_secret: bytes

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        port = int(env.get("PUSHER_PORT", "6001"))
        return cls(
            app_id=env.get("PUSHER_APP_ID", "1"),
            key=env.get("PUSHER_APP_KEY", "pbxappkey"),
            secret=env.get("PUSHER_APP_SECRET", "pbxappsecret"),
            host=env.get("PUSHER_HOST", "127.0.0.1"),
            port=port,
            scheme=env.get("PUSHER_SCHEME", "http"),
            ws_host=env.get("VITE_WS_HOST", ""),
            ws_port=int(env.get("VITE_WS_PORT", str(port))),
            session_secret=(
                env["PBX_SESSION_SECRET"].encode()
                if env.get("PBX_SESSION_SECRET")
                else secrets.token_bytes(32)
            ),
        )

    def terminate_user_connections(self, client: pusher.Pusher, user_id: str) -> None:
        """``POST /apps/{app_id}/users/{user_id}/terminate_connections``, signed.

        pusher 3.3.4's ``terminate_user_connections()`` posts to
        ``/users/{user_id}/terminate_connections``, without ``/apps/{app_id}`` (a 404
        from Pusher, Soketi and pbxws alike), so the request is built here and sent
        with the SDK's own signing and transport.
        """
        inner = client._pusher_client
        path = f"/apps/{self.app_id}/users/{user_id}/terminate_connections"
        inner.http.send_request(PusherRequest(inner, "POST", path, {}))

    def pusher_client(self) -> pusher.Pusher:
        return pusher.Pusher(
            app_id=self.app_id,
            key=self.key,
            secret=self.secret,
            host=self.host,
            port=self.port,
            ssl=self.scheme == "https",
            timeout=5,
        )


# ---------------------------------------------------------------- directory
@dataclass(frozen=True)
class User:
    id: int
    organization_id: int
    name: str
    email: str
    role: str
    extension_id: str

    def member_info(self) -> dict[str, Any]:
        """What the ``org.{id}`` channel callback returns: presence ``user_info``."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "role": self.role,
        }


@dataclass(frozen=True)
class Directory:
    """Organizations, users, extensions and DIDs (the app's database)."""

    organizations: dict[int, dict[str, Any]]
    users: dict[int, User]

    @classmethod
    def load(cls, path: Path = HERE / "directory.json") -> Directory:
        raw = json.loads(path.read_text())
        return cls(
            organizations={o["id"]: o for o in raw["organizations"]},
            users={u["id"]: User(**u) for u in raw["users"]},
        )

    def extension_owner(self, extension_id: str) -> User | None:
        return next(
            (u for u in self.users.values() if u.extension_id == extension_id), None
        )

    def members(self, organization_id: int) -> list[User]:
        return [u for u in self.users.values() if u.organization_id == organization_id]


# ---------------------------------------------------------------- routes/channels.php
ChannelCallback = Callable[[User, str], "dict[str, Any] | bool"]


def _org_channel(user: User, organization_id: str) -> dict[str, Any] | bool:
    # Broadcast::channel('org.{organizationId}', fn ($user, $organizationId) =>
    #     (int) $user->organization_id === (int) $organizationId
    #         ? ['id' => ..., 'name' => ..., 'email' => ..., 'role' => ...] : false);
    if str(user.organization_id) == organization_id:
        return user.member_info()
    return False


def _user_channel(user: User, user_id: str) -> bool:
    # Broadcast::channel('user.{userId}', fn ($user, $userId) =>
    #     (int) $user->id === (int) $userId);
    return str(user.id) == user_id


def _extension_channel(directory: Directory) -> ChannelCallback:
    # Broadcast::channel('extension.{extensionId}', fn ($user, $extensionId) =>
    #     Extension::find($extensionId)?->organization_id === $user->organization_id);
    def callback(user: User, extension_id: str) -> bool:
        owner = directory.extension_owner(extension_id)
        return owner is not None and owner.organization_id == user.organization_id

    return callback


def channel_routes(
    directory: Directory,
) -> list[tuple[re.Pattern[str], ChannelCallback]]:
    """The patterns of ``routes/channels.php``, matched like Laravel matches them."""
    return [
        (re.compile(r"org\.([^.]+)"), _org_channel),
        (re.compile(r"user\.([^.]+)"), _user_channel),
        (re.compile(r"extension\.([^.]+)"), _extension_channel(directory)),
    ]


def normalize_channel_name(channel: str) -> str:
    """Laravel's ``normalizeChannelName``: drop ``private-`` / ``presence-``."""
    for prefix in ("private-encrypted-", "private-", "presence-"):
        if channel.startswith(prefix):
            return channel[len(prefix) :]
    return channel


# ---------------------------------------------------------------- calls
ACTIVE = ("initiated", "answered")


@dataclass
class Call:
    """One row of the ``call_logs`` table."""

    call_id: str
    organization_id: int
    from_number: str
    to_number: str
    did_id: str | None
    status: str = "initiated"
    initiated_at: str = ""
    answered_at: str | None = None
    extension_id: str | None = None
    ended_at: str | None = None
    duration: int | None = None
    _answered: datetime | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass(frozen=True)
class BroadcastEvent:
    """A Laravel ``ShouldBroadcast`` event: broadcastAs, broadcastOn, broadcastWith."""

    broadcast_as: str
    broadcast_on: list[str]
    broadcast_with: dict[str, Any]


def call_initiated(call: Call) -> BroadcastEvent:
    """``App\\Events\\CallInitiated`` (``broadcastAs`` ``call.initiated``)."""
    return BroadcastEvent(
        "call.initiated",
        [f"presence-org.{call.organization_id}"],
        {
            "call_id": call.call_id,
            "from_number": call.from_number,
            "to_number": call.to_number,
            "did_id": call.did_id,
            "status": call.status,
            "initiated_at": call.initiated_at,
        },
    )


def call_answered(call: Call) -> BroadcastEvent:
    """``App\\Events\\CallAnswered``: the organization and the answering extension."""
    return BroadcastEvent(
        "call.answered",
        [
            f"presence-org.{call.organization_id}",
            f"private-extension.{call.extension_id}",
        ],
        {
            "call_id": call.call_id,
            "status": call.status,
            "answered_at": call.answered_at,
            "extension_id": call.extension_id,
        },
    )


def call_ended(call: Call) -> BroadcastEvent:
    """``App\\Events\\CallEnded``."""
    return BroadcastEvent(
        "call.ended",
        [f"presence-org.{call.organization_id}"],
        {
            "call_id": call.call_id,
            "status": call.status,
            "ended_at": call.ended_at,
            "duration": call.duration,
        },
    )


class Broadcaster:
    """Laravel's ``pusher`` broadcast driver behind a one-worker queue.

    Events go out one at a time, in the order they were broadcast, from a thread of
    their own (the SDK is synchronous, like pusher-php-server).
    """

    def __init__(self, settings: Settings) -> None:
        self._client = settings.pusher_client()
        self._queue = ThreadPoolExecutor(1, thread_name_prefix="broadcast")

    def _send(self, event: BroadcastEvent, queued_at: float) -> dict[str, Any]:
        published_at = time.time()
        outcome: dict[str, Any] = {
            "name": event.broadcast_as,
            "channels": event.broadcast_on,
            "queued_at": queued_at,
            "published_at": published_at,  # the moment the SDK was called
        }
        try:
            self._client.trigger(
                event.broadcast_on, event.broadcast_as, event.broadcast_with
            )
        except Exception as exc:  # a queued job would be retried; we log and go on
            outcome.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
        else:
            outcome["ok"] = True
        outcome["acknowledged_at"] = time.time()
        return outcome

    async def broadcast(self, event: BroadcastEvent) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            self._queue, self._send, event, time.time()
        )
        if not outcome["ok"]:
            log("broadcast_failed", **outcome)
        return outcome

    def close(self) -> None:
        self._queue.shutdown(wait=False, cancel_futures=True)


class CallStore:
    """Active calls per organization, and the last few that ended."""

    def __init__(self) -> None:
        self.active: dict[str, Call] = {}
        self.recent: dict[int, deque[Call]] = {}

    def for_org(self, organization_id: int) -> dict[str, list[dict[str, Any]]]:
        return {
            "active": [
                c.public()
                for c in self.active.values()
                if c.organization_id == organization_id
            ],
            "recent": [c.public() for c in self.recent.get(organization_id, ())],
        }

    def end(self, call: Call) -> None:
        self.active.pop(call.call_id, None)
        self.recent.setdefault(call.organization_id, deque(maxlen=10)).appendleft(call)


# ---------------------------------------------------------------- the application
class PbxBackend:
    def __init__(self, settings: Settings, directory: Directory) -> None:
        self.settings = settings
        self.directory = directory
        self.routes = channel_routes(directory)
        self.auth = settings.pusher_client()  # signs; never calls pbxws
        self.api = settings.pusher_client()  # health checks, terminate on logout
        self.api_pool = ThreadPoolExecutor(2, thread_name_prefix="pusher-api")
        self.broadcaster = Broadcaster(settings)
        self.calls = CallStore()

    # -- sessions --------------------------------------------------------
    def token_for(self, user: User) -> str:
        sig = hmac.new(
            self.settings.session_secret, f"user:{user.id}".encode(), hashlib.sha256
        ).hexdigest()
        return f"{user.id}.{sig}"

    def user_from_token(self, token: str | None) -> User | None:
        if not token or "." not in token:
            return None
        uid, _, _ = token.partition(".")
        user = self.directory.users.get(int(uid)) if uid.isdigit() else None
        if user is None or not hmac.compare_digest(token, self.token_for(user)):
            return None
        return user

    def current_user(self, request: web.Request) -> User | None:
        """``$request->user()``: a bearer token (Echo's ``bearerToken``) or cookie."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self.user_from_token(header[len("Bearer ") :].strip())
        return self.user_from_token(request.cookies.get(SESSION_COOKIE))

    def require_user(self, request: web.Request) -> User:
        user = self.current_user(request)
        if user is None:
            raise web.HTTPUnauthorized(
                text='{"message":"Unauthenticated."}', content_type="application/json"
            )
        return user

    # -- broadcasting routes ---------------------------------------------
    @staticmethod
    async def _form(request: web.Request) -> dict[str, str]:
        if request.content_type == "application/json":
            body = await request.json()
            return (
                {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
            )
        return {k: str(v) for k, v in (await request.post()).items()}

    @staticmethod
    def _forbidden() -> web.HTTPForbidden:
        # AccessDeniedHttpException, as Laravel renders it for an XHR.
        return web.HTTPForbidden(text='{"message":""}', content_type="application/json")

    async def broadcasting_auth(self, request: web.Request) -> web.Response:
        """``Broadcast::auth()`` with the pusher driver (PusherBroadcaster::auth)."""
        form = await self._form(request)
        channel, socket_id = form.get("channel_name", ""), form.get("socket_id", "")
        user = self.current_user(request)
        if not channel or user is None:
            raise self._forbidden()
        name = normalize_channel_name(channel)
        for pattern, callback in self.routes:
            match = pattern.fullmatch(name)
            if match is None:
                continue
            result = callback(user, *match.groups())
            if result is False:
                break
            if not result:
                continue
            try:
                if channel.startswith("presence-"):
                    # authorizePresenceChannel($channel, $socketId,
                    #     (string) $user->id, $result)
                    body = self.auth.authenticate(
                        channel,
                        socket_id,
                        {"user_id": str(user.id), "user_info": result},
                    )
                elif channel.startswith("private-"):
                    body = self.auth.authenticate(channel, socket_id)
                else:
                    break
            except ValueError as exc:  # the SDK's socket id / channel name checks
                raise web.HTTPUnprocessableEntity(
                    text=json.dumps({"message": str(exc)}),
                    content_type="application/json",
                ) from None
            return web.json_response(body)
        raise self._forbidden()

    async def broadcasting_user_auth(self, request: web.Request) -> web.Response:
        """``Broadcast::userAuthentication()``: ``resolveAuthenticatedUser``."""
        form = await self._form(request)
        user = self.current_user(request)
        if user is None:
            raise self._forbidden()
        user_data = {
            "id": str(user.id),  # Laravel casts the id to a string
            "user_info": user.member_info(),
        }
        try:
            body = self.auth.authenticate_user(form.get("socket_id", ""), user_data)
        except ValueError as exc:
            raise web.HTTPUnprocessableEntity(
                text=json.dumps({"message": str(exc)}), content_type="application/json"
            ) from None
        return web.json_response(body)

    # -- API -------------------------------------------------------------
    async def websocket_health(self, request: web.Request) -> web.Response:
        """``GET /api/v1/websocket/health``: can the pusher driver reach pbxws?"""
        loop = asyncio.get_running_loop()
        body: dict[str, Any] = {
            "status": "ok",
            "websocket": "connected",
            "driver": "pusher",
            "host": self.settings.host,
            "port": self.settings.port,
        }
        try:
            await loop.run_in_executor(self.api_pool, self.api.channels_info)
        except Exception as exc:
            body.update(
                status="error",
                websocket="disconnected",
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
        body["timestamp"] = zulu(datetime.now(UTC))
        return web.json_response(body, status=200 if body["status"] == "ok" else 503)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "timestamp": zulu(datetime.now(UTC))})

    async def me(self, request: web.Request) -> web.Response:
        """Who is logged in, and the Echo options a Vite build would bake in."""
        user = self.require_user(request)
        org = self.directory.organizations[user.organization_id]
        return web.json_response(
            {
                "user": {**user.member_info(), "extension_id": user.extension_id},
                "organization": {"id": org["id"], "name": org["name"]},
                "extensions": {
                    u.extension_id: u.name
                    for u in self.directory.members(user.organization_id)
                },
                "token": self.token_for(user),
                "echo": {
                    "key": self.settings.key,
                    "wsHost": self.settings.ws_host or request.url.host,
                    "wsPort": self.settings.ws_port,
                    "forceTLS": self.settings.scheme == "https",
                },
            }
        )

    async def calls_list(self, request: web.Request) -> web.Response:
        """``GET /api/v1/calls``: the user's organization's active and recent calls."""
        user = self.require_user(request)
        return web.json_response(self.calls.for_org(user.organization_id))

    # -- the PBX's webhooks ----------------------------------------------
    @staticmethod
    def _unprocessable(message: str) -> web.HTTPUnprocessableEntity:
        return web.HTTPUnprocessableEntity(
            text=json.dumps({"message": message}), content_type="application/json"
        )

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise self._unprocessable("body must be JSON") from None
        if not isinstance(body, dict):
            raise self._unprocessable("body must be a JSON object")
        return body

    def _call(self, request: web.Request) -> Call:
        call = self.calls.active.get(request.match_info["call_id"])
        if call is None:
            raise web.HTTPNotFound(
                text='{"message":"no such active call"}',
                content_type="application/json",
            )
        return call

    async def webhook_initiated(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        org = self.directory.organizations.get(int(body.get("organization_id", 0)))
        if org is None:
            raise self._unprocessable("unknown organization_id")
        did = next(
            (d for d in org["dids"] if d["id"] == body.get("did_id")), org["dids"][0]
        )
        call = Call(
            call_id=str(body.get("call_id") or f"CA{secrets.token_hex(8)}"),
            organization_id=org["id"],
            from_number=str(body.get("from_number") or "+15555550123"),
            to_number=did["number"],
            did_id=did["id"],
            initiated_at=iso8601(datetime.now(UTC)),
        )
        if call.call_id in self.calls.active:
            raise self._unprocessable("call_id is already active")
        self.calls.active[call.call_id] = call
        outcome = await self.broadcaster.broadcast(call_initiated(call))
        return web.json_response(
            {"call": call.public(), "broadcast": outcome}, status=201
        )

    async def webhook_answered(self, request: web.Request) -> web.Response:
        call = self._call(request)
        body = await self._json(request)
        members = self.directory.members(call.organization_id)
        extension_id = str(body.get("extension_id") or members[0].extension_id)
        if extension_id not in {u.extension_id for u in members}:
            raise self._unprocessable("extension does not belong to the organization")
        if call.status != "initiated":
            raise self._unprocessable(f"call is {call.status}")
        now = datetime.now(UTC)
        call.status, call.answered_at, call._answered = "answered", iso8601(now), now
        call.extension_id = extension_id
        outcome = await self.broadcaster.broadcast(call_answered(call))
        return web.json_response({"call": call.public(), "broadcast": outcome})

    async def webhook_ended(self, request: web.Request) -> web.Response:
        call = self._call(request)
        body = await self._json(request)
        now = datetime.now(UTC)
        answered = call._answered is not None
        call.status = str(body.get("status") or ("completed" if answered else "missed"))
        call.ended_at = iso8601(now)
        call.duration = (
            int((now - call._answered).total_seconds()) if call._answered else 0
        )
        self.calls.end(call)
        outcome = await self.broadcaster.broadcast(call_ended(call))
        return web.json_response({"call": call.public(), "broadcast": outcome})

    # -- pages -----------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        if self.current_user(request) is None:
            raise web.HTTPFound("/login")
        return web.FileResponse(
            STATIC / "index.html", headers={"Cache-Control": "no-store"}
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Demo login: ``/login?user=ID`` logs in as that user (no password)."""
        uid = request.query.get("user", "")
        user = self.directory.users.get(int(uid)) if uid.isdigit() else None
        if user is not None:
            response = web.HTTPFound("/")
            response.set_cookie(
                SESSION_COOKIE, self.token_for(user), httponly=True, samesite="Lax"
            )
            raise response
        rows = []
        for org in self.directory.organizations.values():
            people = "".join(
                f'<li><a href="/login?user={u.id}">{html.escape(u.name)}</a> '
                f"<small>{html.escape(u.role)}, "
                f"ext {html.escape(u.extension_id)}</small></li>"
                for u in self.directory.members(org["id"])
            )
            rows.append(
                f"<section><h2>{html.escape(org['name'])} "
                f"<small>(organization {org['id']})</small></h2>"
                f"<ul>{people}</ul></section>"
            )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<title>PBX demo login</title><link rel="icon" href="data:,">'
            '<link rel="stylesheet" href="/static/dashboard.css"></head>'
            '<body class="login"><h1>Log in as…</h1>'
            "<p>Demo only: pick a user, no password. Open another user in a private "
            "window to watch presence and tenant isolation.</p>"
            f"{''.join(rows)}</body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        user = self.current_user(request)
        if user is not None:
            # Close the user's signed-in connections (pusher-js sign-in), as an app
            # would on logout; pbxws needs user authentication on for this.
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(
                    self.api_pool,
                    self.settings.terminate_user_connections,
                    self.api,
                    str(user.id),
                )
            except Exception as exc:
                log("terminate_failed", user_id=user.id, error=repr(exc)[:300])
        response = web.HTTPFound("/login")
        response.del_cookie(SESSION_COOKIE)
        raise response

    def application(self) -> web.Application:
        missing = [str(d) for d in VENDOR.values() if not d.is_dir()]
        if missing:
            raise SystemExit(
                f"{', '.join(missing)} missing: run scripts/setup --example "
                "(npm ci in examples/pbx)"
            )
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/login", self.login),
                web.get("/logout", self.logout),
                web.post("/broadcasting/auth", self.broadcasting_auth),
                web.post("/broadcasting/user-auth", self.broadcasting_user_auth),
                web.get("/api/v1/health", self.health),
                web.get("/api/v1/websocket/health", self.websocket_health),
                web.get("/api/v1/me", self.me),
                web.get("/api/v1/calls", self.calls_list),
                web.post("/api/webhooks/pbx/calls", self.webhook_initiated),
                web.post(
                    "/api/webhooks/pbx/calls/{call_id}/answered", self.webhook_answered
                ),
                web.post("/api/webhooks/pbx/calls/{call_id}/ended", self.webhook_ended),
            ]
        )
        app.router.add_static("/static", STATIC)
        for prefix, directory in VENDOR.items():
            app.router.add_static(prefix, directory)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, app: web.Application) -> None:
        self.broadcaster.close()
        self.api_pool.shutdown(wait=False, cancel_futures=True)


async def serve(host: str, port: int) -> None:
    settings = Settings.from_env()
    backend = PbxBackend(settings, Directory.load())
    runner = web.AppRunner(backend.application(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    log(
        "backend_started",
        host=host,
        port=bound,
        url=f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}/",
        pusher=f"{settings.scheme}://{settings.host}:{settings.port}",
        app_id=settings.app_id,
        key=settings.key,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    log("backend_stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as exc:
        sys.exit(f"backend: cannot listen on {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()
