"""A tenant never sees another tenant's objects: 404 on every route, absent from lists."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest
from live import LiveService
from upstream_llm import Reply, ToolCall

pytestmark = pytest.mark.slow

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tenant_isolation(service: LiveService) -> None:
    a_tenant, b_tenant = service.new_tenant(), service.new_tenant()
    a, b = a_tenant.client(), b_tenant.client()

    assistant = a.beta.assistants.create(model="m", name="mine")
    thread = a.beta.threads.create(messages=[{"role": "user", "content": "secret"}])
    message = a.beta.threads.messages.list(thread.id).data[0]
    conversation = a.conversations.create(items=[{"role": "user", "content": "secret"}])
    item = a.conversations.items.list(conversation.id).data[0]

    calls = [
        lambda: b.beta.assistants.retrieve(assistant.id),
        lambda: b.beta.assistants.update(assistant.id, name="stolen"),
        lambda: b.beta.assistants.delete(assistant.id),
        lambda: b.beta.threads.retrieve(thread.id),
        lambda: b.beta.threads.update(thread.id, metadata={"x": "y"}),
        lambda: b.beta.threads.delete(thread.id),
        lambda: b.beta.threads.messages.list(thread.id),
        lambda: b.beta.threads.messages.create(thread.id, role="user", content="x"),
        lambda: b.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        lambda: b.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={}),
        lambda: b.beta.threads.messages.delete(message.id, thread_id=thread.id),
        lambda: b.conversations.retrieve(conversation.id),
        lambda: b.conversations.update(conversation.id, metadata={"x": "y"}),
        lambda: b.conversations.delete(conversation.id),
        lambda: b.conversations.items.list(conversation.id),
        lambda: b.conversations.items.create(
            conversation.id, items=[{"role": "user", "content": "x"}]
        ),
        lambda: b.conversations.items.retrieve(item.id, conversation_id=conversation.id),  # type: ignore[union-attr]
        lambda: b.conversations.items.delete(item.id, conversation_id=conversation.id),  # type: ignore[union-attr]
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()
    assert b.beta.assistants.list().data == []

    # nothing of A's changed
    assert a.beta.assistants.retrieve(assistant.id).name == "mine"
    assert a.beta.threads.retrieve(thread.id).metadata == {}
    assert [m.id for m in a.beta.threads.messages.list(thread.id)] == [message.id]
    assert [i.id for i in a.conversations.items.list(conversation.id)] == [item.id]  # type: ignore[union-attr]
    assert [x.id for x in a.beta.assistants.list()] == [assistant.id]


def test_runs_of_another_tenant_are_not_found(service: LiveService, upstream_llm: Any) -> None:
    """Cancel, update, submit_tool_outputs, steps and the events stream: 404 for tenant B."""
    a_tenant, b_tenant = service.new_tenant(), service.new_tenant()
    a, b = a_tenant.client(), b_tenant.client()
    model = f"script-{uuid.uuid4().hex[:10]}"
    upstream_llm.script(model, Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}')]))
    assistant = a.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    thread = a.beta.threads.create(messages=[{"role": "user", "content": "Oslo?"}])
    run = a.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    step = a.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]
    before = a.beta.threads.runs.retrieve(run.id, thread_id=thread.id)

    calls = [
        lambda: b.beta.threads.runs.retrieve(run.id, thread_id=thread.id),
        lambda: b.beta.threads.runs.list(thread.id),
        lambda: b.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"x": "y"}),
        lambda: b.beta.threads.runs.cancel(run.id, thread_id=thread.id),
        lambda: b.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "x"}]
        ),
        lambda: b.beta.threads.runs.steps.list(run.id, thread_id=thread.id),
        lambda: b.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id),
        lambda: b.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id),
    ]
    for call_b in calls:
        with pytest.raises(openai.NotFoundError):
            call_b()
    events = b_tenant.http().get(f"/v1/threads/{thread.id}/runs/{run.id}/events")
    assert events.status_code == 404, events.text
    assert events.json()["error"]["message"] == f"No thread found with id '{thread.id}'."

    # A's run is untouched: still waiting for its tool output, same metadata, same steps.
    after = a.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert after == before
    assert [s.id for s in a.beta.threads.runs.steps.list(run.id, thread_id=thread.id)] == [step.id]
    replay = a_tenant.http().get(f"/v1/threads/{thread.id}/runs/{run.id}/events")
    assert replay.status_code == 200 and "thread.run.requires_action" in replay.text
