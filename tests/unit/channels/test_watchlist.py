"""Watchlists: versioned views of watched users, shared by their watchers."""

from __future__ import annotations

import json

from pbxws.channels.registry import AppChannels
from pbxws.channels.watchlist import Watchlists


class Sock:
    """A subscriber that records the watchlist events it is sent."""

    def __init__(self, socket_id: str) -> None:
        self.socket_id = socket_id
        self.user_id: str | None = None
        self.events: list[tuple[str, list[str]]] = []

    def send(self, frame: bytes) -> None:
        start = frame.index(b"{")
        msg = json.loads(frame[start:])
        assert msg["event"] == "pusher_internal:watchlist_events"
        for event in json.loads(msg["data"])["events"]:
            self.events.append((event["name"], event["user_ids"]))

    def close_soon(self, code: int, reason: str) -> None:
        raise AssertionError("not expected")


def test_attached_watchers_get_changes_once() -> None:
    """Every watcher of a user gets each real change once; repeats are dropped."""
    wl = Watchlists()
    a, b = Sock("1.1"), Sock("1.2")
    wl.attach(a, ["u"])
    wl.attach(b, ["u", "v"])
    assert wl.update("u", True, 1) == 2
    assert wl.update("u", True, 2) == 0  # same status: nobody told
    assert wl.update("u", False, 3) == 2
    assert a.events == [("online", ["u"]), ("offline", ["u"])]
    assert b.events == a.events


def test_older_versions_lose() -> None:
    """A change older than the view (reordered bus messages) is dropped."""
    wl = Watchlists()
    a = Sock("1.1")
    wl.attach(a, ["u"])
    wl.update("u", True, 10)
    assert wl.update("u", False, 5) == 0  # an old offline arrives late
    assert wl.statuses(["u"]) == {"u": True}
    assert a.events == [("online", ["u"])]


def test_unforced_update_without_version_applies() -> None:
    """A locally certain change (outage) applies whatever the versions."""
    wl = Watchlists()
    a = Sock("1.1")
    wl.attach(a, ["u"])
    wl.update("u", False, 10)
    assert wl.update("u", True, None) == 1
    assert wl.statuses(["u"]) == {"u": True}


def test_held_view_keeps_a_change_made_during_the_query() -> None:
    """A change that arrives while a status query is awaited is not lost."""
    wl = Watchlists()
    wl.hold(["u"])
    wl.update("u", True, 20)  # arrives during the query
    wl.refresh({"u": False}, 15)  # the query answered as of version 15
    a = Sock("1.1")
    wl.attach(a, ["u"])
    wl.release(["u"])
    assert wl.statuses(["u"]) == {"u": True}
    assert a.events == []  # attached after: only its initial state is its due


def test_refresh_tells_existing_watchers_of_a_missed_change() -> None:
    """A newer status query corrects the view and tells its watchers."""
    wl = Watchlists()
    a = Sock("1.1")
    wl.attach(a, ["u"])
    wl.update("u", True, 1)
    wl.refresh({"u": False}, 7)
    assert a.events == [("online", ["u"]), ("offline", ["u"])]


def test_views_go_with_their_last_watcher() -> None:
    """Detaching the last watcher (and releasing holds) forgets the view."""
    wl = Watchlists()
    a, b = Sock("1.1"), Sock("1.2")
    wl.attach(a, ["u", "v"])
    wl.attach(b, ["u"])
    wl.detach(a, ["u", "v"])
    assert wl.watched() == ["u"]
    assert wl.watchers("u") == [b]
    wl.detach(b, ["u"])
    assert not wl
    wl.hold(["x"])
    wl.release(["x"])
    assert len(wl) == 0
    assert wl.update("gone", True, 1) == 0


def test_unknown_is_offline_and_fill_unknown_sets_only_unknown() -> None:
    """Statuses default to offline; fill_unknown does not override known ones."""
    wl = Watchlists()
    wl.hold(["u", "v"])
    wl.update("u", True, 3)
    wl.fill_unknown({"u": False, "v": True})
    assert wl.statuses(["u", "v", "w"]) == {"u": True, "v": True, "w": False}


def test_registry_counts_signed_in_connections() -> None:
    """A user is new on the first connection and gone with the last one."""
    reg = AppChannels()
    assert reg.sign_in("u")
    assert not reg.sign_in("u")
    assert not reg.sign_out("u")
    assert not reg.idle()
    assert reg.sign_out("u")
    assert not reg.sign_out("u")  # more sign-outs than sign-ins change nothing
    assert reg.idle()
