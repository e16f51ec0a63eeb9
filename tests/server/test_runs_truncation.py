"""``max_prompt_tokens`` and ``truncation_strategy`` over HTTP: what the upstream receives.

Messages of 401 characters are 104 tokens each by agentkeep's estimate
(:mod:`agentkeep.runner.tokens`), 3 more for the reply: a budget of 256 fits two.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from live import Tenant
from upstream_llm import Reply, ToolCall, UpstreamLLM

pytestmark = pytest.mark.slow

WORDS = "x" * 400
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def _model() -> str:
    return f"script-{uuid.uuid4().hex[:10]}"


def _sent_texts(upstream: UpstreamLLM, model: str) -> list[list[str]]:
    return [
        [m["content"] for m in body["messages"] if m["role"] == "user"]
        for body in upstream.requests_for(model)
    ]


def test_auto_truncation_sends_the_newest_messages_that_fit(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = _model()
    upstream_llm.script(model, Reply(text="ok", prompt_tokens=200))
    assistant = client.beta.assistants.create(model=model)
    texts = [f"{i}{WORDS}" for i in range(6)]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": t} for t in texts])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        max_prompt_tokens=256,
        truncation_strategy={"type": "auto"},
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    assert run.max_prompt_tokens == 256
    assert _sent_texts(upstream_llm, model) == [texts[-2:]]


def test_last_messages_that_do_not_fit_end_the_run_incomplete(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = _model()
    assistant = client.beta.assistants.create(model=model)
    texts = [f"{i}{WORDS}" for i in range(6)]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": t} for t in texts])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        max_prompt_tokens=256,
        truncation_strategy={"type": "last_messages", "last_messages": 3},
        poll_interval_ms=50,
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_prompt_tokens"
    assert upstream_llm.requests_for(model) == []  # no call was made
    # With two messages it fits.
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        max_prompt_tokens=256,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    assert _sent_texts(upstream_llm, model) == [texts[-2:]]


def test_the_budget_spans_the_runs_calls(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = _model()
    # The first call uses 250 of 300 prompt tokens: what is left cannot carry the
    # newest message and the tool call's output, so the run ends incomplete.
    upstream_llm.script(model, Reply(tool_calls=[ToolCall("lookup", "{}")], prompt_tokens=250))
    assistant = client.beta.assistants.create(model=model, tools=[TOOL])  # type: ignore[list-item]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Find it"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=300, poll_interval_ms=50
    )
    assert run.status == "requires_action"
    assert run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "y" * 400}],
        poll_interval_ms=50,
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_prompt_tokens"
    assert len(upstream_llm.requests_for(model)) == 1
    assert run.usage is not None and run.usage.prompt_tokens == 250
