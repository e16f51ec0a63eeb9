"""AgentkeepSaver under a real LangGraph StateGraph with a tool and a scripted model."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

import agentkeep
from agentkeep import Store
from agentkeep.integrations.langgraph import AgentkeepSaver
from agentkeep.store.schema import graph_checkpoint_blobs

_ids = itertools.count()


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def _script() -> list[AIMessage]:
    """Each turn: the model asks for the weather tool, then answers with its result."""
    out: list[AIMessage] = []
    for n in range(20):
        call = {"name": "weather", "args": {"city": f"city{n}"}, "id": f"call_{n}"}
        out.append(AIMessage(content="", tool_calls=[call]))
        out.append(AIMessage(content=f"answer {n}"))
    return out


def _graph(saver: AgentkeepSaver, model: FakeMessagesListChatModel) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    builder.add_edge("agent", END)
    return builder.compile(checkpointer=saver)


def _refuse_sync(saver: AgentkeepSaver, *names: str) -> None:
    """Make the saver's sync methods ``names`` fail: the async ones must not run them."""

    def sync_call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an async method ran a sync one")

    for name in names:
        setattr(saver, name, sync_call)


def _turn(graph: Any, thread: str, n: int) -> list[Any]:
    config = {"configurable": {"thread_id": thread}}
    out = graph.invoke({"messages": [HumanMessage(f"weather {n}?", id=f"h{n}")]}, config)
    return list(out["messages"])


def test_graph_with_a_tool_keeps_the_conversation(store: Store) -> None:
    model = FakeMessagesListChatModel(responses=_script())
    graph = _graph(AgentkeepSaver(store), model)
    thread = f"t{next(_ids)}"
    for n in range(3):
        messages = _turn(graph, thread, n)
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ] * 3
    assert [m.content for m in messages if isinstance(m, ToolMessage)] == [
        "sunny in city0",
        "sunny in city1",
        "sunny in city2",
    ]
    # A fresh saver (nothing cached) reads the same state, and history is listed newest first.
    state = _graph(AgentkeepSaver(store), model).get_state({"configurable": {"thread_id": thread}})
    assert state.values["messages"] == messages
    history = list(graph.get_state_history({"configurable": {"thread_id": thread}}))
    steps = [h.metadata["step"] for h in history]
    assert steps == sorted(steps, reverse=True) and len(history) > 9


def _message_rows(store: Store, thread: str) -> dict[str, Any]:
    with store._core.read() as conn:  # the rows themselves: deltas point at their base
        rows = (
            conn.execute(
                graph_checkpoint_blobs.select().where(
                    graph_checkpoint_blobs.c.tenant_id == store.tenant_id,
                    graph_checkpoint_blobs.c.thread_id == thread,
                    graph_checkpoint_blobs.c.channel == "messages",
                )
            )
            .mappings()
            .all()
        )
    return {r["version"]: r for r in rows}


def test_a_turn_stores_what_it_appended_and_a_read_walks_few_rows(store: Store) -> None:
    saver = AgentkeepSaver(store)
    script = _script()
    graph = _graph(saver, FakeMessagesListChatModel(responses=script))
    thread = f"t{next(_ids)}"
    for n in range(6):
        _turn(graph, thread, n)
    # A new saver (as after a restart) reads the chain back and continues it.
    later = _graph(AgentkeepSaver(store), FakeMessagesListChatModel(responses=script[12:]))
    for n in range(6, 12):
        messages = _turn(later, thread, n)
    rows = _message_rows(store, thread)
    assert len(rows) > 40
    assert [v for v, r in rows.items() if r["base_version"] is None] == [min(rows)]
    for row in rows.values():  # value n is based on value n & (n - 1): one row per set bit
        depth, at = 1, row
        while at["base_version"] is not None:
            assert at["seq"] & (at["seq"] - 1) == rows[at["base_version"]]["seq"]
            depth, at = depth + 1, rows[at["base_version"]]
        assert depth == bin(row["seq"]).count("1") + 1
    # Each message is written about log2(steps) times, never once per step.
    whole = len(saver.serde.dumps_typed(messages)[1])
    written = sum(len(r["blob"]) for r in rows.values())
    assert written < whole * (math.log2(len(rows)) + 1) < whole * len(rows) / 4
    fresh = _graph(AgentkeepSaver(store), FakeMessagesListChatModel(responses=script))
    assert fresh.get_state({"configurable": {"thread_id": thread}}).values["messages"] == messages


def test_a_deleted_base_falls_back_to_a_full_value(store: Store) -> None:
    script = _script()
    mine, other = AgentkeepSaver(store), AgentkeepSaver(store)
    graph = _graph(mine, FakeMessagesListChatModel(responses=script))
    thread = f"t{next(_ids)}"
    _turn(graph, thread, 0)
    other.delete_thread(thread)  # another process deletes the thread; `mine` still caches it
    messages = _turn(graph, thread, 1)
    assert [m.content for m in messages] == ["weather 1?", "", "sunny in city1", "answer 1"]
    fresh = _graph(AgentkeepSaver(store), FakeMessagesListChatModel(responses=script))
    assert fresh.get_state({"configurable": {"thread_id": thread}}).values["messages"] == messages


async def test_async_graph_resumes_after_a_restart(backend: str, db_url: str) -> None:
    tenant = f"lg{next(_ids)}_{backend}"
    thread = "conversation"
    script = _script()
    astore = await agentkeep.aconnect(db_url, tenant=tenant)
    graph = _graph(AgentkeepSaver(astore), FakeMessagesListChatModel(responses=script))
    config = {"configurable": {"thread_id": thread}}
    out = await graph.ainvoke({"messages": [HumanMessage("weather 0?", id="h0")]}, config)
    assert out["messages"][-1].content == "answer 0"
    await astore.close()
    if backend == "memory":
        return  # memory does not outlive its store
    # A new store and saver, as after a process restart: the agent continues the thread.
    astore = await agentkeep.aconnect(db_url, tenant=tenant)
    graph = _graph(AgentkeepSaver(astore), FakeMessagesListChatModel(responses=script[2:]))
    out = await graph.ainvoke({"messages": [HumanMessage("weather 1?", id="h1")]}, config)
    assert [m.content for m in out["messages"]] == [
        "weather 0?",
        "",
        "sunny in city0",
        "answer 0",
        "weather 1?",
        "",
        "sunny in city1",
        "answer 1",
    ]
    await astore.close()


async def test_an_async_graph_saves_through_the_async_api_not_the_sync_methods(
    store: Store,
) -> None:
    """``aput``, ``aput_writes`` and ``aget_tuple`` await the store's async API: they do not
    run the sync methods in a worker thread."""
    saver = AgentkeepSaver(store)

    _refuse_sync(saver, "put", "put_writes", "get_tuple")
    graph = _graph(saver, FakeMessagesListChatModel(responses=_script()))
    config = {"configurable": {"thread_id": f"t{next(_ids)}"}}
    for n in range(3):
        out = await graph.ainvoke({"messages": [HumanMessage(f"weather {n}?", id=f"h{n}")]}, config)
        assert out["messages"][-1].content == f"answer {n}"
    state = await graph.aget_state(config)
    assert [m.content for m in state.values["messages"]][-4:] == [
        "weather 2?",
        "",
        "sunny in city2",
        "answer 2",
    ]
    fresh = _graph(AgentkeepSaver(store), FakeMessagesListChatModel(responses=[]))
    assert fresh.get_state(config).values["messages"] == state.values["messages"]


def _checkpoints(saver: AgentkeepSaver, thread: str, n: int) -> None:
    """``n`` checkpoints of one thread, each the child of the one before."""
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    for step in range(n):
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"step": step}
        checkpoint["channel_versions"] = {"step": saver.get_next_version(None, None)}
        config = saver.put(
            config, checkpoint, {"step": step, "source": "loop"}, checkpoint["channel_versions"]
        )


async def test_alist_reads_a_page_at_a_time_on_the_async_api(store: Store) -> None:
    """``alist`` reads a thread's checkpoints a page at a time as they are consumed, on the
    async API (the sync ``list`` is never called), and gives what ``list`` gives."""
    saver = AgentkeepSaver(store)
    thread = f"t{next(_ids)}"
    _checkpoints(saver, thread, 230)
    config: Any = {"configurable": {"thread_id": thread}}
    expected = [(t.checkpoint["id"], t.metadata["step"]) for t in saver.list(config)]
    assert [step for _, step in expected] == list(range(229, -1, -1))

    pages: list[int] = []
    read_page = saver.astore.checkpoints.list

    async def counted(*args: Any, **kwargs: Any) -> Any:
        page = await read_page(*args, **kwargs)
        pages.append(len(page))
        return page

    saver.astore.checkpoints.list = counted  # type: ignore[method-assign]
    _refuse_sync(saver, "list")
    listing = saver.alist(config)
    first = [await anext(listing) for _ in range(3)]
    assert [t.metadata["step"] for t in first] == [229, 228, 227]
    assert pages == [100]  # one page read so far, not the thread
    rest = [t async for t in listing]
    assert [(t.checkpoint["id"], t.metadata["step"]) for t in first + rest] == expected
    assert pages == [100, 100, 30]

    limited = [t.metadata["step"] async for t in saver.alist(config, limit=101)]
    assert limited == list(range(229, 128, -1))
    filtered = [t.metadata["step"] async for t in saver.alist(config, filter={"step": 7})]
    assert filtered == [7]
    before = {"configurable": {"thread_id": thread, "checkpoint_id": expected[200][0]}}
    older = [t.metadata["step"] async for t in saver.alist(config, before=before)]
    assert older == list(range(28, -1, -1))


async def test_whole_thread_work_runs_on_the_async_api(store: Store) -> None:
    """``acopy_thread``, ``aprune``, ``adelete_for_runs`` and ``adelete_thread`` await the
    store's async API, not the saver's sync methods."""
    saver = AgentkeepSaver(store)
    source, copy = f"t{next(_ids)}", f"t{next(_ids)}"
    _checkpoints(saver, source, 5)

    _refuse_sync(saver, "copy_thread", "prune", "delete_for_runs", "delete_thread")
    await saver.acopy_thread(source, copy)
    steps = [t.metadata["step"] async for t in saver.alist({"configurable": {"thread_id": copy}})]
    assert steps == [4, 3, 2, 1, 0]
    await saver.aprune([copy], strategy="keep_latest")
    kept = [t.metadata["step"] async for t in saver.alist({"configurable": {"thread_id": copy}})]
    assert kept == [4]
    with pytest.raises(ValueError, match="strategy"):
        await saver.aprune([copy], strategy="oldest")
    await saver.adelete_thread(copy)
    assert await saver.aget_tuple({"configurable": {"thread_id": copy}}) is None
    left = [t.metadata["step"] async for t in saver.alist({"configurable": {"thread_id": source}})]
    assert left == [4, 3, 2, 1, 0]  # the source is untouched
