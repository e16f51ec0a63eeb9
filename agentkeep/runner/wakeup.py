"""A wait that another callback ends: one future per wait, no task.

The loops that read an upstream answer (a run's :class:`~agentkeep.runner.answer.DeltaBuffer`,
a response's :class:`~agentkeep.runner.response_run.ResponseRun`) sleep
until a delta arrives, the upstream call ends or a timer fires, many times
per answer and for every answer in flight. ``asyncio.wait`` on an
``Event.wait()`` task made a task, a set of callbacks and a cancellation per
sleep; here a sleep is one future that :meth:`Wakeup.set` (a delta, or the
call's done callback) or one ``call_later`` timer resolves.
"""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


class Wakeup:
    """``await wakeup.wait(timeout)`` returns at the next :meth:`set`, or after ``timeout`` s.

    Unlike an ``asyncio.Event`` it keeps no flag: a :meth:`set` with no one
    waiting is lost, so the waiter checks its condition before each wait
    (the loops here do: they look at what arrived first). One waiter at a time.
    """

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def set(self, _: object = None) -> None:
        """Wake the waiter, if any (usable as a done callback: the argument is ignored)."""
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until :meth:`set` is called or ``timeout`` seconds pass (no error on timeout)."""
        loop = asyncio.get_running_loop()
        future = self._future = loop.create_future()
        timer = loop.call_later(timeout, self.set)
        try:
            await future
        finally:
            timer.cancel()
            self._future = None
