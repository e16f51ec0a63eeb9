"""Runs over HTTP with the official client: polling, steps, tools, cancel, usage, errors."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import openai
import pytest
from conftest import LiveService, Tenant
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Run
from upstream_llm import Reply, ToolCall, UpstreamLLM

pytestmark = pytest.mark.slow

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def new_model() -> str:
    """A model name of this test's own, so its scripted replies are its own."""
    return f"script-{uuid.uuid4().hex[:10]}"


def run_to_tool_call(
    client: openai.OpenAI, model: str, question: str
) -> tuple[Assistant, Thread, Run]:
    """An assistant with WEATHER_TOOL, a thread asking ``question``, and its run
    polled until it waits for tool outputs."""
    assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": question}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "requires_action", run.last_error
    assert run.required_action is not None
    return assistant, thread, run


def wait_status(
    client: openai.OpenAI, thread_id: str, run_id: str, statuses: set[str], timeout: float = 20
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status in statuses:
            return run
        assert time.monotonic() < deadline, f"run stayed {run.status}"
        time.sleep(0.05)


def test_run_completes(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model, Reply(text="Paris is the capital of France.", prompt_tokens=42, completion_tokens=7)
    )
    assistant = client.beta.assistants.create(
        model=model, instructions="You answer geography questions."
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    assert run.object == "thread.run"
    assert run.thread_id == thread.id and run.assistant_id == assistant.id
    assert run.model == model
    assert run.instructions == "You answer geography questions."
    assert run.usage is not None
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (42, 7)
    assert run.usage.total_tokens == 49
    assert run.completed_at is not None and run.started_at is not None
    assert run.last_error is None and run.required_action is None

    # the upstream got the instructions and the thread
    sent = upstream_llm.requests_for(model)
    assert len(sent) == 1
    assert sent[0]["stream"] is True
    assert sent[0]["stream_options"] == {"include_usage": True}
    assert sent[0]["messages"] == [
        {"role": "system", "content": "You answer geography questions."},
        {"role": "user", "content": "What is the capital of France?"},
    ]

    messages = client.beta.threads.messages.list(thread.id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant"]
    answer = messages.data[1]
    assert answer.content[0].text.value == "Paris is the capital of France."  # type: ignore[union-attr]
    assert answer.run_id == run.id and answer.assistant_id == assistant.id
    assert answer.status == "completed"

    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert len(steps.data) == 1
    step = steps.data[0]
    assert step.type == "message_creation" and step.status == "completed"
    assert step.step_details.message_creation.message_id == answer.id  # type: ignore[union-attr]
    assert step.usage is not None and step.usage.total_tokens == 49
    again = client.beta.threads.runs.steps.retrieve(step.id, thread_id=thread.id, run_id=run.id)
    assert again.id == step.id and again.run_id == run.id and again.thread_id == thread.id

    listed = client.beta.threads.runs.list(thread.id)
    assert [r.id for r in listed.data] == [run.id]


def test_usage_rows_recorded(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(text="slow answer", prompt_tokens=11, completion_tokens=3, delay=0.2),
    )
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed"
    store = service.store.tenant(tenant.id)
    rows = store.usage.list(run_id=run.id).items
    assert len(rows) == 1
    row = rows[0]
    assert (row.input_tokens, row.output_tokens) == (11, 3)
    assert row.model == model and row.status == "success"
    assert row.latency_ms is not None and row.latency_ms >= 200
    assert row.session_id == thread.id and row.agent_id == assistant.id
    assert row.provider == "openai-compatible"
    assert row.response == "slow answer"
    stored = store.runs.get(run.id)
    assert (stored.input_tokens, stored.output_tokens, stored.iterations) == (11, 3, 1)
    # the events of the run were persisted in the streaming vocabulary
    types = [e.type for e in store.events.list(run_id=run.id)]
    assert types[0] == "thread.run.created" and types[-1] == "thread.run.completed"


def test_run_overrides_and_additional_messages(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model, other = new_model(), new_model()
    assistant = client.beta.assistants.create(model=model, instructions="Base.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        model=other,
        additional_instructions="Be brief.",
        additional_messages=[{"role": "user", "content": "second"}],
        temperature=0.3,
        metadata={"k": "v"},
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    assert run.model == other
    assert run.instructions == "Base.\n\nBe brief."
    assert run.temperature == 0.3
    assert run.metadata == {"k": "v"}
    sent = upstream_llm.requests_for(other)[0]
    assert sent["temperature"] == 0.3
    assert [m["content"] for m in sent["messages"]] == ["Base.\n\nBe brief.", "first", "second"]
    modified = client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"k": "w"})
    assert modified.metadata == {"k": "w"}


def test_function_tool_run(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}', id="call_up_1")]),
        Reply(text="It is sunny in Oslo."),
    )
    assistant, thread, run = run_to_tool_call(client, model, "Weather in Oslo?")
    assert run.required_action.type == "submit_tool_outputs"
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    assert calls[0].type == "function"

    # no new message or run while the run waits
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.messages.create(thread.id, role="user", content="hello?")
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    # outputs must answer the calls
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_nope", "output": "x"}]
        )

    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": calls[0].id, "output": "sunny, 21C"}],
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    assert run.required_action is None

    # the second upstream call saw the call and its output
    second = upstream_llm.requests_for(model)[1]["messages"]
    assert second[-2]["role"] == "assistant"
    assert second[-2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
    assert second[-1] == {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"}

    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert all(s.status == "completed" for s in steps)
    tool_step = steps[0].step_details
    assert tool_step.type == "tool_calls"
    assert tool_step.tool_calls[0].function.output == "sunny, 21C"  # type: ignore[union-attr]
    messages = client.beta.threads.messages.list(thread.id, order="asc").data
    assert messages[-1].content[0].text.value == "It is sunny in Oslo."  # type: ignore[union-attr]


def test_tool_calls_recorded(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(
            tool_calls=[
                ToolCall("get_weather", '{"city": "Rome"}'),
                ToolCall("get_weather", '{"city": "Lima"}'),
            ]
        ),
        Reply(text="done"),
    )
    _, thread, run = run_to_tool_call(client, model, "two cities")
    calls = run.required_action.submit_tool_outputs.tool_calls
    store = service.store.tenant(tenant.id)
    records = store.tool_calls.list(run_id=run.id, order="asc").items
    assert [r.id for r in records] == [c.id for c in calls]
    assert all(r.state == "pending" for r in records)
    # both outputs at once are required
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": calls[0].id, "output": "a"}]
        )
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[
            {"tool_call_id": calls[0].id, "output": "warm"},
            {"tool_call_id": calls[1].id, "output": "cold"},
        ],
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    records = store.tool_calls.list(run_id=run.id, order="asc").items
    assert [(r.state, r.output) for r in records] == [("completed", "warm"), ("completed", "cold")]
    assert len(store.usage.list(run_id=run.id).items) == 2


def test_cancel_queued_waiting_and_running(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(text=" ".join(["word"] * 200), chunk_delay=0.05),
        Reply(tool_calls=[ToolCall("get_weather", "{}")]),
    )
    assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]

    # cancel while the upstream streams
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "talk"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 10
    while not client.beta.threads.messages.list(thread.id, run_id=run.id).data:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelled.status in ("cancelling", "cancelled")
    run = wait_status(client, thread.id, run.id, {"cancelled", "failed", "completed"})
    assert run.status == "cancelled"
    assert run.cancelled_at is not None
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.status == "incomplete"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [s.status for s in steps] == ["cancelled"]
    # a stopped run cannot be cancelled again
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)

    # cancel while it waits for tool outputs
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "weather"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "requires_action"
    run = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert run.status == "cancelled"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [s.status for s in steps] == ["cancelled"]
    # the thread takes messages and runs again
    client.beta.threads.messages.create(thread.id, role="user", content="never mind")


def test_cancel_queued_run(service: LiveService, tenant: Tenant) -> None:
    """A run nobody has claimed yet is cancelled at once."""
    client = tenant.client()
    store = service.store.tenant(tenant.id)
    assistant = client.beta.assistants.create(model=new_model())
    thread = client.beta.threads.create()
    # a queued run made directly in the store is what a busy worker would leave waiting
    run_id = store.runs.create(assistant.id, session_id=thread.id, status="requires_action").id
    run = client.beta.threads.runs.cancel(run_id, thread_id=thread.id)
    assert run.status == "cancelled"


def test_upstream_error_fails_the_run(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(status=500, error_message="the model is overloaded"),
        Reply(status=429, error_message="slow down"),
        Reply(text="partial answer that never ends", drop_after=3),
    )
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    store = service.store.tenant(tenant.id)
    for code, text in [
        ("server_error", "the model is overloaded"),
        ("rate_limit_exceeded", "slow down"),
        ("server_error", "closed the stream"),
    ]:
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
        )
        assert run.status == "failed"
        assert run.last_error is not None
        assert run.last_error.code == code
        assert text in run.last_error.message
        assert run.failed_at is not None
        usage = store.usage.list(run_id=run.id).items
        assert len(usage) == 1 and usage[0].status == "error"
    # the dropped stream left an incomplete message with what had arrived
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.status == "incomplete"
    assert message.content[0].text.value == "partial answer"  # type: ignore[union-attr]


def test_create_thread_and_run(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(text="Hello there"))
    assistant = client.beta.assistants.create(model=model)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Hi!"}], "metadata": {"a": "b"}},
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    thread = client.beta.threads.retrieve(run.thread_id)
    assert thread.metadata == {"a": "b"}
    texts = [
        m.content[0].text.value
        for m in client.beta.threads.messages.list(thread.id, order="asc").data
    ]  # type: ignore[union-attr]
    assert texts == ["Hi!", "Hello there"]


def test_concurrent_create_and_runs_each_get_their_own_thread_and_answer(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """Threads started at once are written together (a group commit per round); each
    request still gets its own outcome: an unknown assistant among them is a 404 that
    leaves nothing behind, and every other gets its thread, message and run."""
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, *[Reply(text="ok") for _ in range(12)])
    assistant = client.beta.assistants.create(model=model)
    outcomes: dict[int, Any] = {}
    start = threading.Barrier(13)

    def create(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = client.beta.threads.create_and_run(
                assistant_id="asst_nope" if i == 12 else assistant.id,
                thread={"messages": [{"role": "user", "content": f"m{i}"}]},
            )
        except openai.NotFoundError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=create, args=(i,)) for i in range(13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(outcomes[12], openai.NotFoundError)
    runs = [outcomes[i] for i in range(12)]
    assert all(isinstance(r, Run) for r in runs)
    assert len({r.thread_id for r in runs}) == 12
    for i, run in enumerate(runs):
        messages = client.beta.threads.messages.list(run.thread_id, order="asc").data
        assert messages[0].content[0].text.value == f"m{i}"  # type: ignore[union-attr]
        assert wait_status(client, run.thread_id, run.id, {"completed"}).status == "completed"
    store = service.store.tenant(tenant.id)
    assert len(store.sessions.list(kind="thread", limit=100).items) == 12


def test_run_errors(tenant: Tenant, service: LiveService) -> None:
    client = tenant.client()
    assistant = client.beta.assistants.create(model=new_model())
    thread = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id="thread_nope", assistant_id=assistant.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_nope")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve("run_nope", thread_id=thread.id)
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, temperature=5
        )
    assert info.value.body["param"] == "temperature"  # type: ignore[index]
    http = tenant.http()
    answer = http.post(
        f"/v1/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "bogus": 1}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "bogus"
    # another tenant sees nothing
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    other = service.new_tenant().client()
    with pytest.raises(openai.NotFoundError):
        other.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    # a run is found only on its own thread, and a missing thread is named first
    other_thread = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError) as wrong:
        client.beta.threads.runs.retrieve(run.id, thread_id=other_thread.id)
    assert run.id in wrong.value.message
    conversation = client.conversations.create()
    for missing in ("thread_nope", conversation.id):
        with pytest.raises(openai.NotFoundError) as absent:
            client.beta.threads.runs.retrieve(run.id, thread_id=missing)
        assert missing in absent.value.message and "thread" in absent.value.message
    wait_status(client, thread.id, run.id, {"completed", "failed"})


def test_one_active_run_per_thread_under_concurrency(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(text="only one", delay=0.5))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "race"}])
    statuses: list[int] = []

    def attempt() -> None:
        with tenant.http() as http:
            answer = http.post(f"/v1/threads/{thread.id}/runs", json={"assistant_id": assistant.id})
            statuses.append(answer.status_code)

    workers = [threading.Thread(target=attempt) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(statuses) == [200] + [400] * 7
    assert len(client.beta.threads.runs.list(thread.id).data) == 1


def test_concurrent_runs_on_many_threads_each_get_their_own_answer(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """Runs created at once on several threads share a round of the group commit, which
    locks the threads' rows; a missing thread (404) and a thread with an active run (400)
    among them get their own answers and the others their runs."""
    client = tenant.client()
    waiting = new_model()  # a run that stays active: it waits for tool outputs
    upstream_llm.script(waiting, Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}')]))
    _, busy_thread, busy = run_to_tool_call(client, waiting, "Weather in Oslo?")
    model = new_model()
    upstream_llm.script(model, *[Reply(text="ok") for _ in range(9)])
    assistant = client.beta.assistants.create(model=model)
    threads = [*(client.beta.threads.create().id for _ in range(9)), busy_thread.id]
    targets = [*threads, "thread_nope"]
    statuses: dict[int, int] = {}
    start = threading.Barrier(len(targets))

    def attempt(i: int) -> None:
        with tenant.http() as http:
            start.wait()
            body = {
                "assistant_id": assistant.id,
                "additional_messages": [{"role": "user", "content": f"m{i}"}],
            }
            statuses[i] = http.post(f"/v1/threads/{targets[i]}/runs", json=body).status_code

    workers = [threading.Thread(target=attempt, args=(i,)) for i in range(len(targets))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert [statuses[i] for i in range(len(targets))] == [200] * 9 + [400, 404]
    for i, thread_id in enumerate(threads[:9]):
        (run,) = client.beta.threads.runs.list(thread_id).data
        assert wait_status(client, thread_id, run.id, {"completed"}).status == "completed"
        messages = client.beta.threads.messages.list(thread_id, order="asc").data
        assert [(m.role, m.content[0].text.value) for m in messages] == [  # type: ignore[union-attr]
            ("user", f"m{i}"),
            ("assistant", "ok"),
        ]
    assert [r.id for r in client.beta.threads.runs.list(busy_thread.id).data] == [busy.id]
    # The refused run's additional message was not written (nothing half-written).
    texts = [
        m.content[0].text.value for m in client.beta.threads.messages.list(busy_thread.id).data
    ]  # type: ignore[union-attr]
    assert texts == ["Weather in Oslo?"]


def test_truncation_and_non_function_tools(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    assistant = client.beta.assistants.create(
        model=model,
        tools=[{"type": "code_interpreter"}, WEATHER_TOOL],  # type: ignore[list-item]
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f"m{i}"} for i in range(5)]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
        tool_choice="required",
        parallel_tool_calls=False,
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    assert [t.type for t in run.tools] == ["code_interpreter", "function"]
    assert run.truncation_strategy is not None and run.truncation_strategy.last_messages == 2
    sent = upstream_llm.requests_for(model)[0]
    assert [m["content"] for m in sent["messages"]] == ["m3", "m4"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False


def test_text_and_tool_calls_in_one_answer(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(text="Let me check.", tool_calls=[ToolCall("get_weather", '{"city": "Nice"}')]),
        Reply(text="Sunny."),
    )
    _, thread, run = run_to_tool_call(client, model, "Nice?")
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sun"}],
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["message_creation", "tool_calls", "message_creation"]
    texts = [
        m.content[0].text.value  # type: ignore[union-attr]
        for m in client.beta.threads.messages.list(thread.id, order="asc").data
    ]
    assert texts == ["Nice?", "Let me check.", "Sunny."]
    second = upstream_llm.requests_for(model)[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "assistant", "tool"]
    assert second[1]["content"] == "Let me check."


async def test_async_client_stream(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.async_client()
    model = new_model()
    upstream_llm.script(model, Reply(chunks=["as", "ync"]))
    assistant = await client.beta.assistants.create(model=model)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    deltas: list[str] = []
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id
    ) as stream:
        async for text in stream.text_deltas:
            deltas.append(text)
        run = await stream.get_final_run()
    await client.close()
    assert "".join(deltas) == "async"  # the deltas of one batch come as one
    assert run.status == "completed"


def test_upstream_that_does_not_stream(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """An upstream that answers one JSON completion instead of a stream still works."""
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model, Reply(text="in one piece", ignore_stream=True, prompt_tokens=5, completion_tokens=3)
    )
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed"
    assert run.usage is not None and run.usage.total_tokens == 8
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.content[0].text.value == "in one piece"  # type: ignore[union-attr]


def test_list_runs_pagination(tenant: Tenant) -> None:
    client = tenant.client()
    assistant = client.beta.assistants.create(model=new_model())
    thread = client.beta.threads.create()
    ids = []
    for i in range(3):
        client.beta.threads.messages.create(thread.id, role="user", content=f"q{i}")
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
        )
        assert run.status == "completed"
        ids.append(run.id)
    page = client.beta.threads.runs.list(thread.id, limit=2)
    assert [r.id for r in page.data] == ids[::-1][:2]
    assert page.has_more is True
    rest = client.beta.threads.runs.list(thread.id, limit=2, after=page.data[-1].id)
    assert [r.id for r in rest.data] == [ids[0]]
    assert rest.has_more is False
    asc = client.beta.threads.runs.list(thread.id, order="asc")
    assert [r.id for r in asc.data] == ids
    assert [r.id for r in client.beta.threads.runs.list(thread.id).data] == ids[::-1]
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.list(thread.id, limit=101)
    # the second run saw the first one's answer
    steps = client.beta.threads.runs.steps.list(ids[1], thread_id=thread.id, limit=1, order="asc")
    assert len(steps.data) == 1 and steps.has_more is False
