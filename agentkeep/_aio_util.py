"""The async API's runners: native operations, and sync iterators and context managers in threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from agentkeep.store._steps import operation

__all__ = ["acm_thread", "aiter_thread", "arun_op"]

T = TypeVar("T")
P = ParamSpec("P")
_DONE: Any = object()


async def arun_op(method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await an operation of the sync store (a method made by ``store._steps.op``), natively.

    The same generator the sync method runs, driven by the store's async
    connections (``Core.arun_op``): no worker thread per call.
    """
    resource: Any = getattr(method, "__self__")  # noqa: B009 (a bound method's owner)
    result: T = await resource._core.arun_op(operation(method, *args, **kwargs))
    return result


async def aiter_thread(
    make: Callable[[], Iterator[T]], *, cancel: threading.Event | None = None
) -> AsyncIterator[T]:
    """An async iterator over a sync iterator, each ``next`` in a worker thread.

    When the consumer stops (break, ``aclose``, task cancellation) ``cancel`` is
    set, so a blocking iterator that watches it (``events.follow``) returns; the
    pending ``next`` is awaited before the iterator is closed, since a generator
    cannot be closed while another thread runs it.
    """
    it = await asyncio.to_thread(make)
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(asyncio.to_thread(next, it, _DONE))
            item = await asyncio.shield(pending)
            pending = None
            if item is _DONE:
                return
            yield item
    finally:
        if cancel is not None:
            cancel.set()
        if pending is not None:
            await asyncio.wait({pending})
        close = getattr(it, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


@asynccontextmanager
async def acm_thread(make: Callable[[], AbstractContextManager[T]]) -> AsyncIterator[T]:
    """An async context manager over a sync one, entered and exited in worker threads."""
    cm = await asyncio.to_thread(make)
    value = await asyncio.to_thread(cm.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await asyncio.to_thread(cm.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await asyncio.to_thread(cm.__exit__, None, None, None)
