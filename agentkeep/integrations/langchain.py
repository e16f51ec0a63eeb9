"""A LangChain chat message history over an agentkeep session.

    from agentkeep.integrations.langchain import AgentkeepChatMessageHistory
    history = AgentkeepChatMessageHistory("chat-1", store, window=40)

Messages are agentkeep messages of the session with id ``session_id``
(created on the first write); each reads back equal to what was added (type,
content, tool calls, ids, metadata). ``window`` bounds what ``messages``
returns to the last N, read without loading the rest; ``recent(n)`` reads
any last N. Sync and async (``aget_messages``, ``aadd_messages``, ``aclear``).
Needs ``pip install 'agentkeep[langchain]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from agentkeep.integrations._extra import require

require("langchain_core.chat_history", "langchain")

from langchain_core.chat_history import BaseChatMessageHistory  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    BaseMessage,
    message_to_dict,
    messages_from_dict,
)

from agentkeep.aio import AsyncStore  # noqa: E402
from agentkeep.errors import InvalidInput, NotFound  # noqa: E402
from agentkeep.integrations._apis import sync_and_async  # noqa: E402
from agentkeep.integrations._content import pack_content, unpack_content  # noqa: E402
from agentkeep.integrations._history import alast_messages, last_messages  # noqa: E402
from agentkeep.models import ROLES, Message  # noqa: E402
from agentkeep.store import Store  # noqa: E402

__all__ = ["AgentkeepChatMessageHistory"]

_ROLE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}
_KEY = "langchain"


def _to_row(message: BaseMessage) -> dict[str, Any]:
    saved = message_to_dict(message)
    data = dict(saved["data"])
    blocks, form = pack_content(data.pop("content"))
    role = _ROLE.get(saved["type"]) or (data.get("role") if data.get("role") in ROLES else "user")
    return {
        "role": role,
        "content": blocks,
        "extra": {_KEY: {**form, "type": saved["type"], "data": data}},
    }


def _from_message(message: Message) -> BaseMessage:
    saved = message.extra.get(_KEY)
    if saved is None:  # written by something else: plain text under its role
        kind = {"user": "human", "assistant": "ai", "system": "system"}.get(message.role, "human")
        return messages_from_dict([{"type": kind, "data": {"content": message.text}}])[0]
    data = {**saved["data"], "content": unpack_content(message, saved)}
    return messages_from_dict([{"type": saved["type"], "data": data}])[0]


class AgentkeepChatMessageHistory(BaseChatMessageHistory):
    """LangChain's ``BaseChatMessageHistory`` on an agentkeep session.

    ``store``: a :class:`agentkeep.Store` or :class:`agentkeep.AsyncStore`.
    ``window``: how many of the newest messages ``messages`` returns (None: all).
    """

    def __init__(
        self,
        session_id: str,
        store: Store | AsyncStore,
        *,
        window: int | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        if window is not None and (type(window) is not int or window < 1):
            raise InvalidInput("must be a positive integer or None", field="window")
        self.session_id = session_id
        self.store, self.astore = sync_and_async(store)
        self.window = window
        self.agent_id = agent_id
        self.user_id = user_id

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The history (its last ``window`` messages), oldest first."""
        return self.recent(self.window)

    def recent(self, n: int | None) -> list[BaseMessage]:
        """The last ``n`` messages (None: all), oldest first; only those are read."""
        try:
            found = last_messages(self.store, self.session_id, n)
        except NotFound:
            return []
        return [_from_message(m) for m in found]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append messages in order, in one transaction (creating the session if needed)."""
        rows = self._rows(messages)
        if rows:
            self.store.messages.extend(self.session_id, rows, create=self._create())

    def _rows(self, messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
        return [{**_to_row(m), "agent_id": self.agent_id} for m in messages]

    def _create(self) -> dict[str, Any]:
        """The session the first messages create: with this history's agent and user."""
        return {"agent_id": self.agent_id, "user_id": self.user_id}

    def clear(self) -> None:
        """Delete the session and its messages (its usage rows stay)."""
        with contextlib.suppress(NotFound):
            self.store.sessions.delete(self.session_id)

    async def aget_messages(self) -> list[BaseMessage]:
        """``messages`` on the store's async API, no thread hop: the window's rows in one
        read (a history longer than one read's limit a page at a time)."""
        try:
            found = await alast_messages(self.astore, self.session_id, self.window)
        except NotFound:
            return []
        return [_from_message(m) for m in found]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """``add_messages`` on the store's async API (no thread hop)."""
        rows = self._rows(messages)
        if rows:
            await self.astore.messages.extend(self.session_id, rows, create=self._create())

    async def aclear(self) -> None:
        with contextlib.suppress(NotFound):
            await self.astore.sessions.delete(self.session_id)
