"""The async store: the sync store's operations, awaited.

Each operation is implemented once, in the sync store; ``AsyncStore`` derives
its methods from it and runs them in a worker thread, so the event loop never
blocks on the database. Generators (``events.follow``) become async iterators
and context managers (``lock``) async context managers.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar

from agentkeep.models import ConsistencyReport, Health
from agentkeep.store import Store, connect

__all__ = ["AsyncResource", "AsyncStore", "aconnect"]

R = TypeVar("R")
_DONE = object()


def _next(it: Iterator[Any]) -> Any:
    return next(it, _DONE)


async def _aiter(make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    it = await asyncio.to_thread(make)
    try:
        while True:
            item = await asyncio.to_thread(_next, it)
            if item is _DONE:
                return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


@asynccontextmanager
async def _acm(make: Callable[[], AbstractContextManager[Any]]) -> AsyncIterator[Any]:
    cm = await asyncio.to_thread(make)
    value = await asyncio.to_thread(cm.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await asyncio.to_thread(cm.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await asyncio.to_thread(cm.__exit__, None, None, None)


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            return _aiter(functools.partial(fn, *args, **kwargs))

        return gen
    if getattr(fn, "_agentkeep_context", False):

        @functools.wraps(fn)
        def cm(*args: Any, **kwargs: Any) -> Any:
            return _acm(functools.partial(fn, *args, **kwargs))

        return cm

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    return call


class AsyncResource(Generic[R]):
    """The awaitable twin of one entity store (``astore.messages``, ...)."""

    def __init__(self, sync: R) -> None:
        self._sync = sync

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._sync, name)
        if not callable(attr):
            return attr  # type: ignore[no-any-return]
        wrapped = _wrap(attr)
        setattr(self, name, wrapped)
        return wrapped

    def __dir__(self) -> list[str]:
        return [n for n in dir(self._sync) if not n.startswith("_")]


class AsyncStore:
    """The async store: ``await astore.messages.append(...)``; same methods as :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.sync = store
        self.tenant_id = store.tenant_id
        self.agents = AsyncResource(store.agents)
        self.sessions = AsyncResource(store.sessions)
        self.messages = AsyncResource(store.messages)
        self.runs = AsyncResource(store.runs)
        self.run_steps = AsyncResource(store.run_steps)
        self.events = AsyncResource(store.events)
        self.tool_calls = AsyncResource(store.tool_calls)
        self.usage = AsyncResource(store.usage)
        self.snapshots = AsyncResource(store.snapshots)
        self.state = AsyncResource(store.state)
        self.stats = AsyncResource(store.stats)

    @property
    def backend(self) -> str:
        return self.sync.backend

    def tenant(self, tenant_id: str) -> AsyncStore:
        return AsyncStore(self.sync.tenant(tenant_id))

    async def health(self) -> Health:
        return await asyncio.to_thread(self.sync.health)

    async def check_consistency(self) -> ConsistencyReport:
        return await asyncio.to_thread(self.sync.check_consistency)

    def lock(
        self, name: str, *, ttl: float = 30.0, wait: float = 10.0
    ) -> AbstractAsyncContextManager[None]:
        """``async with astore.lock("name", ttl=..., wait=...):``"""
        return _acm(functools.partial(self.sync.lock, name, ttl=ttl, wait=wait))

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def aconnect(url: str | None = None, **kwargs: Any) -> AsyncStore:
    """Open an async store; the arguments are those of :func:`agentkeep.connect`."""
    return AsyncStore(await asyncio.to_thread(connect, url, **kwargs))
