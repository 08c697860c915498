"""HTTP API request bodies and their validation (reference §14).

Decoding and limit checks are pure: the ``http_api`` layer passes the raw body
and the app's limits, and gets back a :class:`Trigger` list or an
:class:`~pbxws.protocol.errors.ApiError` saying which status to answer.
"""

from __future__ import annotations

from typing import Final, Protocol

import msgspec

from .errors import ApiError, PayloadTooLarge
from .names import ChannelKind, channel_kind, valid_channel_name

__all__ = [
    "ChannelLimits",
    "Trigger",
    "decode_batch",
    "decode_trigger",
    "parse_info",
]

_SOCKET_ID_PREFIX_CHARS: Final = frozenset("0123456789")
_INFO_ATTRIBUTES: Final = frozenset({"user_count", "subscription_count"})
_NO_INFO: Final[frozenset[str]] = frozenset()


class ChannelLimits(Protocol):
    """The per-app limits a trigger is checked against (read-only attributes)."""

    @property
    def max_channel_name_length(self) -> int: ...
    @property
    def max_event_name_length(self) -> int: ...
    @property
    def max_event_payload_bytes(self) -> int: ...
    @property
    def max_event_channels_at_once(self) -> int: ...
    @property
    def max_event_batch_size(self) -> int: ...


class _EventBody(msgspec.Struct):
    name: str
    data: msgspec.Raw
    channel: str | None = None
    channels: list[str] | None = None
    socket_id: str | None = None
    info: str | None = None


class _BatchBody(msgspec.Struct):
    batch: list[_EventBody]


class Trigger(msgspec.Struct, frozen=True):
    """One validated event to publish on ``channels``."""

    name: str
    # The publisher's data, as the string clients will receive.
    data: str
    channels: list[str]
    socket_id: str | None
    info: frozenset[str]


# msgspec's errors for bad JSON: also RecursionError (nesting too deep) and
# UnicodeDecodeError (invalid UTF-8 in a string); all of them are a 400.
_DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
_event_decoder: Final = msgspec.json.Decoder(_EventBody)
_batch_decoder: Final = msgspec.json.Decoder(_BatchBody)
_str_decoder: Final = msgspec.json.Decoder(str)


def parse_info(info: str | None) -> frozenset[str]:
    """Split an ``info`` parameter (``"user_count,subscription_count"``)."""
    if not info:
        return _NO_INFO
    return frozenset(part.strip() for part in info.split(",") if part.strip())


def _valid_socket_id(socket_id: str) -> bool:
    left, sep, right = socket_id.partition(".")
    return (
        bool(sep and left and right)
        and set(left) <= _SOCKET_ID_PREFIX_CHARS
        and set(right) <= _SOCKET_ID_PREFIX_CHARS
    )


def _check_event(body: _EventBody, limits: ChannelLimits, *, batch: bool) -> Trigger:
    if not body.name:
        raise ApiError(400, "The event name must not be empty.")
    if len(body.name) > limits.max_event_name_length:
        raise ApiError(
            400,
            f"The event name is longer than {limits.max_event_name_length} characters.",
        )
    raw = bytes(body.data)
    # A string is the norm; Soketi also accepts an object and stringifies it.
    data = _str_decoder.decode(raw) if raw[:1] == b'"' else raw.decode()
    # Decoding JSON never makes text longer, so a short raw value needs no check.
    limit = limits.max_event_payload_bytes
    if len(raw) > limit and len(data.encode()) > limit:
        raise PayloadTooLarge(
            f"The data of event {body.name!r} is larger than "
            f"{limits.max_event_payload_bytes} bytes."
        )
    if body.channels is not None and body.channel is not None:
        raise ApiError(400, "Give either channel or channels, not both.")
    if body.channels is not None:
        if batch:
            raise ApiError(400, "A batch event takes one channel.")
        channels = body.channels
    elif body.channel is not None:
        channels = [body.channel]
    else:
        raise ApiError(400, "The event has no channel or channels.")
    if not channels:
        raise ApiError(400, "The channels list is empty.")
    if len(channels) > limits.max_event_channels_at_once:
        raise PayloadTooLarge(
            f"An event can be sent to at most {limits.max_event_channels_at_once} "
            f"channels at once, not {len(channels)}."
        )
    for channel in channels:
        if len(channel) > limits.max_channel_name_length:
            raise ApiError(
                400,
                f"The channel name {channel[:40]!r}... is longer than "
                f"{limits.max_channel_name_length} characters.",
            )
        if not valid_channel_name(channel):
            raise ApiError(400, f"Invalid channel name {channel!r}.")
    if len(channels) > 1 and any(
        channel_kind(c) is ChannelKind.ENCRYPTED for c in channels
    ):
        raise ApiError(400, "An encrypted channel event must go to one channel only.")
    if body.socket_id is not None and not _valid_socket_id(body.socket_id):
        raise ApiError(400, f"Invalid socket_id {body.socket_id!r}.")
    info = parse_info(body.info)
    if info and not info <= _INFO_ATTRIBUTES:
        unknown = ", ".join(sorted(info - _INFO_ATTRIBUTES))
        raise ApiError(400, f"Unknown info attributes: {unknown}.")
    return Trigger(
        name=body.name,
        data=data,
        channels=list(dict.fromkeys(channels)) if len(channels) > 1 else channels,
        socket_id=body.socket_id,
        info=info,
    )


def decode_trigger(body: bytes, limits: ChannelLimits) -> Trigger:
    """Decode and check a ``POST /apps/{id}/events`` body.

    Raises:
        ApiError: 400 if the body is malformed; 413 (``PayloadTooLarge``) if
            the data or the number of channels is over the app's limits.
    """
    try:
        body.decode()  # the raw ``data`` is not checked for UTF-8 by msgspec
        event = _event_decoder.decode(body)
    except _DECODE_ERRORS as exc:
        raise ApiError(400, f"Invalid event body: {exc}") from None
    return _check_event(event, limits, batch=False)


def decode_batch(body: bytes, limits: ChannelLimits) -> list[Trigger]:
    """Decode and check a ``POST /apps/{id}/batch_events`` body.

    Raises:
        ApiError: 400 if the body or one of its events is malformed; 413 if the
            batch has more than ``max_event_batch_size`` events or an event is
            over the limits.
    """
    try:
        body.decode()  # the raw ``data`` is not checked for UTF-8 by msgspec
        batch = _batch_decoder.decode(body).batch
    except _DECODE_ERRORS as exc:
        raise ApiError(400, f"Invalid batch body: {exc}") from None
    if len(batch) > limits.max_event_batch_size:
        raise PayloadTooLarge(
            f"A batch holds at most {limits.max_event_batch_size} events, "
            f"not {len(batch)}."
        )
    triggers = []
    for index, event in enumerate(batch):
        try:
            triggers.append(_check_event(event, limits, batch=True))
        except ApiError as exc:
            raise ApiError(exc.code, f"batch[{index}]: {exc.message}") from None
    return triggers
