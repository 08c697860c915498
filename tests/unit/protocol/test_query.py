from urllib.parse import parse_qsl

from hypothesis import given, strategies as st

from pbxws.protocol.query import parse_query


def test_signed_request_parameters() -> None:
    qs = (
        "auth_key=app-key&auth_timestamp=1732590000&auth_version=1.0"
        "&body_md5=0123abcd&auth_signature=ff00"
    )
    assert parse_query(qs) == {
        "auth_key": "app-key",
        "auth_timestamp": "1732590000",
        "auth_version": "1.0",
        "body_md5": "0123abcd",
        "auth_signature": "ff00",
    }


def test_decoding_blank_values_and_repeats() -> None:
    assert parse_query("a=x%20y+z&b&c=&&a2=%E2%82%AC&b=2") == {
        "a": "x y z",
        "b": "2",
        "c": "",
        "a2": "\u20ac",
    }
    assert parse_query("") == {}
    assert parse_query("bad=%ff%zz") == {"bad": "\ufffd%zz"}


@given(st.text(alphabet="ab=&+%2Fe8\u00e9 ;", max_size=40))
def test_same_as_parse_qsl(query: str) -> None:
    assert parse_query(query) == dict(parse_qsl(query, keep_blank_values=True))
