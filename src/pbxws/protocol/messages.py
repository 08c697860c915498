"""Pusher messages: decoding what clients send, encoding what the server sends.

Inbound, every text frame is one JSON object ``{"event", "channel"?, "data"?}``.
``data`` is kept as :class:`msgspec.Raw` and decoded only by the handler of the
event that needs it; pusher-js sends it as an object, other clients as a JSON
string, and both are accepted.

Outbound, ``pusher:*`` and ``pusher_internal:*`` payloads are JSON-encoded into
the ``data`` string ("double encoding", reference §2), except ``pusher:error``
and ``pusher:subscription_error`` whose ``data`` is an object, as Soketi and
the Pusher docs show. Channel events carry the publisher's ``data`` string
byte for byte.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

__all__ = [
    "WATCHLIST_LIMIT",
    "ClientMessage",
    "DecodeError",
    "PresenceMember",
    "SigninData",
    "SigninUser",
    "SubscribeData",
    "cache_miss",
    "channel_event",
    "client_event",
    "connection_established",
    "decode_client_message",
    "decode_data",
    "decode_presence_member",
    "decode_signin_user",
    "decode_user_id",
    "error",
    "member_added",
    "member_removed",
    "ping",
    "pong",
    "presence_subscription_succeeded",
    "signin_success",
    "subscription_count",
    "subscription_error",
    "subscription_succeeded",
    "watchlist_events",
]

# Most user ids a sign-in's ``watchlist`` may hold; the rest are dropped (4302).
WATCHLIST_LIMIT: Final = 100


class DecodeError(ValueError):
    """A client message is not what the protocol allows; answer ``pusher:error``."""


class ClientMessage(msgspec.Struct):
    """One message from a client. Unknown top-level fields are ignored."""

    event: str
    channel: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")


class SubscribeData(msgspec.Struct):
    """``data`` of ``pusher:subscribe`` (and ``channel`` of ``pusher:unsubscribe``)."""

    channel: str
    auth: str | None = None
    channel_data: str | None = None


class SigninData(msgspec.Struct):
    """``data`` of ``pusher:signin``."""

    auth: str
    user_data: str


class _UserData(msgspec.Struct):
    id: str | int
    watchlist: list[str | int] = []


class SigninUser(msgspec.Struct, frozen=True):
    """What a sign-in's ``user_data`` binds: the user and the users it watches."""

    user_id: str
    # Watched user ids as strings, deduplicated, in the order given (not capped).
    watchlist: list[str]


class _MemberData(msgspec.Struct):
    user_id: str | int
    user_info: msgspec.Raw = msgspec.Raw(b"")


class PresenceMember(msgspec.Struct, frozen=True):
    """A presence member as stored: string id and the raw JSON of its info."""

    user_id: str
    # Raw JSON of user_info as the app sent it, or b"null" when absent.
    user_info: msgspec.Raw


# What msgspec raises for bad JSON: DecodeError, but also RecursionError for
# JSON nested deeper than its limit (``[[[[...]]]]``) and UnicodeDecodeError for
# invalid UTF-8 inside a string. Every decoder below turns them all into our
# DecodeError: hostile input must never surface as anything else.
_DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
_message_decoder: Final = msgspec.json.Decoder(ClientMessage)
_member_decoder: Final = msgspec.json.Decoder(_MemberData)
_str_decoder: Final = msgspec.json.Decoder(str)
_NULL: Final = msgspec.Raw(b"null")


def decode_client_message(raw: bytes | str) -> ClientMessage:
    """Decode one client frame.

    Raises:
        DecodeError: If the frame is not a JSON object with a string ``event``;
            then the connection must answer ``pusher:error`` and go on.
    """
    try:
        if isinstance(raw, bytes):
            # msgspec checks UTF-8 only in what it decodes, not in the raw
            # ``data`` it skips; relayed as is, invalid bytes would make every
            # browser receiving them drop its connection (close 1007).
            raw.decode()
        return _message_decoder.decode(raw)
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"Invalid message: {exc}") from None


T = TypeVar("T")


def decode_data(raw: msgspec.Raw, type_: type[T]) -> T:
    """Decode an inbound ``data`` field, object or JSON string holding an object.

    Raises:
        DecodeError: If ``data`` is missing or not of the expected shape.
    """
    if not raw:
        raise DecodeError("Missing data.")
    try:
        if bytes(memoryview(raw)[:1]) == b'"':
            return msgspec.json.decode(_str_decoder.decode(raw), type=type_)
        return msgspec.json.decode(raw, type=type_)
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"Invalid data: {exc}") from None


def decode_presence_member(channel_data: str) -> PresenceMember:
    """Decode presence ``channel_data``; numeric ``user_id`` becomes a string.

    Raises:
        DecodeError: If it is not a JSON object with a string or integer
            ``user_id``; then the subscription must fail.
    """
    try:
        member = _member_decoder.decode(channel_data)
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"Invalid channel_data: {exc}") from None
    user_id = str(member.user_id)
    if not user_id:
        raise DecodeError("Invalid channel_data: user_id is empty.")
    return PresenceMember(user_id=user_id, user_info=member.user_info or _NULL)


_user_decoder: Final = msgspec.json.Decoder(_UserData)


def decode_user_id(user_data: str) -> str:
    """The ``id`` of sign-in ``user_data``, as a string.

    Raises:
        DecodeError: If ``user_data`` is not a JSON object with a non-empty
            ``id``; then the sign-in fails with 4009.
    """
    return decode_signin_user(user_data).user_id


def decode_signin_user(user_data: str) -> SigninUser:
    """The ``id`` and ``watchlist`` of sign-in ``user_data``, ids as strings.

    Raises:
        DecodeError: If ``user_data`` is not a JSON object with a non-empty
            ``id``, or its ``watchlist`` is not a list of string or integer
            ids; then the sign-in fails with 4009.
    """
    try:
        data = _user_decoder.decode(user_data)
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"Invalid user_data: {exc}") from None
    user_id = str(data.id)
    if not user_id:
        raise DecodeError("Invalid user_data: id is empty.")
    watchlist = list(dict.fromkeys(s for uid in data.watchlist if (s := str(uid))))
    return SigninUser(user_id=user_id, watchlist=watchlist)


# --- outbound -------------------------------------------------------------


class _Event(msgspec.Struct, omit_defaults=True):
    event: str
    channel: str | None = None
    data: str | None = None
    user_id: str | None = None


class _ErrorData(msgspec.Struct):
    message: str
    code: int | None


class _Error(msgspec.Struct):
    event: str
    data: _ErrorData


class _SubscriptionErrorData(msgspec.Struct):
    type: str
    error: str
    status: int


class _SubscriptionError(msgspec.Struct):
    event: str
    channel: str
    data: _SubscriptionErrorData


_encode: Final = msgspec.json.Encoder().encode


def _internal(event: str, channel: str | None, payload: Any) -> bytes:
    data = None if payload is None else _encode(payload).decode()
    return _encode(_Event(event=event, channel=channel, data=data))


def connection_established(socket_id: str, activity_timeout: int) -> bytes:
    """``pusher:connection_established``; pusher-js needs both keys."""
    return _internal(
        "pusher:connection_established",
        None,
        {"socket_id": socket_id, "activity_timeout": activity_timeout},
    )


def error(code: int | None, message: str) -> bytes:
    """``pusher:error`` with an object ``data`` (PROTO, Soketi)."""
    return _encode(_Error("pusher:error", _ErrorData(message, code)))


_PONG: Final = b'{"event":"pusher:pong","data":"{}"}'
_PING: Final = b'{"event":"pusher:ping","data":"{}"}'


def pong() -> bytes:
    """``pusher:pong``, the answer to ``pusher:ping``."""
    return _PONG


def ping() -> bytes:
    """``pusher:ping`` the server sends to a silent client."""
    return _PING


def signin_success(user_data: str) -> bytes:
    """``pusher:signin_success``; pusher-js parses ``data.user_data``."""
    return _internal("pusher:signin_success", None, {"user_data": user_data})


def subscription_succeeded(channel: str) -> bytes:
    """``pusher_internal:subscription_succeeded`` for a non-presence channel."""
    return _encode(
        _Event("pusher_internal:subscription_succeeded", channel=channel, data="{}")
    )


def presence_subscription_succeeded(
    channel: str, members: dict[str, msgspec.Raw]
) -> bytes:
    """``subscription_succeeded`` with the roster: ``ids``, ``hash``, ``count``."""
    payload = {
        "presence": {"ids": list(members), "hash": members, "count": len(members)}
    }
    return _internal("pusher_internal:subscription_succeeded", channel, payload)


def member_added(channel: str, member: PresenceMember) -> bytes:
    """``pusher_internal:member_added`` sent to the other subscribers."""
    payload = {"user_id": member.user_id, "user_info": member.user_info}
    return _internal("pusher_internal:member_added", channel, payload)


def member_removed(channel: str, user_id: str) -> bytes:
    """``pusher_internal:member_removed`` once the user's last socket left."""
    return _internal("pusher_internal:member_removed", channel, {"user_id": user_id})


def watchlist_events(online: list[str], offline: list[str]) -> bytes:
    """``pusher_internal:watchlist_events``: who of a watchlist is on/offline.

    Only non-empty groups are listed; pusher-js emits each as an ``online``
    or ``offline`` event on ``pusher.user.watchlist``.
    """
    events = [
        {"name": name, "user_ids": ids}
        for name, ids in (("online", online), ("offline", offline))
        if ids
    ]
    return _internal("pusher_internal:watchlist_events", None, {"events": events})


def subscription_count(channel: str, count: int) -> bytes:
    """``pusher_internal:subscription_count``; pusher-js emits it on the channel."""
    return _internal(
        "pusher_internal:subscription_count", channel, {"subscription_count": count}
    )


def subscription_error(channel: str, kind: str, message: str, status: int) -> bytes:
    """Soketi-shaped ``pusher:subscription_error`` routed to the channel."""
    return _encode(
        _SubscriptionError(
            "pusher:subscription_error",
            channel,
            _SubscriptionErrorData(kind, message, status),
        )
    )


def cache_miss(channel: str) -> bytes:
    """``pusher:cache_miss``: a cache channel has nothing stored."""
    return _encode(_Event("pusher:cache_miss", channel=channel))


class _ClientEvent(msgspec.Struct, omit_defaults=True):
    event: str
    channel: str
    data: msgspec.Raw
    user_id: str | None = None


def client_event(
    event: str, channel: str, data: msgspec.Raw, user_id: str | None
) -> bytes:
    """A relayed client event: ``data`` exactly as the sender wrote it."""
    return _encode(_ClientEvent(event, channel, data or _NULL, user_id))


def channel_event(
    event: str, channel: str, data: str, user_id: str | None = None
) -> bytes:
    """A channel event: ``data`` passes through verbatim as a JSON string."""
    return _encode(_Event(event, channel=channel, data=data, user_id=user_id))
