"""Channel kinds by anchored prefix, and Pusher's naming rules."""

import pytest

from pbxws.protocol.names import (
    ChannelKind,
    channel_kind,
    is_cache_channel,
    requires_auth,
    valid_channel_name,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("my-channel", ChannelKind.PUBLIC),
        ("private-a", ChannelKind.PRIVATE),
        ("private-encrypted-a", ChannelKind.ENCRYPTED),
        ("presence-org.1", ChannelKind.PRESENCE),
        ("#server-to-user-42", ChannelKind.SERVER_TO_USER),
        ("foo-private-bar", ChannelKind.PUBLIC),
        ("xpresence-a", ChannelKind.PUBLIC),
        ("private", ChannelKind.PUBLIC),
        ("cache-a", ChannelKind.PUBLIC),
        ("private-cache-a", ChannelKind.PRIVATE),
        ("presence-cache-a", ChannelKind.PRESENCE),
    ],
)
def test_kind_by_anchored_prefix(name: str, kind: ChannelKind) -> None:
    """Only a prefix at the start of the name decides the kind (not Soketi's regex)."""
    assert channel_kind(name) is kind


def test_auth_needed_for_private_encrypted_presence() -> None:
    """Private, encrypted and presence channels need a signature; others don't."""
    assert {k for k in ChannelKind if requires_auth(k)} == {
        ChannelKind.PRIVATE,
        ChannelKind.ENCRYPTED,
        ChannelKind.PRESENCE,
    }


@pytest.mark.parametrize(
    ("name", "cache"),
    [
        ("cache-a", True),
        ("private-cache-a", True),
        ("private-encrypted-cache-a", True),
        ("presence-cache-a", True),
        ("a-cache-b", False),
        ("presence-a", False),
    ],
)
def test_cache_channels(name: str, cache: bool) -> None:
    """Cache channels are recognised by anchored prefixes too."""
    assert is_cache_channel(name) is cache


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("presence-org.1", True),
        ("a-zA-Z0-9_=@,.;", True),
        ("#server-to-user-42", True),
        ("#server-to-user-", False),
        ("#other", False),
        ("with space", False),
        ("slash/x", False),
        ("", False),
        ("ünïcode", False),
    ],
)
def test_valid_names(name: str, ok: bool) -> None:
    """Names use Pusher's characters; '#' only in the server-to-user prefix."""
    assert valid_channel_name(name) is ok
