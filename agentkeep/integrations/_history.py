"""Reading the newest messages of a session, however many are asked for."""

from __future__ import annotations

from agentkeep.aio import AsyncStore
from agentkeep.models import Message
from agentkeep.models.common import MAX_LIMIT
from agentkeep.store import Store
from agentkeep.store._steps import Op, operation
from agentkeep.store.messages import Messages

__all__ = ["alast_messages", "last_messages"]


def last_messages(store: Store, session_id: str, n: int | None) -> list[Message]:
    """The last ``n`` messages (None: all), oldest first; ``NotFound`` without the session.

    Up to ``MAX_LIMIT`` in one read of just those rows; more a page at a time.
    """
    return store._core.run_op(_last(store.messages, session_id, n))


async def alast_messages(store: AsyncStore, session_id: str, n: int | None) -> list[Message]:
    """:func:`last_messages` on the store's async API (no worker thread)."""
    return await store.sync._core.arun_op(_last(store.sync.messages, session_id, n))


def _last(messages: Messages, session_id: str, n: int | None) -> Op[list[Message]]:
    """The one implementation of both: ``messages.recent``'s operation, or ``messages.page``'s
    newest first, page after page (each method's generator: ``store._steps.op``)."""
    out: list[Message]
    if n is not None and n <= MAX_LIMIT:
        out = yield from operation(messages.recent, session_id, n)
        return out
    out = []
    after: str | None = None
    while n is None or len(out) < n:
        found = yield from operation(
            messages.page, session_id, limit=MAX_LIMIT, after=after, order="desc"
        )
        out.extend(found.items)
        if not found.has_more:
            break
        after = found.last_id
    out = out[:n] if n is not None else out
    out.reverse()
    return out
