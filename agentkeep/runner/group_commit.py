"""Group commit: the small writes of many concurrent tasks, one transaction per round.

A streamed run commits its deltas in batches, and a streamed response its
events; with many of them in flight, each batch in a transaction of its own
made them queue behind one another's commits (and, on PostgreSQL, cost a
BEGIN, a COMMIT and a thread hop each). A :class:`GroupCommit` takes the
items of every task that writes through it: ``write()`` queues an item and
waits until it is committed. While a round commits, the items queued
meanwhile wait for the next round, which takes them all, so no item waits
for more than the round before it. If a round of several items fails (say
one response was deleted meanwhile), its items are written one by one, so
each writer gets its own outcome; a round of one has had it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "one_transaction"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Writes items with ``write_all(items)`` (a blocking store call) through ``db``.

    ``write_all`` must store every item of the list in one transaction, all
    or nothing, and return each item's result in order (or ``None``: no
    results); ``db`` runs it off the event loop (a worker thread).
    """

    def __init__(
        self,
        db: Callable[..., Awaitable[Any]],
        write_all: Callable[[list[T]], Sequence[R] | None],
    ) -> None:
        self._db = db
        self._write_all = write_all
        self._queue: list[tuple[T, asyncio.Future[R | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, item: T) -> R | None:
        """Queue ``item``, wait until it is committed, and return its result.

        Raises what its write raised, if it failed (written alone, after its
        round failed).
        """
        done: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="group commit")
        return await done

    async def _drain(self) -> None:
        round_: list[tuple[T, asyncio.Future[R | None]]] = []
        try:
            while self._queue:
                round_, self._queue = self._queue, []
                try:
                    results = await self._db(self._write_all, [item for item, _ in round_])
                except Exception as exc:
                    if len(round_) == 1:  # it was written alone already: that is its outcome
                        if not round_[0][1].done():
                            round_[0][1].set_exception(exc)
                        continue
                    for item, done in round_:
                        await self._one(item, done)
                else:
                    for i, (_, done) in enumerate(round_):
                        if not done.done():
                            done.set_result(results[i] if results is not None else None)
        finally:
            self._task = None
            for _, done in round_ + self._queue:  # cancelled (the loop is closing)
                if not done.done():
                    done.cancel()
            self._queue = []

    async def _one(self, item: T, done: asyncio.Future[R | None]) -> None:
        try:
            results = await self._db(self._write_all, [item])
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(results[0] if results is not None else None)


def one_transaction(
    write: Callable[..., R], order: Callable[[Any], Any] | None = None
) -> Callable[[Sequence[Any]], list[R]]:
    """The ``write_all`` that makes each item's own write, all in one transaction.

    Each item is a tuple of ``write``'s arguments, the first a tenant view of
    one store, whose ``transaction(savepoints=False)`` holds the round (all or
    nothing); the results are ``write``'s, in the items' order. With ``order``
    (a sort key of an item) the writes are made in that key's order: rounds
    that lock rows (a thread's, say) in one order cannot each hold a row
    another round waits for, on PostgreSQL where several processes write.
    """

    def write_all(items: Sequence[Any]) -> list[R]:
        indexed = list(enumerate(items))
        if order is not None:
            key = order
            indexed.sort(key=lambda pair: key(pair[1]))
        results: list[Any] = [None] * len(items)
        with items[0][0].transaction(savepoints=False):
            for i, item in indexed:
                results[i] = write(*item)
        return results

    return write_all
