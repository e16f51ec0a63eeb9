"""The two APIs of the store an integration is given."""

from __future__ import annotations

from agentkeep.aio import AsyncStore
from agentkeep.store import Store

__all__ = ["sync_and_async"]


def sync_and_async(store: Store | AsyncStore) -> tuple[Store, AsyncStore]:
    """The store's sync API and its async one, whichever of the two was given (an
    ``AsyncStore`` over a ``Store`` costs a few microseconds to make)."""
    if isinstance(store, AsyncStore):
        return store.sync, store
    return store, AsyncStore(store)
