"""An OpenAI Agents SDK session over an agentkeep store, with usage recorded.

    from agentkeep.integrations.openai_agents import AgentkeepSession
    session = AgentkeepSession("user-42", store)          # a Store or an AsyncStore
    result = await Runner.run(agent, "hi", session=session, hooks=session.hooks())

Items are agentkeep messages of the session with id ``session_id`` (created on
the first write): what the SDK stored reads back equal, whatever its type
(messages, function calls and outputs, reasoning, approvals, hosted tool
calls). ``session.hooks()`` records each model call of a run as an LLM usage
row of the session (tokens, latency, model, cost from the price table). Needs
``pip install 'agentkeep[openai-agents]'``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from agentkeep.integrations._extra import require

require("agents", "openai-agents")

from agents import Agent, RunContextWrapper, RunHooks  # noqa: E402
from agents.items import ModelResponse, TResponseInputItem  # noqa: E402
from agents.memory import SessionSettings  # noqa: E402
from agents.memory.session_settings import (  # noqa: E402
    coerce_session_settings,
    resolve_session_limit,
)
from agents.models import get_default_model  # noqa: E402

from agentkeep.aio import AsyncStore  # noqa: E402
from agentkeep.errors import NotFound  # noqa: E402
from agentkeep.integrations._content import (  # noqa: E402
    TEXT_TYPES,
    pack_content,
    plain_block,
    unpack_content,
)
from agentkeep.integrations._history import alast_messages  # noqa: E402
from agentkeep.models import ROLES, Message  # noqa: E402
from agentkeep.store import Store  # noqa: E402

__all__ = ["AgentkeepSession", "UsageHooks", "item_from_message", "message_from_item"]


def message_from_item(item: TResponseInputItem) -> dict[str, Any]:
    """An SDK item as a message to append (``role``, ``content``, ``extra``).

    A message keeps its role and content blocks (searchable like any other
    message); an item that is itself a known block (function calls and their
    outputs, reasoning) is the message's one block; any other item is kept
    whole in ``extra``. ``extra["openai_item"]`` says which, with the rest.
    """
    role = item.get("role")
    content = item.get("content")
    if type(content) is str and len(item) == 2 and role in ROLES:  # {"role", "content"}
        # The common case: a message of one text block with nothing in ``extra``,
        # which is how any writer stores a plain text message, and how
        # item_from_message reads one back. The store makes the block itself (its
        # fast path), and the row stays plain: nothing to encode or to parse.
        return {"role": role, "content": content}
    data: dict[str, Any] = dict(item)
    kind = data.get("type", "message")
    if kind == "message" and role in ROLES:
        blocks, form = pack_content(content)
        if form["form"] != "item":
            rest = {k: v for k, v in data.items() if k not in ("role", "content")}
            return _message(role, blocks, {**form, **rest})
        return _message(role, [], {"form": "whole", **data})
    if plain_block(data) and kind not in TEXT_TYPES:
        return _message(_role_of(kind), [data], {"form": "block"})
    return _message(_role_of(str(kind)), [], {"form": "whole", **data})


def _role_of(kind: str) -> str:
    return "tool" if kind.endswith("_output") else "assistant"


def _message(role: Any, content: list[Any], saved: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "content": content, "extra": {"openai_item": saved}}


def item_from_message(message: Message) -> TResponseInputItem:
    """The SDK item a message was stored from (see :func:`message_from_item`).

    A message with no ``openai_item`` in ``extra`` (a plain text item, or a
    message another writer stored) is ``{"role", "content"}``: the text for
    one plain text block, else the blocks.
    """
    saved = message.extra.get("openai_item")
    item: dict[str, Any]
    if saved is None:
        content: Any = message.content
        if len(content) == 1 and content[0].keys() == _TEXT_KEYS and content[0]["type"] == "text":
            content = content[0]["text"]
        item = {"role": message.role, "content": content}
        return item  # type: ignore[return-value]
    form = saved["form"]
    if form == "text" and len(saved) == 1:  # a text item stored before it went unmarked
        item = {"role": message.role, "content": message.content[0]["text"]}
    elif form == "block":
        item = dict(message.content[0])
    else:
        rest = {k: v for k, v in saved.items() if k != "form"}
        if form == "whole":
            item = rest
        else:
            content = unpack_content(message, {"form": form})
            item = {**rest, "role": message.role, "content": content}
    return item  # type: ignore[return-value]


_TEXT_KEYS = frozenset(("type", "text"))


class AgentkeepSession:
    """The SDK's ``Session`` protocol on an agentkeep session.

    ``store``: a :class:`agentkeep.Store` (calls run in a worker thread) or an
    :class:`agentkeep.AsyncStore`. ``session_settings.limit`` is the default
    number of items ``get_items`` returns (None: all). ``agent_id`` and
    ``user_id`` are set on the session when it is created.
    """

    def __init__(
        self,
        session_id: str,
        store: Store | AsyncStore,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.store = store if isinstance(store, AsyncStore) else AsyncStore(store)
        self.session_settings: SessionSettings | None = (
            coerce_session_settings(session_settings) if session_settings is not None else None
        )
        self.agent_id = agent_id
        self.user_id = user_id

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first; with ``limit``, only the last ``limit``."""
        n = resolve_session_limit(limit, self.session_settings)
        if n is not None and n <= 0:
            return [] if n == 0 else await self.get_items(None)
        try:  # the last n in one read; all (the SDK's default) a page at a time
            found = await alast_messages(self.store, self.session_id, n)
        except NotFound:
            return []
        return [item_from_message(m) for m in found]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items in order, in one transaction (creating the session if needed)."""
        if not items:
            return
        rows = [message_from_item(i) for i in items]
        if self.agent_id is not None:
            for row in rows:
                row["agent_id"] = self.agent_id
        create = {"agent_id": self.agent_id, "user_id": self.user_id}
        await self.store.messages.extend(self.session_id, rows, create=create)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (None if there is none)."""
        while True:
            try:
                last = await self.store.messages.recent(self.session_id, 1)
            except NotFound:
                return None
            if not last:
                return None
            try:
                await self.store.messages.delete(last[0].id)
            except NotFound:
                continue  # another writer popped it first: take the next one
            return item_from_message(last[0])

    async def clear_session(self) -> None:
        """Delete the session and its items; its usage rows stay, for cost accounting."""
        with contextlib.suppress(NotFound):
            await self.store.sessions.delete(self.session_id)

    def hooks(self) -> UsageHooks:
        """Run hooks that record each model call of a run as a usage row of this session."""
        return UsageHooks(self.store, session_id=self.session_id, user_id=self.user_id)


class UsageHooks(RunHooks[Any]):
    """``Runner.run(..., hooks=UsageHooks(store, session_id=...))``: one usage row per model call.

    Tokens come from the SDK's usage of each response (cached and reasoning
    tokens included); latency is the time from ``on_llm_start`` to
    ``on_llm_end``; the cost comes from agentkeep's price table (None when the
    model's price is unknown).
    """

    def __init__(
        self,
        store: Store | AsyncStore,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        provider: str = "openai",
    ) -> None:
        self.store = store if isinstance(store, AsyncStore) else AsyncStore(store)
        self.session_id = session_id
        self.user_id = user_id
        self.provider = provider
        self._started: dict[tuple[int, str], float] = {}

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        self._started[(id(context), agent.name)] = time.perf_counter()

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        started = self._started.pop((id(context), agent.name), None)
        latency = None if started is None else round((time.perf_counter() - started) * 1000)
        usage = response.usage
        metadata = {"response_id": response.response_id} if response.response_id else None
        await self.store.usage.record(
            provider=self.provider,
            model=_model_name(agent),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.input_tokens_details.cached_tokens or 0,
            reasoning_tokens=usage.output_tokens_details.reasoning_tokens or 0,
            latency_ms=latency,
            agent_id=agent.name[:256],
            session_id=self.session_id,
            user_id=self.user_id,
            metadata=metadata,
        )


def _model_name(agent: Agent[Any]) -> str:
    model = agent.model
    if model is None:
        return get_default_model()
    if isinstance(model, str):
        return model
    return str(getattr(model, "model", None) or type(model).__name__)
