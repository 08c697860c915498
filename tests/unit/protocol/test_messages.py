"""Decoding client messages and the exact shapes of server messages."""

import json

import msgspec
import pytest

from pbxws.protocol import messages as m


def test_connection_established_is_double_encoded() -> None:
    """connection_established carries a JSON string with both keys pusher-js needs."""
    outer = json.loads(m.connection_established("1.2", 30))
    assert outer["event"] == "pusher:connection_established"
    assert json.loads(outer["data"]) == {"socket_id": "1.2", "activity_timeout": 30}


def test_error_data_is_an_object() -> None:
    """pusher:error's data is an object with message and code (null allowed)."""
    assert json.loads(m.error(4001, "no")) == {
        "event": "pusher:error",
        "data": {"message": "no", "code": 4001},
    }
    assert json.loads(m.error(None, "x"))["data"]["code"] is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}',
        b'{"event":"pusher:subscribe","data":"{\\"channel\\":\\"a\\",\\"auth\\":\\"k:s\\"}"}',
    ],
)
def test_subscribe_data_object_or_string(raw: bytes) -> None:
    """Subscribe data is accepted as an object (pusher-js) or a JSON string."""
    msg = m.decode_client_message(raw)
    assert m.decode_data(msg.data, m.SubscribeData) == m.SubscribeData("a", "k:s")


@pytest.mark.parametrize(
    "raw",
    [b"", b"nope", b"[]", b'{"data":{}}', b'{"event":5}', b'"str"', b"\xff\xfe"],
)
def test_malformed_messages_raise_decode_error(raw: bytes) -> None:
    """Anything that is not an object with a string event is a DecodeError."""
    with pytest.raises(m.DecodeError):
        m.decode_client_message(raw)


@pytest.mark.parametrize("data", [b"", b"5", b'{"auth":"x"}', b'"not json"'])
def test_bad_subscribe_data(data: bytes) -> None:
    """Subscribe data without a channel string is a DecodeError."""
    raw = b'{"event":"pusher:subscribe"' + (b',"data":' + data if data else b"") + b"}"
    with pytest.raises(m.DecodeError):
        m.decode_data(m.decode_client_message(raw).data, m.SubscribeData)


def test_presence_member_numeric_id_and_missing_info() -> None:
    """A numeric user_id becomes a string; missing user_info becomes null."""
    member = m.decode_presence_member('{"user_id":5}')
    assert member.user_id == "5"
    assert bytes(member.user_info) == b"null"


def test_presence_member_keeps_raw_info() -> None:
    """user_info passes through byte for byte (PHP's escaped slashes survive)."""
    member = m.decode_presence_member('{"user_id":"a","user_info":{"u":"a\\/b"}}')
    assert bytes(member.user_info) == b'{"u":"a\\/b"}'


@pytest.mark.parametrize(
    "data", ["", "{}", '{"user_id":""}', '{"user_id":[1]}', "[1]", "{bad"]
)
def test_bad_presence_member(data: str) -> None:
    """channel_data without a usable user_id is refused."""
    with pytest.raises(m.DecodeError):
        m.decode_presence_member(data)


def test_presence_roster_shape() -> None:
    """subscription_succeeded lists ids, hash and count of unique users."""
    roster = {"1": msgspec.Raw(b'{"name":"a"}'), "2": msgspec.Raw(b"null")}
    outer = json.loads(m.presence_subscription_succeeded("presence-x", roster))
    assert outer["channel"] == "presence-x"
    assert json.loads(outer["data"]) == {
        "presence": {
            "ids": ["1", "2"],
            "hash": {"1": {"name": "a"}, "2": None},
            "count": 2,
        }
    }


def test_member_events() -> None:
    """member_added carries user_id and user_info; member_removed the id."""
    member = m.decode_presence_member('{"user_id":7,"user_info":{"a":1}}')
    added = json.loads(m.member_added("presence-x", member))
    assert json.loads(added["data"]) == {"user_id": "7", "user_info": {"a": 1}}
    removed = json.loads(m.member_removed("presence-x", "7"))
    assert json.loads(removed["data"]) == {"user_id": "7"}


def test_subscription_error_is_soketi_shaped() -> None:
    """subscription_error has channel and data {type, error, status}."""
    assert json.loads(m.subscription_error("private-a", "AuthError", "no", 401)) == {
        "event": "pusher:subscription_error",
        "channel": "private-a",
        "data": {"type": "AuthError", "error": "no", "status": 401},
    }


def test_channel_event_passes_data_verbatim() -> None:
    """A published data string reaches the client as the same string."""
    data = '{"call_id":"c1","from_number":"+1 555"}'
    assert json.loads(m.channel_event("call.initiated", "private-org.1", data)) == {
        "event": "call.initiated",
        "channel": "private-org.1",
        "data": data,
    }


def test_client_event_relays_data_as_sent() -> None:
    """A client event keeps object data as an object and adds user_id when given."""
    out = json.loads(
        m.client_event("client-x", "presence-a", msgspec.Raw(b'{"t":1}'), "9")
    )
    assert out == {
        "event": "client-x",
        "channel": "presence-a",
        "data": {"t": 1},
        "user_id": "9",
    }


def test_user_id_from_user_data() -> None:
    """Sign-in user_data needs a non-empty id."""
    assert m.decode_user_id('{"id":"12345","name":"x"}') == "12345"
    assert m.decode_user_id('{"id":12}') == "12"
    for bad in ["{}", '{"id":""}', "nope"]:
        with pytest.raises(m.DecodeError):
            m.decode_user_id(bad)


def test_signin_user_data_with_watchlist() -> None:
    """user_data's id and watchlist are strings, deduplicated, in order."""
    user = m.decode_signin_user('{"id": 7, "watchlist": [2, "2", "x", "", 3]}')
    assert user == m.SigninUser(user_id="7", watchlist=["2", "x", "3"])
    assert m.decode_signin_user('{"id": "a"}').watchlist == []


@pytest.mark.parametrize(
    "user_data",
    ['{"id": "a", "watchlist": "b"}', '{"id": "a", "watchlist": [{}]}', "[]", "{}"],
)
def test_signin_user_data_refused(user_data: str) -> None:
    """A watchlist that is not a list of ids (or no id) is a DecodeError."""
    with pytest.raises(m.DecodeError):
        m.decode_signin_user(user_data)


def test_watchlist_events_shape() -> None:
    """watchlist_events has no channel and lists only non-empty groups."""
    outer = json.loads(m.watchlist_events(["1"], ["2", "3"]))
    assert outer["event"] == "pusher_internal:watchlist_events"
    assert "channel" not in outer
    assert json.loads(outer["data"]) == {
        "events": [
            {"name": "online", "user_ids": ["1"]},
            {"name": "offline", "user_ids": ["2", "3"]},
        ]
    }
    only_offline = json.loads(json.loads(m.watchlist_events([], ["9"]))["data"])
    assert only_offline == {"events": [{"name": "offline", "user_ids": ["9"]}]}


def test_subscription_count_is_double_encoded() -> None:
    """subscription_count carries {"subscription_count": N} as a JSON string."""
    outer = json.loads(m.subscription_count("news", 3))
    assert outer["event"] == "pusher_internal:subscription_count"
    assert outer["channel"] == "news"
    assert json.loads(outer["data"]) == {"subscription_count": 3}


def test_deeply_nested_json_is_a_decode_error() -> None:
    """JSON nested past msgspec's depth limit is a DecodeError, not a RecursionError."""
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(m.DecodeError):
        m.decode_client_message(b'{"event":"x","data":' + deep + b"}")
    with pytest.raises(m.DecodeError):
        m.decode_data(msgspec.Raw(b'{"channel":' + deep + b"}"), m.SubscribeData)
    with pytest.raises(m.DecodeError):
        m.decode_presence_member('{"user_id":"1","user_info":' + deep.decode() + "}")
    with pytest.raises(m.DecodeError):
        m.decode_signin_user('{"id":"1","x":' + deep.decode() + "}")
