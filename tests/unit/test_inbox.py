"""The inbox runs a connection's jobs in order, inline while nothing waits."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from pbxws.inbox import Inbox


class Owner:
    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.drained = 0

    def job_failed(self, exc: Exception) -> None:
        self.errors.append(exc)

    def jobs_drained(self) -> None:
        self.drained += 1


async def record(log: list[str], name: str) -> None:
    log.append(name)


async def test_an_idle_inbox_runs_a_job_that_never_waits_inside_submit() -> None:
    log: list[str] = []
    inbox = Inbox(Owner(), inline=True)
    inbox.submit(record(log, "a"))
    assert log == ["a"]  # nothing was awaited: it ran in the caller
    assert not inbox.busy


async def test_jobs_behind_one_that_waits_run_after_it_in_order() -> None:
    log: list[str] = []
    owner = Owner()
    inbox = Inbox(owner, inline=True)
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        log.append("w-start")
        log.append(await gate)  # the future's result reaches the coroutine

    inbox.submit(waits())
    inbox.submit(record(log, "b"))
    inbox.submit(record(log, "c"))
    assert log == ["w-start"]
    assert inbox.busy and len(inbox) == 2
    await asyncio.sleep(0)
    assert log == ["w-start"]  # still waiting: nothing overtook it
    gate.set_result("w-end")
    while inbox.busy:
        await asyncio.sleep(0)
    assert log == ["w-start", "w-end", "b", "c"]
    assert owner.drained == 1
    inbox.submit(record(log, "d"))  # idle again: inline again
    assert log[-1] == "d"


async def test_an_exception_from_a_future_reaches_the_resumed_coroutine() -> None:
    caught: list[str] = []
    inbox = Inbox(Owner(), inline=True)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        try:
            await gate
        except LookupError as exc:
            caught.append(str(exc))

    inbox.submit(waits())
    gate.set_exception(LookupError("gone"))
    while inbox.busy:
        await asyncio.sleep(0)
    assert caught == ["gone"]


async def test_a_failing_job_is_reported_and_the_queued_ones_dropped() -> None:
    log: list[str] = []
    owner = Owner()
    inbox = Inbox(owner, inline=True)

    async def boom() -> None:
        raise ValueError("inline")

    inbox.submit(boom())
    assert [str(e) for e in owner.errors] == ["inline"]

    async def waits_then_fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("in task")

    inbox.submit(waits_then_fails())
    dropped = record(log, "dropped")
    inbox.submit(dropped)
    while inbox.busy:
        await asyncio.sleep(0)
    assert [str(e) for e in owner.errors] == ["inline", "in task"]
    assert log == []
    assert len(inbox) == 0
    # Closed, not left for the garbage collector to warn "never awaited".
    assert inspect.getcoroutinestate(dropped) == inspect.CORO_CLOSED


@pytest.mark.parametrize("steps_first", [0, 2])
async def test_cancelling_the_task_cancels_the_resumed_coroutine(
    steps_first: int,
) -> None:
    cleaned: list[bool] = []
    inbox = Inbox(Owner(), inline=True)

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    inbox.submit(waits_forever())
    task = inbox._task
    assert task is not None
    for _ in range(steps_first):  # 0: cancelled before the task's first step
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert not inbox.busy


async def test_not_inline_every_job_runs_in_a_task_in_order() -> None:
    log: list[str] = []
    inbox = Inbox(Owner(), inline=False)

    async def needs_a_task() -> None:
        log.append(f"task={asyncio.current_task() is not None}")

    inbox.submit(needs_a_task())
    inbox.submit(record(log, "b"))
    assert log == []  # nothing runs in the caller
    while inbox.busy:
        await asyncio.sleep(0)
    assert log == ["task=True", "b"]


async def test_a_job_submitted_by_a_running_inline_job_runs_after_it() -> None:
    """E.g. a message handler that closes the connection queues the unregistration."""
    log: list[str] = []
    inbox = Inbox(Owner(), inline=True)

    async def outer() -> None:
        log.append("outer-start")
        inbox.submit(record(log, "inner"))
        log.append("outer-end")

    inbox.submit(outer())
    assert log == ["outer-start", "outer-end", "inner"]
    assert not inbox.busy

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def outer_waits() -> None:
        inbox.submit(record(log, "inner-2"))
        await gate
        log.append("outer-2-end")

    inbox.submit(outer_waits())
    assert log[-1] == "inner"  # inner-2 waits for its elder
    gate.set_result(None)
    while inbox.busy:
        await asyncio.sleep(0)
    assert log[-2:] == ["outer-2-end", "inner-2"]
