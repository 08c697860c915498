"""HTTP API body decoding and the limits it checks."""

import json

import msgspec
import pytest

from pbxws.protocol.api import decode_batch, decode_trigger, parse_info
from pbxws.protocol.errors import ApiError, PayloadTooLarge


class Limits(msgspec.Struct, frozen=True):
    max_channel_name_length: int = 200
    max_event_name_length: int = 200
    max_event_payload_bytes: int = 100
    max_event_channels_at_once: int = 3
    max_event_batch_size: int = 2


LIMITS = Limits()


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_single_channel_trigger() -> None:
    """name, data, channel and socket_id come through; data stays a string."""
    t = decode_trigger(
        body(name="e", data='{"a":1}', channel="c", socket_id="1.2"), LIMITS
    )
    assert (t.name, t.data, t.channels, t.socket_id) == ("e", '{"a":1}', ["c"], "1.2")


def test_object_data_is_stringified() -> None:
    """Object data is accepted, as Soketi does, and sent on as its JSON text."""
    t = decode_trigger(b'{"name":"e","data":{"a":1},"channels":["c","d"]}', LIMITS)
    assert t.data == '{"a":1}'
    assert t.channels == ["c", "d"]


@pytest.mark.parametrize(
    ("raw", "status", "needle"),
    [
        (b"not json", 400, "Invalid event body"),
        (body(data="x", channel="c"), 400, "Invalid event body"),
        (body(name="", data="x", channel="c"), 400, "empty"),
        (body(name="e" * 201, data="x", channel="c"), 400, "event name"),
        (body(name="e", data="x" * 101, channel="c"), 413, "larger than 100 bytes"),
        (body(name="e", data="x"), 400, "no channel"),
        (body(name="e", data="x", channels=[]), 400, "empty"),
        (body(name="e", data="x", channels=["a", "b", "c", "d"]), 413, "at most 3"),
        (body(name="e", data="x", channel="bad name"), 400, "Invalid channel"),
        (body(name="e", data="x", channel="c" * 201), 400, "longer than 200"),
        (body(name="e", data="x", channel="c", socket_id="abc"), 400, "socket_id"),
        (body(name="e", data="x", channel="c", channels=["d"]), 400, "not both"),
        (body(name="e", data="x", channel="c", info="bogus"), 400, "Unknown info"),
        (
            body(name="e", data="x", channels=["private-encrypted-a", "b"]),
            400,
            "encrypted",
        ),
    ],
)
def test_trigger_refusals(raw: bytes, status: int, needle: str) -> None:
    """Each malformed or over-limit trigger maps to its HTTP status and reason."""
    with pytest.raises(ApiError, match=needle) as info:
        decode_trigger(raw, LIMITS)
    assert info.value.code == status


def test_payload_limit_counts_utf8_bytes() -> None:
    """The data limit is in UTF-8 bytes, not characters."""
    with pytest.raises(PayloadTooLarge):
        decode_trigger(body(name="e", data="é" * 51, channel="c"), LIMITS)
    decode_trigger(body(name="e", data="é" * 50, channel="c"), LIMITS)


def test_batch() -> None:
    """A batch yields one trigger per event, each with its single channel."""
    raw = body(
        batch=[
            {"name": "a", "data": "1", "channel": "x"},
            {"name": "b", "data": "2", "channel": "y", "info": "subscription_count"},
        ]
    )
    triggers = decode_batch(raw, LIMITS)
    assert [(t.name, t.channels) for t in triggers] == [("a", ["x"]), ("b", ["y"])]
    assert triggers[1].info == {"subscription_count"}


def test_batch_refusals() -> None:
    """Too many events is 413; a bad event is named by its index."""
    event = {"name": "a", "data": "1", "channel": "x"}
    with pytest.raises(PayloadTooLarge):
        decode_batch(body(batch=[event] * 3), LIMITS)
    with pytest.raises(ApiError, match=r"batch\[1\]"):
        decode_batch(body(batch=[event, {**event, "channel": "bad name"}]), LIMITS)
    with pytest.raises(ApiError, match="one channel"):
        decode_batch(
            body(batch=[{"name": "a", "data": "1", "channels": ["x"]}]), LIMITS
        )


def test_parse_info() -> None:
    """info is a comma list; blanks are ignored."""
    assert parse_info("user_count, subscription_count,") == {
        "user_count",
        "subscription_count",
    }
    assert parse_info(None) == frozenset()
