"""The async store: the sync store's operations, awaited.

Each operation is implemented once, in the sync store. Its awaitable twin is
generated from the sync signature (``agentkeep/_aio_resources.py``, by
``scripts/gen_aio.py``) and runs the sync method in a worker thread, so the
event loop never blocks on the database. Generators (``events.follow``)
become async iterators and ``lock`` an async context manager.
"""

from __future__ import annotations

import asyncio
import functools
from contextlib import AbstractAsyncContextManager
from typing import Any

from agentkeep._aio_resources import (
    AsyncAgents,
    AsyncBackups,
    AsyncCheckpoints,
    AsyncEvents,
    AsyncGraphItems,
    AsyncHistory,
    AsyncMediaCache,
    AsyncMessages,
    AsyncPrices,
    AsyncRateLimits,
    AsyncResponses,
    AsyncRuns,
    AsyncRunSteps,
    AsyncSessions,
    AsyncSnapshots,
    AsyncStateDocs,
    AsyncStats,
    AsyncToolCalls,
    AsyncUsage,
)
from agentkeep._aio_util import acm_thread
from agentkeep.models import ConsistencyReport, ErasureReceipt, Health, StoreMetrics
from agentkeep.store import Store, connect

__all__ = ["AsyncStore", "aconnect"]


class AsyncStore:
    """``await astore.messages.append(...)``: the methods of :class:`Store`, awaited."""

    def __init__(self, store: Store) -> None:
        self.sync = store
        self.tenant_id = store.tenant_id
        self.agents = AsyncAgents(store.agents)
        self.sessions = AsyncSessions(store.sessions)
        self.messages = AsyncMessages(store.messages)
        self.runs = AsyncRuns(store.runs)
        self.run_steps = AsyncRunSteps(store.run_steps)
        self.events = AsyncEvents(store.events)
        self.tool_calls = AsyncToolCalls(store.tool_calls)
        self.usage = AsyncUsage(store.usage)
        self.prices = AsyncPrices(store.prices)
        self.snapshots = AsyncSnapshots(store.snapshots)
        self.state = AsyncStateDocs(store.state)
        self.responses = AsyncResponses(store.responses)
        self.stats = AsyncStats(store.stats)
        self.checkpoints = AsyncCheckpoints(store.checkpoints)
        self.graph_items = AsyncGraphItems(store.graph_items)
        self.backups = AsyncBackups(store.backups)
        self.rate_limits = AsyncRateLimits(store.rate_limits)
        self.history = AsyncHistory(store.history)
        self.media = AsyncMediaCache(store.media)

    @property
    def backend(self) -> str:
        return self.sync.backend

    def tenant(self, tenant_id: str) -> AsyncStore:
        """The same database, scoped to ``tenant_id``."""
        return AsyncStore(self.sync.tenant(tenant_id))

    async def health(self) -> Health:
        return await asyncio.to_thread(self.sync.health)

    async def check_consistency(self, *, agent_id: str | None = None) -> ConsistencyReport:
        return await asyncio.to_thread(self.sync.check_consistency, agent_id=agent_id)

    async def get_metrics(self) -> StoreMetrics:
        return await asyncio.to_thread(self.sync.get_metrics)

    async def erase_user(self, user_id: str) -> ErasureReceipt:
        return await asyncio.to_thread(self.sync.erase_user, user_id)

    def lock(
        self, name: str, *, ttl: float = 30.0, wait: float = 10.0
    ) -> AbstractAsyncContextManager[None]:
        """``async with astore.lock("name", ttl=..., wait=...):``"""
        return acm_thread(functools.partial(self.sync.lock, name, ttl=ttl, wait=wait))

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncStore {self.backend} tenant={self.tenant_id!r}>"


async def aconnect(url: str | None = None, **kwargs: Any) -> AsyncStore:
    """Open an async store; the arguments are those of :func:`agentkeep.connect`."""
    return AsyncStore(await asyncio.to_thread(connect, url, **kwargs))
