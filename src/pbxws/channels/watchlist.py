"""Watchlists of one app on this node: who watches whom, and who is online.

Theory of operation. A user is online while signed in on at least one
connection, cluster-wide. Sockets that signed in with a ``watchlist`` are
*watchers*; this node keeps, for each user watched here, one *view*: the
user's status as this node last learnt it, with the version of the change
that set it. Every watcher of a user shares that view, so all of them see
the same sequence of ``pusher_internal:watchlist_events``.

Versions order the changes. The adapter numbers every online/offline change
(increasing, cluster-wide) and a view only moves forward: a change older than
what the view already reflects is dropped, so messages from two nodes that
arrive out of order cannot leave a stale status behind. A status query reads
the current version too; applying it with :meth:`Watchlists.refresh` is then
exactly like applying every change up to that version at once.

A new watcher's views are created (and *held*) before the adapter's status
query is awaited, so a change announced while the query is in flight is not
lost: it lands on the held view and the query result, if older, is dropped.
The watcher is attached only after the query, which means it is never told a
change before its initial state. Everything here is synchronous.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pbxws.protocol.frames import text_frame
from pbxws.protocol.messages import watchlist_events

if TYPE_CHECKING:
    from .registry import Subscriber

__all__ = ["Watchlists"]


class _View:
    """What this node knows of one watched user."""

    __slots__ = ("holds", "online", "version", "watchers")

    def __init__(self) -> None:
        # The user's status; None until a query or a change tells us.
        self.online: bool | None = None
        # Version of the change (or query) the status reflects; -1: none yet.
        self.version = -1
        # Connections watching this user, in the order they started.
        self.watchers: dict[Subscriber, None] = {}
        # Status queries in flight that will attach a watcher to this view.
        self.holds = 0


class Watchlists:
    """Watchers by watched user id, and this node's view of each watched user."""

    def __init__(self) -> None:
        # Watched user id -> view; a view without watchers or holds is dropped.
        self._views: dict[str, _View] = {}

    def __bool__(self) -> bool:
        return bool(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def watched(self) -> list[str]:
        """Every user id watched on this node (for a refresh after an outage)."""
        return list(self._views)

    def watchers(self, user_id: str) -> list[Subscriber]:
        """The connections watching ``user_id`` here."""
        view = self._views.get(user_id)
        return [] if view is None else list(view.watchers)

    # --- watchers ---------------------------------------------------------------

    def hold(self, user_ids: Iterable[str]) -> None:
        """Keep views of ``user_ids`` while a status query for them is awaited."""
        for user_id in user_ids:
            view = self._views.get(user_id)
            if view is None:
                view = self._views[user_id] = _View()
            view.holds += 1

    def release(self, user_ids: Iterable[str]) -> None:
        """End a :meth:`hold` (after the watcher was attached, or on failure)."""
        for user_id in user_ids:
            view = self._views.get(user_id)
            if view is not None:
                view.holds -= 1
                self._prune(user_id, view)

    def attach(self, conn: Subscriber, user_ids: Iterable[str]) -> None:
        """Send ``conn`` every change of ``user_ids`` from now on."""
        for user_id in user_ids:
            view = self._views.get(user_id)
            if view is None:
                view = self._views[user_id] = _View()
            view.watchers[conn] = None

    def detach(self, conn: Subscriber, user_ids: Iterable[str]) -> None:
        """Stop sending ``conn`` the changes of ``user_ids``."""
        for user_id in user_ids:
            view = self._views.get(user_id)
            if view is not None:
                view.watchers.pop(conn, None)
                self._prune(user_id, view)

    def _prune(self, user_id: str, view: _View) -> None:
        if not view.watchers and view.holds <= 0:
            del self._views[user_id]

    # --- statuses ---------------------------------------------------------------

    def update(self, user_id: str, online: bool, version: int | None) -> int:
        """Apply one change; tell the watchers if it changes what they know.

        ``version`` None applies the change whatever the view's version (a
        change seen locally while the cluster can't be asked). Returns the
        number of watchers told.
        """
        view = self._views.get(user_id)
        if view is None:
            return 0
        if version is not None:
            if version <= view.version:
                return 0  # older than what the view reflects: already known
            view.version = version
        if view.online is online:
            return 0
        view.online = online
        ids = [user_id]
        frame = text_frame(
            watchlist_events(ids, []) if online else watchlist_events([], ids)
        )
        for conn in view.watchers:
            conn.send(frame)
        return len(view.watchers)

    def refresh(self, statuses: Mapping[str, bool], version: int) -> None:
        """Apply a status query that reflects every change up to ``version``."""
        for user_id, online in statuses.items():
            self.update(user_id, online, version)

    def fill_unknown(self, statuses: Mapping[str, bool]) -> None:
        """Set views that have no status yet (the query could not be made)."""
        for user_id, online in statuses.items():
            view = self._views.get(user_id)
            if view is not None and view.online is None:
                view.online = online

    def statuses(self, user_ids: Iterable[str]) -> dict[str, bool]:
        """What this node knows of ``user_ids``; unknown counts as offline."""
        out = {}
        for user_id in user_ids:
            view = self._views.get(user_id)
            out[user_id] = bool(view is not None and view.online)
        return out
