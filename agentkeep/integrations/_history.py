"""Reading the newest messages of a session, however many are asked for."""

from __future__ import annotations

from agentkeep.aio import AsyncStore
from agentkeep.models import Message
from agentkeep.models.common import MAX_LIMIT
from agentkeep.store import Store

__all__ = ["alast_messages", "last_messages"]


def last_messages(store: Store, session_id: str, n: int | None) -> list[Message]:
    """The last ``n`` messages (None: all), oldest first; ``NotFound`` without the session.

    Up to ``MAX_LIMIT`` in one read of just those rows; more a page at a time.
    """
    if n is not None and n <= MAX_LIMIT:
        return store.messages.recent(session_id, n)
    out: list[Message] = []
    after: str | None = None
    while n is None or len(out) < n:
        page = store.messages.page(session_id, limit=MAX_LIMIT, after=after, order="desc")
        out.extend(page.items)
        if not page.has_more:
            break
        after = page.last_id
    return _oldest_first(out, n)


async def alast_messages(store: AsyncStore, session_id: str, n: int | None) -> list[Message]:
    """:func:`last_messages` on the store's async API (no worker thread)."""
    if n is not None and n <= MAX_LIMIT:
        return await store.messages.recent(session_id, n)
    out: list[Message] = []
    after: str | None = None
    while n is None or len(out) < n:
        page = await store.messages.page(session_id, limit=MAX_LIMIT, after=after, order="desc")
        out.extend(page.items)
        if not page.has_more:
            break
        after = page.last_id
    return _oldest_first(out, n)


def _oldest_first(newest_first: list[Message], n: int | None) -> list[Message]:
    out = newest_first[:n] if n is not None else newest_first
    out.reverse()
    return out
