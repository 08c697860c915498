"""Signatures against the test vectors of the protocol reference (§8, §14.2)."""

import hashlib
import hmac

import pytest
from hypothesis import example, given, strategies as st

from pbxws.protocol.errors import AuthenticationFailed
from pbxws.protocol.signatures import (
    api_string_to_sign,
    body_md5,
    sign,
    valid_auth,
    verify_api_request,
)

KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"


def test_private_channel_vector() -> None:
    """The private-channel auth of the reference verifies."""
    auth = f"{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    assert valid_auth(KEY, SECRET, auth, "1234.1234:private-foobar")


def test_presence_channel_vector() -> None:
    """The presence auth of the reference verifies over the exact channel_data."""
    data = '{"user_id":10,"user_info":{"name":"Mr. Channels"}}'
    auth = f"{KEY}:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
    assert valid_auth(KEY, SECRET, auth, f"1234.1234:presence-foobar:{data}")
    reserialised = '{"user_id": 10, "user_info": {"name": "Mr. Channels"}}'
    assert not valid_auth(
        KEY, SECRET, auth, f"1234.1234:presence-foobar:{reserialised}"
    )


def test_signin_vectors() -> None:
    """Both user sign-in vectors of the reference verify."""
    auth = f"{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
    assert valid_auth(KEY, SECRET, auth, '1234.1234::user::{"id":"12345"}')
    auth2 = "1234:f4b1fdeea7c93e32648c7230e32b172057c5623cace6cfce791c6e7035e0babd"
    assert valid_auth("1234", "tofu", auth2, '123.456::user::{"id":"45678"}')


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "no-colon",
        f"otherkey:{sign(SECRET, '1.1:private-a')}",
        f"{KEY}:{sign('wrong', '1.1:private-a')}",
        f"{KEY}:{sign(SECRET, '1.1:private-a').upper()}",
    ],
)
def test_bad_auth_is_refused(auth: str) -> None:
    """A wrong key, secret, shape or case of the digest is refused."""
    assert not valid_auth(KEY, SECRET, auth, "1.1:private-a")


BODY = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
QUERY = {
    "auth_key": KEY,
    "auth_timestamp": "1353088179",
    "auth_version": "1.0",
    "body_md5": "ec365a775a4cd0599faeb73354201b6f",
}
SIGNATURE = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"


def test_api_vector() -> None:
    """The reference's worked HTTP API example gives its string and signature."""
    assert body_md5(BODY) == QUERY["body_md5"]
    expected = (
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    )
    assert api_string_to_sign("POST", "/apps/3/events", QUERY, BODY) == expected
    verify_api_request(
        key=KEY,
        secret=SECRET,
        method="POST",
        path="/apps/3/events",
        query={**QUERY, "auth_signature": SIGNATURE},
        body=BODY,
        now=1353088179 + 599,
        tolerance=600,
    )


def test_body_md5_of_empty_get_is_accepted() -> None:
    """The Python SDK's body_md5 on a GET with no body is part of the signature."""
    query = {"auth_key": KEY, "auth_timestamp": "100", "auth_version": "1.0"}
    query["body_md5"] = body_md5(b"")
    signed = api_string_to_sign("GET", "/apps/3/channels", query, b"")
    assert "body_md5=d41d8cd98f00b204e9800998ecf8427e" in signed
    without = {k: v for k, v in query.items() if k != "body_md5"}
    assert "body_md5" not in api_string_to_sign("GET", "/apps/3/channels", without, b"")


def test_body_md5_is_recomputed_not_trusted() -> None:
    """A body_md5 that doesn't match the body changes the signed string."""
    forged = {**QUERY, "body_md5": body_md5(b"{}")}
    assert api_string_to_sign("POST", "/p", forged, BODY) == api_string_to_sign(
        "POST", "/p", QUERY, BODY
    )


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"auth_signature": "0" * 64}, "Invalid signature"),
        ({"auth_key": "other"}, "auth_key"),
        ({"auth_timestamp": "abc"}, "not an integer"),
        ({"auth_timestamp": str(1353088179 - 601)}, "away from the server time"),
    ],
)
def test_api_refusals(change: dict[str, str], needle: str) -> None:
    """Bad signature, key or timestamp raise AuthenticationFailed (401)."""
    query = {**QUERY, "auth_signature": SIGNATURE, **change}
    with pytest.raises(AuthenticationFailed, match=needle) as info:
        verify_api_request(
            key=KEY,
            secret=SECRET,
            method="POST",
            path="/apps/3/events",
            query=query,
            body=BODY,
            now=1353088179,
            tolerance=600,
        )
    assert info.value.code == 401


def test_api_missing_params() -> None:
    """A request without auth parameters is refused."""
    with pytest.raises(AuthenticationFailed, match="Missing"):
        verify_api_request(
            key=KEY,
            secret=SECRET,
            method="GET",
            path="/apps/3/channels",
            query={},
            body=b"",
            now=0,
            tolerance=600,
        )


@given(st.text(max_size=100), st.text(max_size=300))
def test_sign_is_hmac_sha256(secret: str, message: str) -> None:
    """The precomputed-pad HMAC equals the standard library's, for any key length."""
    expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert sign(secret, message) == expected


_PARAM = st.sampled_from(
    [
        "auth_key",
        "auth_timestamp",
        "auth_version",
        "body_md5",
        "auth_signature",
        "Auth_Key",
        "info",
        "a",
    ]
)


@given(
    st.dictionaries(_PARAM, st.text(max_size=8), max_size=6),
    st.binary(max_size=20),
)
@example(
    {
        "auth_signature": "s",
        "body_md5": "x",
        "auth_version": "1.0",
        "auth_key": "k",
        "auth_timestamp": "1",
    },
    b"{}",
)
def test_string_to_sign_shortcut_is_the_general_rule(
    query: dict[str, str], body: bytes
) -> None:
    """The shortcut for the SDKs' five parameters builds what the rule says."""
    params = {k.lower(): v for k, v in query.items() if k.lower() != "auth_signature"}
    sent = params.pop("body_md5", None)
    if body or sent is not None:
        params["body_md5"] = body_md5(body)
    expected = "POST\n/apps/1/events\n" + "&".join(
        f"{k}={params[k]}" for k in sorted(params)
    )
    assert api_string_to_sign("POST", "/apps/1/events", query, body) == expected
