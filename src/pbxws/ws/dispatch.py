"""What a connection does with each client message.

Decisions (may this socket join, is this signature right, what to answer)
come from :mod:`pbxws.protocol`; this module applies them through the adapter
and writes the replies. Messages of one connection are handled in order.
"""

from __future__ import annotations

import time

import structlog

from pbxws.adapters.base import PresenceFull
from pbxws.protocol import messages as m
from pbxws.protocol.errors import ClientEventRejected, ErrorCode, SubscriptionRefused
from pbxws.protocol.frames import text_frame
from pbxws.protocol.names import (
    SERVER_TO_USER_PREFIX,
    ChannelKind,
    channel_kind,
    is_cache_channel,
    requires_auth,
    valid_channel_name,
)
from pbxws.protocol.signatures import valid_auth
from pbxws.runtime import Runtime

from .connection import Connection, ConnState

__all__ = ["dispatch", "leave_all"]

log = structlog.get_logger(__name__)


async def dispatch(rt: Runtime, conn: Connection, raw: bytes) -> None:
    """Handle one text frame from ``conn``; errors go back to that client only."""
    try:
        msg = m.decode_client_message(raw)
    except m.DecodeError as exc:
        conn.send_message(m.error(None, str(exc)))
        return
    event = msg.event
    try:
        if event == "pusher:ping":
            conn.send_message(m.pong())
        elif event == "pusher:pong":
            pass  # liveness is recorded for every frame by the reader loop
        elif event == "pusher:subscribe":
            await _subscribe(rt, conn, m.decode_data(msg.data, m.SubscribeData))
        elif event == "pusher:unsubscribe":
            data = m.decode_data(msg.data, m.SubscribeData)
            await _unsubscribe(rt, conn, data.channel)
        elif event.startswith("client-"):
            await _client_event(rt, conn, msg)
        elif event == "pusher:signin":
            await _signin(rt, conn, m.decode_data(msg.data, m.SigninData))
        else:
            conn.send_message(m.error(None, f"Unsupported event {event[:64]!r}."))
    except m.DecodeError as exc:
        conn.send_message(m.error(None, f"{event[:64]}: {exc}"))
    except SubscriptionRefused as exc:
        channel = msg.channel or _channel_of(msg)
        conn.send_message(
            m.subscription_error(channel, exc.kind, exc.message, exc.code)
        )
        conn.stats.rejected("subscription", exc.code)
        log.info(
            "subscription_refused",
            app_id=conn.app.id,
            socket_id=conn.socket_id,
            channel=channel,
            status=exc.code,
            reason=exc.message,
        )
    except ClientEventRejected as exc:
        conn.send_message(m.error(exc.code, exc.message))
        conn.stats.rejected("client_event", exc.code)
        log.debug(
            "client_event_rejected",
            app_id=conn.app.id,
            socket_id=conn.socket_id,
            channel=msg.channel,
            reason=exc.message,
        )


def _channel_of(msg: m.ClientMessage) -> str:
    try:
        return m.decode_data(msg.data, m.SubscribeData).channel
    except m.DecodeError:
        return ""


async def _subscribe(rt: Runtime, conn: Connection, data: m.SubscribeData) -> None:
    app = conn.app
    name = data.channel
    if len(name) > app.limits.max_channel_name_length:
        raise SubscriptionRefused(
            ErrorCode.UNAUTHORIZED,
            f"The channel name is longer than {app.limits.max_channel_name_length} "
            "characters.",
            "LimitReached",
        )
    if not valid_channel_name(name):
        raise SubscriptionRefused(
            ErrorCode.UNAUTHORIZED,
            "The channel name contains characters Pusher does not allow.",
            "InvalidChannelName",
        )
    kind = channel_kind(name)
    if name in conn.channels:
        # Already subscribed (a client retrying): confirm again, change nothing.
        if kind is ChannelKind.PRESENCE:
            members = await rt.adapter.members(app.id, name)
            conn.send_message(m.presence_subscription_succeeded(name, members))
        else:
            conn.send_message(m.subscription_succeeded(name))
        return
    limit = app.limits.max_channels_per_connection
    if len(conn.channels) >= limit:
        raise SubscriptionRefused(
            ErrorCode.OVER_CAPACITY,
            f"This connection is subscribed to {limit} channels, its maximum; "
            "unsubscribe from one first.",
            "LimitReached",
        )
    if requires_auth(kind):
        signed = f"{conn.socket_id}:{name}"
        if kind is ChannelKind.PRESENCE:
            signed += f":{data.channel_data or ''}"
        if not data.auth or not valid_auth(app.key, app.secret, data.auth, signed):
            raise SubscriptionRefused(
                401, "The connection is unauthorized.", "AuthError"
            )
    elif kind is ChannelKind.SERVER_TO_USER and (
        conn.user_id is None or name[len(SERVER_TO_USER_PREFIX) :] != conn.user_id
    ):
        raise SubscriptionRefused(
            ErrorCode.UNAUTHORIZED,
            "Only the signed-in user may subscribe to their own channel.",
            "AuthError",
        )

    if kind is ChannelKind.PRESENCE:
        await _join_presence(rt, conn, name, data.channel_data or "")
    else:
        if await rt.adapter.subscribe(app.id, name, conn):
            rt.webhooks.occupied(app.id, name)
        conn.channels[name] = None
        conn.send_message(m.subscription_succeeded(name))
    if conn.state is not ConnState.OPEN:
        # Closed while we awaited the adapter: undo, the cleanup already ran.
        await _unsubscribe(rt, conn, name)
        return
    if requires_auth(kind):
        conn.auth_deadline = None  # user authentication: a private channel will do
    _count_changed(rt, conn, name, kind)
    log.debug("subscribed", app_id=app.id, socket_id=conn.socket_id, channel=name)
    if is_cache_channel(name):
        cached = await rt.adapter.cache_get(app.id, name)
        if cached is None:
            conn.send_message(m.cache_miss(name))
            rt.webhooks.cache_miss(app.id, name)
        else:
            conn.send_message(m.channel_event(cached.event, name, cached.data))


async def _join_presence(
    rt: Runtime, conn: Connection, name: str, channel_data: str
) -> None:
    app = conn.app
    try:
        member = m.decode_presence_member(channel_data)
    except m.DecodeError as exc:
        raise SubscriptionRefused(
            ErrorCode.UNAUTHORIZED, str(exc), "AuthError"
        ) from None
    if len(member.user_info) > app.limits.max_presence_member_bytes:
        raise SubscriptionRefused(
            ErrorCode.CLIENT_EVENT_REJECTED,
            f"The user_info is larger than {app.limits.max_presence_member_bytes} "
            "bytes.",
            "LimitReached",
        )
    try:
        result = await rt.adapter.join(
            app.id,
            name,
            conn,
            member.user_id,
            member.user_info,
            app.limits.max_presence_members,
        )
    except PresenceFull:
        raise SubscriptionRefused(
            ErrorCode.OVER_CAPACITY,
            "The presence channel has its maximum of "
            f"{app.limits.max_presence_members} members.",
            "LimitReached",
        ) from None
    if result.occupied:
        rt.webhooks.occupied(app.id, name)
    if result.added:
        rt.webhooks.member_added(app.id, name, member.user_id)
    conn.channels[name] = member.user_id
    conn.send_message(m.presence_subscription_succeeded(name, result.members))
    if result.added:
        frame = text_frame(m.member_added(name, member))
        sent = await rt.adapter.publish(app.id, name, frame, conn.socket_id)
        conn.stats.delivered(sent, len(frame))


async def _unsubscribe(rt: Runtime, conn: Connection, name: str) -> None:
    if name not in conn.channels:
        return
    del conn.channels[name]
    app_id = conn.app.id
    result = await rt.adapter.leave(app_id, name, conn)
    if result.vacated:
        rt.webhooks.vacated(app_id, name)
    if result.removed_user is not None:
        rt.webhooks.member_removed(app_id, name, result.removed_user)
        frame = text_frame(m.member_removed(name, result.removed_user))
        sent = await rt.adapter.publish(app_id, name, frame, None)
        conn.stats.delivered(sent, len(frame))
    _count_changed(rt, conn, name, channel_kind(name))


def _count_changed(rt: Runtime, conn: Connection, name: str, kind: ChannelKind) -> None:
    """Tell the subscribers of ``name`` its new count (apps that enable it)."""
    if conn.app.enable_subscription_count and kind not in (
        ChannelKind.PRESENCE,
        ChannelKind.SERVER_TO_USER,
    ):
        rt.subscription_counts.changed(conn.app.id, name)


async def leave_all(rt: Runtime, conn: Connection) -> None:
    """Leave every channel of a closing connection (member_removed as due).

    A signed-in connection also stops counting for its user (who goes offline
    for the watchlists if it was the last one) and stops watching.
    """
    for name in list(conn.channels):
        await _unsubscribe(rt, conn, name)
    if conn.watchlist:
        await rt.adapter.unwatch(conn.app.id, conn, conn.watchlist)
        conn.watchlist = ()
    if conn.user_id is not None:
        await rt.adapter.sign_out(conn.app.id, conn.user_id)


async def _signin(rt: Runtime, conn: Connection, data: m.SigninData) -> None:
    """Bind the connection to a user (reference §10); refusals close with 4009.

    Then the user counts as online, and the ``watchlist`` of ``user_data``
    (its first 100 ids; 4302 for the rest) gets its current statuses as
    ``watchlist_events``, then every change.
    """
    app = conn.app
    signed = f"{conn.socket_id}::user::{data.user_data}"
    if not valid_auth(app.key, app.secret, data.auth, signed):
        conn.stats.rejected("signin", ErrorCode.UNAUTHORIZED)
        conn.close_soon(ErrorCode.UNAUTHORIZED, "Invalid signature for pusher:signin.")
        return
    try:
        user = m.decode_signin_user(data.user_data)
    except m.DecodeError as exc:
        conn.stats.rejected("signin", ErrorCode.UNAUTHORIZED)
        conn.close_soon(ErrorCode.UNAUTHORIZED, str(exc))
        return
    user_id = user.user_id
    if conn.user_id is not None and conn.user_id != user_id:
        conn.stats.rejected("signin", ErrorCode.UNAUTHORIZED)
        conn.close_soon(
            ErrorCode.UNAUTHORIZED, "This connection is signed in as another user."
        )
        return
    first = conn.user_id is None
    conn.user_id = user_id
    conn.auth_deadline = None
    if first:
        # Counted online before the client hears of it, so that anything it
        # does next (another tab closing, a watcher asking) sees it online.
        await rt.adapter.sign_in(app.id, user_id)
    conn.send_message(m.signin_success(data.user_data))
    log.debug("signed_in", app_id=app.id, socket_id=conn.socket_id, user_id=user_id)
    watchlist = user.watchlist
    if len(watchlist) > m.WATCHLIST_LIMIT:
        conn.stats.rejected("signin", ErrorCode.WATCHLIST_LIMIT)
        conn.send_message(
            m.error(
                ErrorCode.WATCHLIST_LIMIT,
                f"The watchlist has {len(watchlist)} user ids; only the first "
                f"{m.WATCHLIST_LIMIT} are watched.",
            )
        )
        watchlist = watchlist[: m.WATCHLIST_LIMIT]
    await _watch(rt, conn, tuple(watchlist))


async def _watch(rt: Runtime, conn: Connection, watchlist: tuple[str, ...]) -> None:
    """Replace what ``conn`` watches; send the current statuses of the new list."""
    app_id = conn.app.id
    if conn.watchlist:
        await rt.adapter.unwatch(app_id, conn, conn.watchlist)
        conn.watchlist = ()
    if not watchlist:
        return
    conn.watchlist = watchlist
    statuses = await rt.adapter.watch(app_id, conn, watchlist)
    conn.send_message(
        m.watchlist_events(
            [uid for uid, online in statuses.items() if online],
            [uid for uid, online in statuses.items() if not online],
        )
    )


async def _client_event(rt: Runtime, conn: Connection, msg: m.ClientMessage) -> None:
    started = time.perf_counter()
    app = conn.app
    channel = msg.channel
    if not app.enable_client_messages:
        raise ClientEventRejected(
            ErrorCode.CLIENT_EVENT_REJECTED,
            "The app does not have client messaging enabled.",
        )
    if (
        channel is None
        or channel not in conn.channels
        or channel_kind(channel) not in (ChannelKind.PRIVATE, ChannelKind.PRESENCE)
    ):
        raise ClientEventRejected(
            ErrorCode.CLIENT_EVENT_REJECTED,
            "Client events go to a private or presence channel this socket "
            "is subscribed to.",
        )
    if len(msg.event) > app.limits.max_event_name_length:
        raise ClientEventRejected(
            ErrorCode.CLIENT_EVENT_REJECTED,
            f"The event name is longer than {app.limits.max_event_name_length} "
            "characters.",
        )
    if len(msg.data) > app.limits.max_event_payload_bytes:
        raise ClientEventRejected(
            ErrorCode.CLIENT_EVENT_REJECTED,
            "The event data is larger than "
            f"{app.limits.max_event_payload_bytes} bytes.",
        )
    limit = app.max_client_events_per_sec
    if limit >= 0:
        now = time.monotonic()
        if now - conn.client_events_window >= 1.0:
            conn.client_events_window = now
            conn.client_events_count = 0
        conn.client_events_count += 1
        if conn.client_events_count > limit:
            conn.stats.limited("client_events")
            raise ClientEventRejected(
                ErrorCode.CLIENT_EVENT_REJECTED,
                "The rate limit for sending client events exceeded the quota.",
            )
    # On presence channels the relayed event names its sender (PROTO).
    user_id = conn.channels[channel]
    frame = text_frame(m.client_event(msg.event, channel, msg.data, user_id))
    sent = await rt.adapter.publish(app.id, channel, frame, conn.socket_id)
    conn.stats.published(sent, len(frame), started)
    rt.webhooks.client_event(
        app.id, channel, msg.event, msg.data, conn.socket_id, user_id
    )
