"""The OpenAI Agents SDK's ``Runner`` on its default Responses model, pointed at the service.

A multi-turn agent with a function tool, chained by ``previous_response_id``
(and ``auto_previous_response_id`` inside a run) or by ``conversation_id``,
with the service killed and started again between turns: the chain lives in
the database, not in the process.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from live import SERVICE_BACKENDS, LiveService, StartService
from upstream_llm import Reply, ToolCall, UpstreamLLM

pytestmark = pytest.mark.slow

CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CALLS.append(city)
    return f"sunny in {city}"


@pytest.fixture(scope="module", params=SERVICE_BACKENDS)
def agent_service(
    request: pytest.FixtureRequest, start_service: StartService
) -> Iterator[LiveService]:
    set_tracing_disabled(True)
    yield start_service(str(request.param))


@pytest.fixture
async def clients() -> AsyncIterator[list[openai.AsyncOpenAI]]:
    """Async clients the test opened, closed at its end."""
    opened: list[openai.AsyncOpenAI] = []
    yield opened
    for client in opened:
        await client.close()


def _agent(service: LiveService, model: str, clients: list[openai.AsyncOpenAI]) -> Agent:
    client = service.async_client()
    clients.append(client)
    return Agent(
        name="weather",
        instructions="Answer briefly.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        tools=[get_weather],
    )


def _script(upstream: UpstreamLLM) -> str:
    model = f"agent-{secrets.token_hex(4)}"
    upstream.script(
        model,
        Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}', id="call_oslo")]),
        Reply(text="It is sunny in Oslo."),
        Reply(text="You asked about Oslo."),
    )
    return model


def _roles(body: dict[str, object]) -> list[str]:
    return [str(m["role"]) for m in body["messages"]]  # type: ignore[attr-defined]


async def test_previous_response_id_across_a_restart(
    agent_service: LiveService, upstream_llm: UpstreamLLM, clients: list[openai.AsyncOpenAI]
) -> None:
    model = _script(upstream_llm)
    CALLS.clear()
    first = await Runner.run(
        _agent(agent_service, model, clients), "Weather in Oslo?", auto_previous_response_id=True
    )
    assert first.final_output == "It is sunny in Oslo."
    assert CALLS == ["Oslo"]
    after_tool = upstream_llm.requests_for(model)[1]
    assert _roles(after_tool) == ["system", "user", "assistant", "tool"]
    assert after_tool["messages"][3]["content"] == "sunny in Oslo"

    agent_service.restart()
    second = await Runner.run(
        _agent(agent_service, model, clients),
        "What did I ask?",
        previous_response_id=first.last_response_id,
    )
    assert second.final_output == "You asked about Oslo."
    last = upstream_llm.requests_for(model)[2]
    assert _roles(last) == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert last["messages"][1]["content"] == "Weather in Oslo?"
    assert last["messages"][-1]["content"] == "What did I ask?"


async def test_conversation_id_across_a_restart(
    agent_service: LiveService, upstream_llm: UpstreamLLM, clients: list[openai.AsyncOpenAI]
) -> None:
    model = _script(upstream_llm)
    client = agent_service.async_client()
    clients.append(client)
    conversation = await client.conversations.create()
    first = await Runner.run(
        _agent(agent_service, model, clients), "Weather in Oslo?", conversation_id=conversation.id
    )
    assert first.final_output == "It is sunny in Oslo."

    agent_service.restart()
    second = await Runner.run(
        _agent(agent_service, model, clients), "What did I ask?", conversation_id=conversation.id
    )
    assert second.final_output == "You asked about Oslo."
    last = upstream_llm.requests_for(model)[2]
    assert _roles(last) == ["system", "user", "assistant", "tool", "assistant", "user"]
    client = agent_service.async_client()
    clients.append(client)
    items = await client.conversations.items.list(conversation.id, order="asc")
    assert [i.type for i in items.data] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "message",
    ]
