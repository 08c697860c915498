"""The channels of one app on this node: subscribers and presence rosters.

Theory of operation: everything here is synchronous and runs on the event
loop thread, so each method is atomic. A subscriber is anything with a
``socket_id`` and a non-blocking ``send(frame)``; the registry never awaits and
never closes a subscriber itself. ``send`` may ask its connection to close, but
that removal happens later (a scheduled task), never while :meth:`fan_out`
iterates, so the loop below can walk the live dict without copying it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import msgspec

from .watchlist import Watchlists

__all__ = ["AppChannels", "Channel", "Subscriber"]


class Subscriber(Protocol):
    """What the registry needs of a connection."""

    @property
    def socket_id(self) -> str: ...

    @property
    def user_id(self) -> str | None:
        """The user bound by pusher:signin, if any."""

    def send(self, frame: bytes) -> None:
        """Queue one pre-framed WebSocket frame; never blocks, never raises."""

    def close_soon(self, code: int, reason: str) -> None:
        """Start closing the connection with a Pusher close code."""


class _Member:
    """A presence member on this node: its info and how many sockets hold it."""

    __slots__ = ("info", "sockets")

    def __init__(self, info: msgspec.Raw) -> None:
        # Raw JSON user_info from the first socket of this user that joined.
        self.info = info
        # Number of this node's sockets subscribed to the channel as this user.
        self.sockets = 0


class Channel:
    """One occupied channel: its subscribers and, for presence, its members."""

    __slots__ = ("members", "name", "subscribers")

    def __init__(self, name: str) -> None:
        self.name = name
        # Subscribers in join order, mapped to their presence user id (or None).
        self.subscribers: dict[Subscriber, str | None] = {}
        # Presence roster: user id -> member, unique users in join order.
        self.members: dict[str, _Member] = {}

    def roster(self) -> dict[str, msgspec.Raw]:
        """Presence ``hash``: user id -> raw user_info."""
        return {uid: m.info for uid, m in self.members.items()}


class AppChannels:
    """All channels of one app on this node."""

    def __init__(self) -> None:
        # Occupied channels by name; dropped when the last subscriber leaves.
        self.channels: dict[str, Channel] = {}
        # Open connections of this app by socket id.
        self.connections: dict[str, Subscriber] = {}
        # Signed-in users: user id -> this node's connections signed in as it.
        self.users: dict[str, int] = {}
        # Who watches whom here, and the watched users' status (watchlist).
        self.watchlists = Watchlists()

    def idle(self) -> bool:
        """Whether nothing of this app is left on this node (the registry may go)."""
        return not (self.connections or self.channels or self.users or self.watchlists)

    # --- connections ---------------------------------------------------------

    def add_connection(self, conn: Subscriber, max_connections: int) -> bool:
        """Register ``conn``; False when the app's quota (``-1`` = none) is full."""
        if 0 <= max_connections <= len(self.connections):
            return False
        self.connections[conn.socket_id] = conn
        return True

    def remove_connection(self, conn: Subscriber) -> None:
        """Forget ``conn`` (its channels must have been left first)."""
        self.connections.pop(conn.socket_id, None)

    # --- signed-in users ----------------------------------------------------------

    def sign_in(self, user_id: str, connections: int = 1) -> bool:
        """Count connections signed in as ``user_id``; True if it is new here."""
        count = self.users.get(user_id, 0)
        self.users[user_id] = count + connections
        return count == 0

    def sign_out(self, user_id: str) -> bool:
        """Uncount one connection of ``user_id``; True if it was the last here."""
        count = self.users.get(user_id, 0) - 1
        if count > 0:
            self.users[user_id] = count
            return False
        self.users.pop(user_id, None)
        return count == 0

    # --- subscriptions --------------------------------------------------------

    def subscribe(
        self, name: str, conn: Subscriber, user_id: str | None = None
    ) -> bool:
        """Add ``conn`` to channel ``name``; True if the channel became occupied."""
        channel = self.channels.get(name)
        occupied = channel is None
        if channel is None:
            channel = self.channels[name] = Channel(name)
        channel.subscribers[conn] = user_id
        return occupied

    def unsubscribe(self, name: str, conn: Subscriber) -> bool:
        """Remove ``conn`` from ``name``; True if the channel became vacant."""
        channel = self.channels.get(name)
        if channel is None or channel.subscribers.pop(conn, _MISSING) is _MISSING:
            return False
        if not channel.subscribers:
            del self.channels[name]
            return True
        return False

    # --- presence ---------------------------------------------------------------

    def join(
        self, name: str, conn: Subscriber, user_id: str, info: msgspec.Raw
    ) -> tuple[bool, bool]:
        """Subscribe ``conn`` to presence channel ``name`` as ``user_id``.

        Returns ``(occupied, added)``: whether the channel became occupied, and
        whether ``user_id`` became a member (its first socket here).
        """
        occupied = self.subscribe(name, conn, user_id)
        channel = self.channels[name]
        member = channel.members.get(user_id)
        added = member is None
        if member is None:
            member = channel.members[user_id] = _Member(info)
        member.sockets += 1
        return occupied, added

    def leave(self, name: str, conn: Subscriber) -> tuple[str | None, bool]:
        """Unsubscribe ``conn`` from presence channel ``name``.

        Returns ``(removed_user_id, vacated)``: the user id when this was the
        user's last socket in the channel, and whether the channel became vacant.
        """
        channel = self.channels.get(name)
        if channel is None or conn not in channel.subscribers:
            return None, False
        user_id = channel.subscribers[conn]
        removed = None
        if user_id is not None:
            member = channel.members[user_id]
            member.sockets -= 1
            if member.sockets == 0:
                del channel.members[user_id]
                removed = user_id
        return removed, self.unsubscribe(name, conn)

    def member_count(self, name: str) -> int:
        """Number of unique users in presence channel ``name``."""
        channel = self.channels.get(name)
        return 0 if channel is None else len(channel.members)

    def is_member(self, name: str, user_id: str) -> bool:
        """Whether ``user_id`` is a member of presence channel ``name``."""
        channel = self.channels.get(name)
        return channel is not None and user_id in channel.members

    # --- delivery -----------------------------------------------------------------

    def fan_out(self, name: str, frame: bytes, except_socket: str | None) -> int:
        """Hand ``frame`` to every subscriber of ``name`` but ``except_socket``.

        Never awaits: a subscriber that can't keep up closes itself later.
        Returns the number of subscribers the frame was handed to.
        """
        channel = self.channels.get(name)
        if channel is None:
            return 0
        subscribers = channel.subscribers
        if except_socket is None:  # the common case: no comparison per subscriber
            for conn in subscribers:
                conn.send(frame)
            return len(subscribers)
        sent = 0
        for conn in subscribers:
            if conn.socket_id != except_socket:
                conn.send(frame)
                sent += 1
        return sent

    def terminate_user(self, user_id: str, code: int, reason: str) -> int:
        """Close every connection signed in as ``user_id``; returns how many."""
        victims = [c for c in self.connections.values() if c.user_id == user_id]
        for conn in victims:
            conn.close_soon(code, reason)
        return len(victims)

    def iter_channels(self, prefix: str = "") -> Iterator[Channel]:
        """Occupied channels whose name starts with ``prefix``."""
        for name, channel in self.channels.items():
            if name.startswith(prefix):
                yield channel


_MISSING = object()
