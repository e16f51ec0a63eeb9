"""Run sync iterators and context managers from async code, in worker threads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, TypeVar

__all__ = ["acm_thread", "aiter_thread"]

T = TypeVar("T")
_DONE: Any = object()


async def aiter_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """An async iterator over a sync iterator, each ``next`` in a worker thread."""
    it = await asyncio.to_thread(make)
    try:
        while True:
            item = await asyncio.to_thread(next, it, _DONE)
            if item is _DONE:
                return
            yield item
    finally:
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
