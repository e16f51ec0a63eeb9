"""AgentkeepChatMessageHistory: LangChain's chat history contract, and a real chain over it."""

from __future__ import annotations

import itertools

import pytest
from _threads import no_worker_threads
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

import agentkeep
from agentkeep import AsyncStore, Store
from agentkeep.integrations.langchain import AgentkeepChatMessageHistory

_ids = itertools.count()

MESSAGES: list[BaseMessage] = [
    SystemMessage("be brief"),
    HumanMessage("weather in Oslo?", id="h1", name="ada"),
    AIMessage(
        "",
        id="a1",
        tool_calls=[{"name": "weather", "args": {"city": "Oslo"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
        response_metadata={"model_name": "gpt-4o-mini"},
    ),
    ToolMessage("3 degrees", tool_call_id="call_1", artifact={"raw": 3}),
    AIMessage([{"type": "text", "text": "It is "}, {"type": "thinking", "thinking": "hmm"}]),
    HumanMessage(
        [
            {"type": "text", "text": "and this?"},
            {"type": "image_url", "image_url": {"url": "data:"}},
        ]
    ),
]


@pytest.mark.parametrize("backed", ["sync", "async"])
async def test_messages_round_trip(store: Store, backed: str) -> None:
    target: Store | AsyncStore = store if backed == "sync" else AsyncStore(store)
    history = AgentkeepChatMessageHistory(f"chat{next(_ids)}", target)
    assert isinstance(history, BaseChatMessageHistory)
    assert history.messages == []
    history.add_messages(MESSAGES[:3])
    await history.aadd_messages(MESSAGES[3:])
    assert history.messages == MESSAGES
    assert await history.aget_messages() == MESSAGES
    assert history.recent(2) == MESSAGES[-2:]
    windowed = AgentkeepChatMessageHistory(history.session_id, target, window=3)
    assert windowed.messages == MESSAGES[-3:]
    # Stored as agentkeep messages: roles and text are those of the conversation.
    stored = store.messages.recent(history.session_id, 10)
    assert [m.role for m in stored] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert stored[1].text == "weather in Oslo?"
    await history.aclear()
    assert history.messages == []
    history.clear()  # clearing nothing is fine


async def test_the_async_methods_run_on_the_async_api_without_a_thread(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aadd_messages`` creates the session (its agent and user) with its first messages
    and ``aget_messages`` reads the window, or the whole history a page at a time, neither
    through a worker thread; ``aclear`` deletes through the store's async API."""

    no_worker_threads(monkeypatch, "an async method")
    history = AgentkeepChatMessageHistory(
        f"chat{next(_ids)}", store, window=2, agent_id="ag", user_id="u"
    )
    assert await history.aget_messages() == []  # no session yet
    await history.aadd_messages(MESSAGES[:4])
    await history.aadd_messages([])
    made = store.sessions.get(history.session_id)
    assert (made.agent_id, made.user_id, made.message_count) == ("ag", "u", 4)
    assert await history.aget_messages() == MESSAGES[2:4]
    unbounded = AgentkeepChatMessageHistory(history.session_id, AsyncStore(store))
    long = [HumanMessage(f"m{i}", id=f"m{i}") for i in range(1003)]  # more than one page
    await unbounded.aadd_messages(long)
    assert await unbounded.aget_messages() == MESSAGES[:4] + long
    monkeypatch.undo()
    await history.aclear()
    await history.aclear()  # clearing nothing is fine
    assert await history.aget_messages() == []


def test_window_must_be_positive(store: Store) -> None:
    with pytest.raises(agentkeep.InvalidInput, match="window"):
        AgentkeepChatMessageHistory("x", store, window=0)


def _turn(
    history: AgentkeepChatMessageHistory, model: FakeListChatModel, text: str
) -> list[BaseMessage]:
    """One chat turn as LangChain apps write it: history + question in, answer appended."""
    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{q}")])
    sent = prompt.invoke({"history": history.messages, "q": text}).to_messages()
    answer = model.invoke(sent)
    history.add_messages([HumanMessage(text), answer])
    return sent


def test_a_chat_loop_remembers_across_a_restart(backend: str, db_url: str) -> None:
    tenant = f"lc{next(_ids)}"
    store = agentkeep.connect(db_url, tenant=tenant)
    model = FakeListChatModel(responses=["first answer", "second answer"])
    _turn(AgentkeepChatMessageHistory("conversation", store, window=20), model, "hello?")
    if backend != "memory":  # memory does not outlive its store
        store.close()
        store = agentkeep.connect(db_url, tenant=tenant)
    history = AgentkeepChatMessageHistory("conversation", store, window=20)
    sent = _turn(history, model, "again?")
    assert [m.content for m in sent] == ["hello?", "first answer", "again?"]
    assert [m.content for m in history.messages] == [
        "hello?",
        "first answer",
        "again?",
        "second answer",
    ]
    store.close()
