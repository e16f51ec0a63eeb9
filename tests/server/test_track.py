"""agentkeep.track(): usage of an official openai client's calls, with nothing changed for the caller."""

from __future__ import annotations

import secrets

import openai
import pytest
from live import Tenant
from upstream_llm import Reply, UpstreamLLM

import agentkeep
from agentkeep import AsyncStore

pytestmark = pytest.mark.slow


def _model() -> str:
    return f"gpt-4o-mini-{secrets.token_hex(3)}"


def _chat(upstream: UpstreamLLM, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url, api_key="k", max_retries=0, **options)  # type: ignore[arg-type]


def test_chat_completions_plain_and_streamed(upstream_llm: UpstreamLLM) -> None:
    store = agentkeep.connect("memory://")
    session = store.sessions.create()
    model = _model()
    replies = [Reply(text="Hi there", prompt_tokens=7, completion_tokens=2)] * 2
    replies += [Reply(text="one two three", prompt_tokens=9, completion_tokens=3)] * 2
    upstream_llm.script(model, *replies)
    plain, tracked = (
        _chat(upstream_llm),
        agentkeep.track(_chat(upstream_llm), store, session_id=session.id),
    )
    messages = [{"role": "user", "content": "hi"}]
    a = plain.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    b = tracked.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    assert b.model_dump(exclude={"id", "created"}) == a.model_dump(exclude={"id", "created"})
    stream_options = {"include_usage": True}
    got = [
        [
            c.model_dump(exclude={"id", "created"})
            for c in client.chat.completions.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options=stream_options,  # type: ignore[arg-type]
            )
        ]
        for client in (plain, tracked)
    ]
    assert got[1] == got[0] and len(got[0]) > 3  # every chunk, as the upstream sent it
    rows = store.usage.list(session_id=session.id, order="asc").items
    assert [(u.model, u.input_tokens, u.output_tokens, u.status) for u in rows] == [
        (model, 7, 2, "success"),
        (model, 9, 3, "success"),
    ]
    assert all(u.latency_ms is not None and u.input_params == {"endpoint": "chat"} for u in rows)
    store.close()


def test_an_upstream_error_is_recorded_and_raised_as_before(upstream_llm: UpstreamLLM) -> None:
    store = agentkeep.connect("memory://")
    model = _model()
    upstream_llm.script(model, Reply(status=429, error_message="slow down"))
    client = agentkeep.track(_chat(upstream_llm), store, agent_id="bot")
    with pytest.raises(openai.RateLimitError, match="slow down"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    [row] = store.usage.list(agent_id="bot").items
    assert (row.status, row.error_message, row.model) == ("error", "slow down", model)
    store.close()


async def test_responses_api_async_client(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    astore = AsyncStore(agentkeep.connect("memory://"))
    model = _model()
    upstream_llm.script(model, Reply(text="Hello", prompt_tokens=11, completion_tokens=2))
    upstream_llm.script(model, Reply(text="again you", prompt_tokens=5, completion_tokens=2))
    client = agentkeep.track(tenant.async_client(), astore, user_id="ada")
    response = await client.responses.create(model=model, input="Hi")
    assert response.output_text == "Hello"
    events = [e async for e in await client.responses.create(model=model, input="Hi", stream=True)]
    assert events[-1].type == "response.completed"
    rows = (await astore.usage.list(user_id="ada", order="asc")).items
    assert [(u.model, u.input_tokens, u.output_tokens) for u in rows] == [
        (model, 11, 2),
        (model, 5, 2),
    ]
    assert {u.input_params["endpoint"] for u in rows} == {"responses"}
    await client.close()
    await astore.close()
