"""Reading the newest messages of a session, however many are asked for."""

from __future__ import annotations

from agentkeep.models import Message
from agentkeep.models.common import MAX_LIMIT
from agentkeep.store import Store

__all__ = ["last_messages"]


def last_messages(store: Store, session_id: str, n: int | None) -> list[Message]:
    """The last ``n`` messages (None: all), oldest first; ``NotFound`` without the session.

    Up to ``MAX_LIMIT`` in one read of just those rows; more a page at a time.
    """
    if n is not None and n <= MAX_LIMIT:
        return store.messages.recent(session_id, n)
    out: list[Message] = []
    after: str | None = None
    while n is None or len(out) < n:
        page = store.messages.list(session_id, limit=MAX_LIMIT, after=after, order="desc")
        out.extend(page.items)
        if not page.has_more:
            break
        after = page.last_id
    out = out[:n] if n is not None else out
    out.reverse()
    return out
