"""One connection's jobs, run one at a time in the order they arrived.

Theory of operation. A WebSocket message or an API request of one connection
must be handled after the one before it. The plain way is a task per
connection that drains a queue; but a task costs about 1.5 µs to create and
schedule, which at thousands of requests per second is a tenth of the user-space
cost of a publish. With the local adapter almost every job finishes without
waiting for anything. So, when the adapter allows it (``inline``), a job that
arrives while the connection is idle is started at once, in the caller (the
protocol's ``data_received``); only if it suspends does a task take over,
continuing that same coroutine, and the jobs that arrive meanwhile queue
behind it. A job submitted by the running one (a handler that closes its
connection queues the unregistration) also waits for it to finish. This is
what Python 3.12's eager tasks do, without their global switch.

Not inline for the Redis adapter: redis-py enters ``asyncio.timeout`` before
its first suspension, which on Python 3.11 needs a current task.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine, Generator
from typing import Any, Protocol

__all__ = ["Inbox", "Job", "Owner"]

# A job is a coroutine object, not started: ``inbox.submit(handle(message))``.
Job = Coroutine[Any, Any, None]


class Owner(Protocol):
    """The protocol whose jobs an :class:`Inbox` runs."""

    def job_failed(self, exc: Exception) -> None:
        """A job raised; the jobs queued behind it were dropped."""

    def jobs_drained(self) -> None:
        """A job had to wait, and the queue has run dry since."""


class Inbox:
    """Runs one connection's jobs in order (see the module's docstring)."""

    __slots__ = ("_inline", "_jobs", "_owner", "_running", "_task")

    def __init__(self, owner: Owner, *, inline: bool) -> None:
        self._owner = owner
        self._inline = inline
        # Jobs waiting for the one in progress; None when none ever waited.
        self._jobs: collections.deque[Job] | None = None
        # Drains the queue while a job waits; None when idle.
        self._task: asyncio.Task[None] | None = None
        # Whether a job is running inline, in submit() (then new jobs queue).
        self._running = False

    @property
    def busy(self) -> bool:
        """Whether a job is in progress (then new jobs queue)."""
        return self._task is not None or self._running

    def __len__(self) -> int:
        return len(self._jobs) if self._jobs is not None else 0

    def clear(self) -> None:
        """Drop the jobs not started yet."""
        jobs = self._jobs
        while jobs:
            jobs.popleft().close()  # never started: closing runs nothing

    def submit(self, job: Job) -> None:
        """Run ``job`` now if idle, else after the jobs before it."""
        if self._task is not None or self._running:
            self._queue().append(job)  # a job running inline may submit one
            return
        if not self._inline:
            self._queue().append(job)
            self._start_task(None)
            return
        self._running = True
        try:
            while True:
                try:
                    waiting = job.send(None)
                except StopIteration:
                    pass
                except Exception as exc:
                    self.clear()
                    self._owner.job_failed(exc)
                    return
                else:
                    self._start_task(_Resume(job, waiting))
                    return
                if not self._jobs:
                    return
                job = self._jobs.popleft()  # submitted while the last one ran
        finally:
            self._running = False

    def _start_task(self, started: _Resume | None) -> None:
        task = self._task = asyncio.get_running_loop().create_task(self._drain(started))

        def done(_: object) -> None:
            # Only matters for a task cancelled before its first step, whose
            # body never ran: forget it, and finish the coroutine it held.
            if self._task is task:
                self._task = None
            if started is not None:
                started.close()

        task.add_done_callback(done)

    def _queue(self) -> collections.deque[Job]:
        if self._jobs is None:
            self._jobs = collections.deque()
        return self._jobs

    async def _drain(self, started: _Resume | None) -> None:
        try:
            if started is not None:
                await started
            jobs = self._jobs
            while jobs:
                await jobs.popleft()
        except Exception as exc:
            self.clear()
            self._owner.job_failed(exc)
        finally:
            self._task = None
        self._owner.jobs_drained()


class _Resume:
    """Awaiting it continues a coroutine that was started outside any task."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coro = coro
        # What the coroutine yielded when it suspended (a future, or None).
        self._waiting = waiting

    def close(self) -> None:
        """Close the coroutine if it has not finished (a no-op if it has)."""
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self._coro, self._waiting
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation goes to the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return
