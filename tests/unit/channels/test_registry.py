"""The per-app registry: occupancy, presence dedupe and fan-out."""

import msgspec

from pbxws.channels.registry import AppChannels


class Sub:
    def __init__(self, socket_id: str) -> None:
        self.socket_id = socket_id
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


INFO = msgspec.Raw(b"{}")


def test_occupied_and_vacated() -> None:
    """The first subscriber occupies a channel; the last one vacates it."""
    reg = AppChannels()
    a, b = Sub("1.1"), Sub("1.2")
    assert reg.subscribe("c", a) is True
    assert reg.subscribe("c", b) is False
    assert reg.unsubscribe("c", a) is False
    assert reg.unsubscribe("c", b) is True
    assert "c" not in reg.channels
    assert reg.unsubscribe("c", b) is False


def test_one_member_per_user_however_many_sockets() -> None:
    """Two sockets of one user make one member, added once and removed once."""
    reg = AppChannels()
    tab1, tab2, other = Sub("1.1"), Sub("1.2"), Sub("1.3")
    assert reg.join("presence-o", tab1, "u1", INFO) == (True, True)
    assert reg.join("presence-o", tab2, "u1", INFO) == (False, False)
    assert reg.join("presence-o", other, "u2", INFO) == (False, True)
    assert reg.member_count("presence-o") == 2
    assert reg.leave("presence-o", tab1) == (None, False)
    assert reg.leave("presence-o", tab2) == ("u1", False)
    assert reg.leave("presence-o", other) == ("u2", True)
    assert reg.leave("presence-o", other) == (None, False)


def test_fan_out_excludes_socket() -> None:
    """fan_out hands the same frame to every subscriber but the excluded one."""
    reg = AppChannels()
    subs = [Sub(f"1.{i}") for i in range(3)]
    for s in subs:
        reg.subscribe("c", s)
    assert reg.fan_out("c", b"F", "1.1") == 2
    assert [s.frames for s in subs] == [[b"F"], [], [b"F"]]
    assert subs[0].frames[0] is subs[2].frames[0]
    assert reg.fan_out("nobody", b"F", None) == 0


def test_connection_quota() -> None:
    """add_connection refuses past max_connections; -1 means unlimited."""
    reg = AppChannels()
    assert reg.add_connection(Sub("1.1"), 1)
    assert not reg.add_connection(Sub("1.2"), 1)
    assert reg.add_connection(Sub("1.3"), -1)


def test_iter_channels_by_prefix() -> None:
    """iter_channels filters occupied channels by prefix."""
    reg = AppChannels()
    reg.subscribe("presence-a", Sub("1.1"))
    reg.subscribe("public", Sub("1.2"))
    assert [c.name for c in reg.iter_channels("presence-")] == ["presence-a"]
