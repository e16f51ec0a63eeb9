"""AgentkeepSession under the OpenAI Agents SDK's real Runner with its ScriptedModel."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from _threads import no_worker_threads
from agents import Agent, RunConfig, Runner, RunState, function_tool
from agents.testing.model import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from openai.types.responses.response_reasoning_item import ResponseReasoningItem, Summary
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

import agentkeep
from agentkeep import AsyncStore, Store
from agentkeep.integrations.openai_agents import AgentkeepSession

_ids = itertools.count()
NO_TRACES = RunConfig(tracing_disabled=True)

# Every kind of item the SDK stores, as the SDK produces them (to_input_item()).
ITEMS: list[Any] = [
    {"role": "user", "content": "What's the weather in Oslo?"},
    {"role": "system", "content": "be brief", "type": "message"},
    {
        "role": "user",
        "type": "message",
        "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
        ],
    },
    {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}],
    },
    {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "think"}],
        "encrypted_content": "gAAA",
    },
    {
        "type": "function_call",
        "call_id": "c1",
        "name": "weather",
        "arguments": '{"city":"Oslo"}',
        "id": "fc_1",
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "c1", "output": "3 degrees"},
    {
        "type": "mcp_approval_request",
        "id": "mcpr_1",
        "server_label": "shop",
        "name": "refund",
        "arguments": '{"amount":5}',
    },
    {
        "type": "mcp_approval_response",
        "approval_request_id": "mcpr_1",
        "approve": True,
        "id": "mcpa_1",
    },
    {
        "type": "computer_call_output",
        "call_id": "cc1",
        "output": {"type": "computer_screenshot", "image_url": "data:"},
    },
    {"type": "item_reference", "id": "msg_0"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "3 degrees.", "annotations": [], "logprobs": []}
        ],
    },
    {"role": "assistant", "type": "message", "content": [{"type": "refusal", "refusal": "no"}]},
]


def _session(store: Store, backed: str, **kwargs: Any) -> AgentkeepSession:
    target: Store | AsyncStore = store if backed == "sync" else AsyncStore(store)
    return AgentkeepSession(f"s{next(_ids)}", target, **kwargs)


@pytest.mark.parametrize("backed", ["sync", "async"])
async def test_every_item_round_trips(store: Store, backed: str) -> None:
    session = _session(store, backed)
    assert await session.get_items() == []
    assert await session.pop_item() is None
    await session.add_items(ITEMS[:5])
    await session.add_items(ITEMS[5:])
    assert await session.get_items() == ITEMS
    assert await session.get_items(limit=3) == ITEMS[-3:]
    assert await session.pop_item() == ITEMS[-1]
    assert await session.get_items() == ITEMS[:-1]
    # The items are agentkeep messages: searchable by role and content like any other.
    page = store.messages.list(session.session_id, role="user", limit=10)
    assert [m.text for m in page.items] == ["What's the weather in Oslo?", "look", ""]
    await session.clear_session()
    assert await session.get_items() == []


@pytest.mark.parametrize("backed", ["sync", "async"])
async def test_plain_text_items_are_plain_messages(store: Store, backed: str) -> None:
    """A ``{"role", "content": str}`` item is stored as any writer stores a text message
    (one text block, nothing in ``extra``), and such a message, whoever wrote it,
    reads back as that item; other blocks read back as blocks."""
    session = _session(store, backed)
    await session.add_items([{"role": "user", "content": "hi"}])
    (stored,) = store.messages.recent(session.session_id, 5)
    assert (stored.content, stored.extra) == ([{"type": "text", "text": "hi"}], {})
    sid = session.session_id
    store.messages.append(sid, "assistant", "from the HTTP API")
    annotated = [{"type": "text", "text": "cited", "annotations": []}]
    store.messages.append(sid, "assistant", annotated)
    two = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    store.messages.append(sid, "user", two)
    # A text item as an earlier version stored it: marked in ``extra``.
    marked = {"openai_item": {"form": "text"}}
    store.messages.append(sid, "user", "marked", extra=marked)
    assert await session.get_items() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "from the HTTP API"},
        {"role": "assistant", "content": annotated},
        {"role": "user", "content": two},
        {"role": "user", "content": "marked"},
    ]
    assert await session.pop_item() == {"role": "user", "content": "marked"}


async def test_first_items_create_the_session_or_join_the_one_there(store: Store) -> None:
    """The session is created (with its agent and user) by the write of its first items;
    a session another writer created first gets the items and keeps its own fields (the
    race itself: ``tests/test_messages_create_session.py``)."""
    fresh = _session(store, "async", agent_id="ag", user_id="u")
    await fresh.add_items(ITEMS[:2])
    made = store.sessions.get(fresh.session_id)
    assert (made.agent_id, made.user_id, made.message_count) == ("ag", "u", 2)
    assert await fresh.get_items() == ITEMS[:2]

    theirs = _session(store, "async", agent_id="ours", user_id="ours")
    store.sessions.create(id=theirs.session_id, title="theirs")
    await theirs.add_items(ITEMS[:3])
    kept = store.sessions.get(theirs.session_id)
    assert (kept.title, kept.agent_id, kept.user_id) == ("theirs", None, None)
    assert await theirs.get_items() == ITEMS[:3]


async def test_a_whole_history_is_read_on_the_async_api_without_a_thread(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get_items()`` with no limit (the SDK's default each turn) pages the history on the
    store's async API: no worker thread."""
    items: list[Any] = [{"role": "user", "content": f"m{i}"} for i in range(1005)]
    session = _session(store, "async")

    no_worker_threads(monkeypatch, "get_items")
    assert await session.get_items() == []
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=1002) == items[-1002:]


async def test_settings_limit_and_long_histories(store: Store) -> None:
    session = _session(store, "sync", session_settings={"limit": 2})
    items: list[Any] = [{"role": "user", "content": f"m{i}"} for i in range(1203)]
    await session.add_items(items)
    assert await session.get_items() == items[-2:]
    assert await session.get_items(limit=1100) == items[-1100:]
    assert await session.get_items(limit=0) == []
    unlimited = AgentkeepSession(session.session_id, store)
    assert await unlimited.get_items() == items


def _usage(tokens_in: int, tokens_out: int) -> Usage:
    return Usage(
        requests=1,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        total_tokens=tokens_in + tokens_out,
        input_tokens_details=InputTokensDetails(cached_tokens=2, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=3),
    )


class PricedModel(ScriptedModel):
    """The SDK's scripted model, named like the OpenAI models are (``.model``)."""

    model = "gpt-4o-mini"


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@function_tool(needs_approval=True)
def refund(amount: int) -> str:
    """Refund an amount; a person approves it first."""
    return f"refunded {amount}"


def _script() -> list[ModelStep]:
    reasoning = ResponseReasoningItem(
        id="rs_1", type="reasoning", summary=[Summary(text="check", type="summary_text")]
    )
    return [
        ModelStep(
            output=[reasoning, function_call("weather", {"city": "Oslo"}, call_id="c1")],
            usage=_usage(10, 5),
        ),
        ModelStep(output=[assistant_message("It is sunny", item_id="m1")], usage=_usage(20, 6)),
        ModelStep(
            output=[function_call("refund", {"amount": 5}, call_id="c2")], usage=_usage(30, 7)
        ),
        ModelStep(output=[assistant_message("Refunded", item_id="m2")], usage=_usage(40, 8)),
    ]


async def test_runner_stores_its_items_and_records_usage(store: Store) -> None:
    model = PricedModel(_script())
    agent = Agent(name="helper", model=model, tools=[weather, refund])
    session = _session(store, "async")
    result = await Runner.run(
        agent, "weather?", session=session, hooks=session.hooks(), run_config=NO_TRACES
    )
    assert result.final_output == "It is sunny"
    assert await session.get_items() == result.to_input_list()
    kinds = [i.get("type") for i in await session.get_items()]
    assert kinds == [None, "reasoning", "function_call", "function_call_output", "message"]

    usage = store.usage.list(session_id=session.session_id, order="asc").items
    assert [
        (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) for u in usage
    ] == [
        (10, 5, 2, 3),
        (20, 6, 2, 3),
    ]
    assert {(u.model, u.agent_id, u.provider) for u in usage} == {
        ("gpt-4o-mini", "helper", "openai")
    }
    assert all(
        u.latency_ms is not None and u.cost_usd is not None and u.cost_usd > 0 for u in usage
    )


async def test_an_approval_survives_a_restart(backend: str, db_url: str) -> None:
    tenant = f"oa{next(_ids)}"
    script = _script()
    astore = await agentkeep.aconnect(db_url, tenant=tenant)
    agent = Agent(name="helper", model=PricedModel(script[2:3]), tools=[weather, refund])
    session = AgentkeepSession("customer-7", astore)
    first = await Runner.run(
        agent, "refund 5", session=session, hooks=session.hooks(), run_config=NO_TRACES
    )
    assert [i.tool_name for i in first.interruptions] == ["refund"]
    saved = first.to_state().to_string()
    if backend != "memory":  # memory does not outlive its store: go on in the same one
        await astore.close()
        astore = await agentkeep.aconnect(db_url, tenant=tenant)
    # As in a new process: a new store, session and agent; the approval comes later.
    model = PricedModel(script[3:])
    agent = Agent(name="helper", model=model, tools=[weather, refund])
    session = AgentkeepSession("customer-7", astore)
    state = await RunState.from_string(agent, saved)
    for pending in state.get_interruptions():
        state.approve(pending)
    done = await Runner.run(
        agent, state, session=session, hooks=session.hooks(), run_config=NO_TRACES
    )
    assert done.final_output == "Refunded"
    items = await session.get_items()
    assert [i.get("type") for i in items] == [
        None,
        "function_call",
        "function_call_output",
        "message",
    ]
    assert items[2]["output"] == "refunded 5"  # type: ignore[typeddict-item]
    assert model.last_call is not None and model.last_call.input[0] == {
        "role": "user",
        "content": "refund 5",
    }
    usage = await astore.usage.list(session_id="customer-7")
    assert sorted(u.input_tokens for u in usage.items) == [30, 40]
    await astore.close()
