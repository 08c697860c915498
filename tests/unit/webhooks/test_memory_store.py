"""The webhook decisions and queues of a single node: no event loop, a fake truth."""

from __future__ import annotations

from pbxws.webhooks.events import MAX_BATCH
from pbxws.webhooks.store import Claim, MemoryStore, Notice

URL = "https://h/x"


class Truth:
    """What the adapter would say: occupied channels and (channel, user) members."""

    def __init__(self) -> None:
        self.channels: set[str] = set()
        self.members: set[tuple[str, str]] = set()

    def occupied(self, app_id: str, channel: str) -> bool:
        return channel in self.channels

    def member(self, app_id: str, channel: str, user_id: str) -> bool:
        return (channel, user_id) in self.members


def store(truth: Truth, *, grace: float = 3.0, window: float = 0.0, limit: int = 100):
    return MemoryStore(truth, grace=grace, window=window, limit=limit)


def up(channel: str) -> Notice:
    return Notice(
        "u",
        "1",
        channel,
        "",
        b"up:" + channel.encode(),
        (URL,),
        b"down:" + channel.encode(),
        (URL,),
    )


def down(channel: str) -> Notice:
    return up(channel)._replace(kind="d")


def event(n: int) -> Notice:
    return Notice("e", "1", "c", "", b"e%d" % n, (URL,))


def sent(s: MemoryStore, now: float, limit: int = 10) -> list[bytes]:
    """Claim, ack and return every event due at ``now``."""
    out: list[bytes] = []
    while True:
        claims, _, _ = s.claim_now(now, limit)
        if not claims:
            return out
        for claim in claims:
            out += claim.events
            s.ack_now(claim, now)


def test_up_at_once_down_after_the_grace() -> None:
    """Occupied goes at once; vacated waits for the grace, then goes if still vacant."""
    truth = Truth()
    s = store(truth)
    truth.channels.add("c")
    s.accept_now([up("c")], 0.0)
    assert sent(s, 0.0) == [b"up:c"]
    truth.channels.discard("c")
    s.accept_now([down("c")], 1.0)
    assert sent(s, 3.9) == []
    assert s.claim_now(3.9, 1)[2] == 4.0  # next due: the vacated
    assert sent(s, 4.0) == [b"down:c"]
    assert s.held() == 0


def test_coming_back_within_the_grace_suppresses_both() -> None:
    """Vacated then occupied again within the grace: no vacated, no second occupied."""
    truth = Truth()
    s = store(truth)
    truth.channels.add("c")
    s.accept_now([up("c")], 0.0)
    truth.channels.discard("c")
    tally = s.accept_now([down("c")], 1.0)
    truth.channels.add("c")
    tally += s.accept_now([up("c")], 2.0)
    assert tally == {("1", "suppressed"): 1}
    assert sent(s, 10.0) == [b"up:c"]


def test_notices_out_of_order_still_give_up_then_down() -> None:
    """A down notice before its up (another node was faster): up, then down after the grace."""
    truth = Truth()  # the channel was occupied and vacated already
    s = store(truth)
    s.accept_now([down("c")], 0.0)  # never announced: nothing
    s.accept_now([up("c")], 0.5)  # announces, and sees it is vacant already
    assert sent(s, 0.5) == [b"up:c"]
    assert sent(s, 3.5) == [b"down:c"]


def test_a_due_down_event_checks_the_truth() -> None:
    """If the key is back when the delay ends (its up notice still in flight), no down."""
    truth = Truth()
    s = store(truth)
    truth.channels.add("c")
    s.accept_now([up("c")], 0.0)
    truth.channels.discard("c")
    s.accept_now([down("c")], 0.0)
    truth.channels.add("c")  # re-occupied; its notice has not arrived yet
    claims, tally, _ = s.claim_now(3.0, 10)
    assert tally == {("1", "suppressed"): 1}
    assert [e for c in claims for e in c.events] == [b"up:c"]


def test_members_are_keyed_by_user() -> None:
    """Member transitions of two users are independent."""
    truth = Truth()
    s = store(truth)
    notices = [
        Notice(
            "u",
            "1",
            "p",
            user,
            b"add:" + user.encode(),
            (URL,),
            b"rm:" + user.encode(),
            (URL,),
        )
        for user in ("a", "b")
    ]
    truth.members |= {("p", "a"), ("p", "b")}
    s.accept_now(notices, 0.0)
    truth.members.discard(("p", "a"))
    s.accept_now([notices[0]._replace(kind="d")], 0.0)
    assert sent(s, 5.0) == [b"add:a", b"add:b", b"rm:a"]


def test_a_batch_collects_its_window() -> None:
    """Events within the window share one delivery."""
    s = store(Truth(), window=0.05)
    s.accept_now([event(1)], 0.0)
    s.accept_now([event(2)], 0.04)
    assert s.claim_now(0.049, 10)[0] == []
    (claim,), _, _ = s.claim_now(0.05, 10)
    assert claim.events == [b"e1", b"e2"]


def test_only_the_head_is_in_flight_and_a_backlog_is_batched() -> None:
    """While the head is out, new events gather behind it in full batches, in order."""
    s = store(Truth(), limit=1000)
    s.accept_now([event(0)], 0.0)
    (head,), _, _ = s.claim_now(0.0, 10)
    s.accept_now([event(n) for n in range(1, 151)], 0.1)
    assert s.claim_now(0.2, 10)[0] == []  # the endpoint is busy
    s.retry_now(head, 1.0)
    assert s.claim_now(0.5, 10)[0] == []  # waiting for its retry
    s.accept_now([event(151)], 0.6)  # never joins a delivery already tried
    (again,), _, _ = s.claim_now(1.0, 10)
    assert (again.delivery, again.attempt, again.first) == (head.delivery, 1, 0.0)
    s.ack_now(again, 1.1)
    sizes = []
    while claims := s.claim_now(2.0, 10)[0]:
        sizes.append(len(claims[0].events))
        s.ack_now(claims[0], 2.0)
    assert sizes == [MAX_BATCH, 51]
    assert s.held() == 0


def test_queue_limit_drops_and_counts() -> None:
    """Past the limit events are dropped, per target, and counted."""
    s = store(Truth(), limit=3)
    tally = s.accept_now([event(n) for n in range(5)], 0.0)
    assert tally == {("1", "dropped"): 2}
    assert s.held() == 3


def test_a_stale_claim_changes_nothing() -> None:
    """Acks and retries of a delivery that is no longer the head are ignored."""
    s = store(Truth())
    s.accept_now([event(1)], 0.0)
    (claim,), _, _ = s.claim_now(0.0, 10)
    s.ack_now(claim, 0.0)
    s.accept_now([event(2)], 0.0)
    s.ack_now(claim, 0.0)
    s.retry_now(claim, 9.0)
    ghost = Claim("1", URL, "nope", [], 0, 0.0)
    s.ack_now(ghost, 0.0)
    assert sent(s, 0.0) == [b"e2"]


async def test_expedite_makes_everything_due_now() -> None:
    """At the shutdown of a single node, delayed events and windows end at once."""
    truth = Truth()
    s = store(truth, window=10.0)
    truth.channels.add("c")
    s.accept_now([up("c")], 0.0)
    truth.channels.discard("c")
    s.accept_now([down("c")], 0.0)
    await s.expedite(1.0)
    assert sent(s, 1.0) == [b"up:c", b"down:c"]


async def test_release_gives_a_claim_back_without_an_attempt() -> None:
    """A released claim is claimable again at the given time, attempt unchanged."""
    s = store(Truth())
    s.accept_now([event(1)], 0.0)
    (claim,), _, _ = s.claim_now(0.0, 10)
    await s.release(claim, 2.0)
    assert s.claim_now(1.9, 10)[0] == []
    (again,), _, _ = s.claim_now(2.0, 10)
    assert (again.delivery, again.attempt) == (claim.delivery, 0)
