"""Group commit: the small writes of many concurrent tasks, one transaction per round.

A streamed run commits its deltas in batches, and a streamed response its
events; with many of them in flight, each batch in a transaction of its own
made them queue behind one another's commits (and, on PostgreSQL, cost a
BEGIN, a COMMIT and a thread hop each). A :class:`GroupCommit` takes the
items of every task that writes through it: ``write()`` queues an item and
waits until it is committed. While a round commits, the items queued
meanwhile wait for the next round, which takes them all, so no item waits
for more than the round before it. If a round fails (say one response was
deleted meanwhile), its items are written one by one, so each writer gets
its own outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Writes items with ``write_all(items)`` (a blocking store call) through ``db``.

    ``write_all`` must store every item of the list in one transaction, all
    or nothing; ``db`` runs it off the event loop (a worker thread).
    """

    def __init__(
        self, db: Callable[..., Awaitable[Any]], write_all: Callable[[list[T]], object]
    ) -> None:
        self._db = db
        self._write_all = write_all
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, item: T) -> None:
        """Queue ``item`` and wait until it is committed (its write's error, if it failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="group commit")
        await done

    async def _drain(self) -> None:
        round_: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._queue:
                round_, self._queue = self._queue, []
                try:
                    await self._db(self._write_all, [item for item, _ in round_])
                except Exception:
                    for item, done in round_:
                        await self._one(item, done)
                else:
                    for _, done in round_:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._task = None
            for _, done in round_ + self._queue:  # cancelled (the loop is closing)
                if not done.done():
                    done.cancel()
            self._queue = []

    async def _one(self, item: T, done: asyncio.Future[None]) -> None:
        try:
            await self._db(self._write_all, [item])
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(None)
