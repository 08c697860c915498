"""Property tests: whatever a client or an API caller sends, the pure core answers
with a value or its own protocol error (DecodeError, ApiError), never anything else.

Inputs are random bytes, random JSON built from the protocol's own vocabulary
(so that the decoders get past the first check), and mutations of valid
messages. ``max_examples`` is kept moderate so the suite stays fast; the
live-socket fuzzer (``tests/fuzz``) runs far more inputs.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings, strategies as st

from pbxws.config import AppConfig, LimitsConfig, resolve_limits
from pbxws.protocol import messages as m
from pbxws.protocol.api import decode_batch, decode_trigger, parse_info
from pbxws.protocol.errors import ApiError
from pbxws.protocol.names import channel_kind, valid_channel_name
from pbxws.protocol.origins import origin_allowed, origin_pattern_problem
from pbxws.protocol.signatures import valid_auth, verify_api_request
from pbxws.ws.session import check_protocol

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
LIMITS = resolve_limits(
    AppConfig(id="a", key="k", secret="s", max_event_payload_in_kb=1.0),
    LimitsConfig(max_event_channels_at_once=5, max_event_batch_size=3),
)

# Field names and values the protocol uses, so generated JSON looks like it.
KEYS = st.sampled_from(
    ["event", "channel", "data", "auth", "channel_data", "user_data", "id",
     "watchlist", "user_id", "user_info", "name", "channels", "socket_id",
     "info", "batch", "presence", "x"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["pusher:subscribe", "pusher:signin", "client-x", "private-a", "presence-a",
         "#server-to-user-1", "1.2", "k:abc", "user_count,subscription_count",
         '{"id":"1"}', '{"user_id":1}', "", "pusher:ping"]
    )
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)
JSON_OBJECTS = st.dictionaries(KEYS, JSON, max_size=7)


def dumps(value: Any) -> bytes:
    """JSON bytes; sometimes with data double-encoded, as some clients send it."""
    return json.dumps(value).encode()


def mutate(data: bytes, cuts: list[tuple[int, int]]) -> bytes:
    """Flip, drop or duplicate bytes at the given places."""
    out = bytearray(data)
    for pos, op in cuts:
        if not out:
            break
        i = pos % len(out)
        if op % 3 == 0:
            out[i] ^= 1 << (op % 8)
        elif op % 3 == 1:
            del out[i]
        else:
            out.insert(i, out[i])
    return bytes(out)


VALID_FRAMES = [
    b'{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s",'
    b'"channel_data":"{\\"user_id\\":1,\\"user_info\\":{\\"n\\":1}}"}}',
    b'{"event":"pusher:signin","data":{"auth":"k:s",'
    b'"user_data":"{\\"id\\":\\"1\\",\\"watchlist\\":[\\"2\\"]}"}}',
    b'{"event":"client-x","channel":"private-a","data":{"a":[1,2,{"b":null}]}}',
    b'{"event":"pusher:unsubscribe","data":"{\\"channel\\":\\"a\\"}"}',
]
VALID_BODIES = [
    b'{"name":"e","data":"{\\"a\\":1}","channels":["a","b"],"socket_id":"1.2",'
    b'"info":"subscription_count"}',
    b'{"batch":[{"name":"e","data":"x","channel":"presence-a","info":"user_count"}]}',
]


def exercise_client_frame(raw: bytes) -> None:
    """Everything dispatch may decode from one frame."""
    try:
        msg = m.decode_client_message(raw)
    except m.DecodeError:
        return
    assert isinstance(msg.event, str)
    for kind in (m.SubscribeData, m.SigninData):
        try:
            data = m.decode_data(msg.data, kind)
        except m.DecodeError:
            continue
        if isinstance(data, m.SubscribeData):
            valid_channel_name(data.channel)
            channel_kind(data.channel)
            valid_auth("k", "s", data.auth or "", f"1.2:{data.channel}")
            if data.channel_data is not None:
                with contextlib.suppress(m.DecodeError):
                    m.decode_presence_member(data.channel_data)
        else:
            valid_auth("k", "s", data.auth, f"1.2::user::{data.user_data}")
            try:
                user = m.decode_signin_user(data.user_data)
            except m.DecodeError:
                pass
            else:
                assert user.user_id and all(user.watchlist)
    # What a client event relays to others is valid UTF-8 JSON, always.
    json.loads(m.client_event(msg.event, msg.channel or "c", msg.data, None))


def exercise_api_body(body: bytes) -> None:
    """Both publishing endpoints' decoders."""
    try:
        trigger = decode_trigger(body, LIMITS)
    except ApiError as exc:
        assert 400 <= exc.code < 500
    else:
        trigger.data.encode()  # what subscribers receive is valid UTF-8
    try:
        decode_batch(body, LIMITS)
    except ApiError as exc:
        assert 400 <= exc.code < 500


@SETTINGS
@given(st.binary(max_size=300))
@example(b'{"event":"x","data":' + b"[" * 3000 + b"]" * 3000 + b"}")
@example(b'{"event":"\\ud800"}')
@example(b"\xff\xfe{")
@example(b'{"event":"client-x","channel":"private-a","data":{"k":"\xff"}}')
def test_any_bytes_as_a_client_frame(raw: bytes) -> None:
    """Random bytes decode to a message or a DecodeError."""
    exercise_client_frame(raw)


@SETTINGS
@given(JSON_OBJECTS, st.booleans())
def test_protocol_shaped_json_as_a_client_frame(
    obj: dict[str, Any], twice: bool
) -> None:
    """JSON in the protocol's own words decodes to a message or a DecodeError."""
    if twice and "data" in obj:
        obj["data"] = json.dumps(obj["data"])
    exercise_client_frame(dumps(obj))


@SETTINGS
@given(st.sampled_from(VALID_FRAMES), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 99)), max_size=6))  # fmt: skip
def test_mutated_valid_frames(frame: bytes, cuts: list[tuple[int, int]]) -> None:
    """Valid frames with flipped, dropped or doubled bytes never crash the decoder."""
    exercise_client_frame(mutate(frame, cuts))


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_as_channel_data_or_user_data(text: str) -> None:
    """Presence channel_data and sign-in user_data: a value or a DecodeError."""
    for decode in (m.decode_presence_member, m.decode_signin_user, m.decode_user_id):
        with contextlib.suppress(m.DecodeError):
            decode(text)


@SETTINGS
@given(st.binary(max_size=300))
@example(b'{"name":"e","data":' + b"{" * 3000 + b"}")
@example(b'{"batch":[' + b"[" * 3000 + b"]")
@example(b'{"name":"e","channel":"a","data":{"k":"\xff"}}')
@example(b'{"name":"e","channel":"a","data":"\xc0\xaf"}')
def test_any_bytes_as_an_api_body(body: bytes) -> None:
    """Random bodies give a Trigger or a 4xx ApiError."""
    exercise_api_body(body)


@SETTINGS
@given(JSON_OBJECTS, st.lists(JSON_OBJECTS, max_size=5))
def test_protocol_shaped_json_as_an_api_body(
    obj: dict[str, Any], batch: list[Any]
) -> None:
    """JSON in the API's own words gives a Trigger or a 4xx ApiError."""
    exercise_api_body(dumps(obj))
    exercise_api_body(dumps({"batch": batch}))


@SETTINGS
@given(st.sampled_from(VALID_BODIES), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 99)), max_size=6))  # fmt: skip
def test_mutated_valid_bodies(body: bytes, cuts: list[tuple[int, int]]) -> None:
    """Valid bodies with flipped, dropped or doubled bytes give 4xx at worst."""
    exercise_api_body(mutate(body, cuts))


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["auth_key", "auth_timestamp", "auth_signature", "auth_version",
                         "body_md5", "AUTH_KEY", "info", "x"]) | st.text(max_size=10),
        st.text(max_size=30) | st.integers(-(10**30), 10**30).map(str),
        max_size=6,
    ),
    st.text(max_size=30),
    st.binary(max_size=50),
)  # fmt: skip
@example(
    {"auth_key": "k", "auth_signature": "x", "auth_timestamp": "9" * 400}, "/", b""
)
@example(
    {"auth_key": "k", "auth_signature": "x", "auth_timestamp": "9" * 5000}, "/", b""
)
def test_any_api_query_verifies_or_fails_authentication(
    query: dict[str, str], path: str, body: bytes
) -> None:
    """Signature checks on arbitrary queries end in success or a 401 ApiError."""
    try:
        verify_api_request(
            key="k", secret="s", method="POST", path=path, query=query, body=body,
            now=1_700_000_000.0, tolerance=600,
        )  # fmt: skip
    except ApiError as exc:
        assert exc.code == 401
    parse_info(query.get("info"))


@SETTINGS
@given(st.text(max_size=60), st.lists(st.text(max_size=40), max_size=4))
@example("https://a.example:99999999999999999999", ["https://a.example"])
@example("https://[::1", ["[::1]"])
def test_any_origin_and_pattern(origin: str, patterns: list[str]) -> None:
    """Origin checks are total: a bool for any header and any entries."""
    assert isinstance(origin_allowed(origin, patterns), bool)
    for pattern in patterns:
        problem = origin_pattern_problem(pattern)
        assert problem is None or isinstance(problem, str)


@SETTINGS
@given(st.text(max_size=30))
@example("²")
@example("9" * 5000)
def test_any_protocol_query_value(value: str) -> None:
    """The ``protocol`` query parameter is accepted or refused, never a crash."""
    refusal = check_protocol(value)
    assert refusal is None or refusal[0] in (4006, 4007)


def test_raw_data_survives_relay_unchanged() -> None:
    """A decoded client event's data is relayed byte for byte."""
    raw = b'{"event":"client-x","channel":"private-a","data":{"k":[1,"\\u00e9"]}}'
    msg = m.decode_client_message(raw)
    out = json.loads(m.client_event(msg.event, "private-a", msg.data, None))
    assert out["data"] == {"k": [1, "é"]}
    assert bytes(msg.data) == b'{"k":[1,"\\u00e9"]}'
    assert isinstance(msg.data, msgspec.Raw)
