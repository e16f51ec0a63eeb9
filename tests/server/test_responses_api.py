"""The Responses API with the official client against a live service and the scripted upstream."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from live import LiveService, Tenant
from upstream_llm import Reply, ToolCall, UpstreamLLM

pytestmark = pytest.mark.slow

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": True,
}


def _model() -> str:
    return f"m-{secrets.token_hex(4)}"


def _texts(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in body["messages"]]


def test_create_retrieve_input_items_delete(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, tenant: Tenant
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="Hello there", prompt_tokens=11, completion_tokens=2))
    response = client.responses.create(
        model=model,
        input="Hi",
        instructions="Be brief.",
        temperature=0.5,
        max_output_tokens=50,
        metadata={"k": "v"},
    )
    assert response.id.startswith("resp_")
    assert (response.status, response.output_text, response.model) == (
        "completed",
        "Hello there",
        model,
    )
    assert response.instructions == "Be brief."
    assert (response.temperature, response.max_output_tokens, response.metadata) == (
        0.5,
        50,
        {"k": "v"},
    )
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 2)
    assert response.usage.total_tokens == 13
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    [sent] = upstream_llm.requests_for(model)
    assert _texts(sent) == [("system", "Be brief."), ("user", "Hi")]
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.5, 50)

    fetched = client.responses.retrieve(response.id)
    assert fetched.model_dump() == response.model_dump()
    items = client.responses.input_items.list(response.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]
    assert items.data[0].content[0].text == "Hi"  # type: ignore[union-attr]

    [usage] = tenant.service.store.tenant(tenant.id).usage.list(limit=10).items
    assert (usage.model, usage.input_tokens, usage.output_tokens) == (model, 11, 2)
    assert usage.metadata["response_id"] == response.id
    assert usage.latency_ms is not None

    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(response.id)


def test_chains_fork_and_leave_instructions_behind(
    client: openai.OpenAI, upstream_llm: UpstreamLLM
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="A1"), Reply(text="A2"), Reply(text="A3"))
    first = client.responses.create(model=model, input="one", instructions="First rules.")
    second = client.responses.create(model=model, input="two", previous_response_id=first.id)
    fork = client.responses.create(
        model=model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "three"}]}],
        previous_response_id=first.id,
    )
    assert second.previous_response_id == first.id
    assert second.instructions is None
    sent = upstream_llm.requests_for(model)
    assert _texts(sent[1]) == [("user", "one"), ("assistant", "A1"), ("user", "two")]
    assert _texts(sent[2]) == [("user", "one"), ("assistant", "A1"), ("user", "three")]
    upstream_llm.script(model, Reply(text="A4"))
    client.responses.create(model=model, input="four", previous_response_id=second.id)
    assert _texts(upstream_llm.requests_for(model)[3]) == [
        ("user", "one"),
        ("assistant", "A1"),
        ("user", "two"),
        ("assistant", "A2"),
        ("user", "four"),
    ]
    assert fork.output_text == "A3"


def test_function_call_then_output(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    upstream_llm.script(
        model,
        Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}', id="call_oslo")]),
        Reply(text="Sunny in Oslo"),
    )
    first = client.responses.create(
        model=model,
        input="Weather in Oslo?",
        tools=[WEATHER_TOOL],
        tool_choice="auto",  # type: ignore[list-item]
    )
    assert first.status == "completed"
    [call] = first.output
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == (
        "call_oslo",
        "get_weather",
        '{"city": "Oslo"}',
    )
    sent = upstream_llm.requests_for(model)[0]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "auto"

    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_oslo", "output": "sunny"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert second.output_text == "Sunny in Oslo"
    messages = upstream_llm.requests_for(model)[1]["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_oslo"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_oslo", "content": "sunny"}


def test_conversation_collects_items(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="Nice to meet you"), Reply(text="You are Ada"))
    conversation = client.conversations.create(items=[{"role": "user", "content": "I am Ada"}])
    first = client.responses.create(model=model, input="Hello", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    client.responses.create(model=model, input="Who am I?", conversation={"id": conversation.id})
    sent = upstream_llm.requests_for(model)[1]
    assert _texts(sent) == [
        ("user", "I am Ada"),
        ("user", "Hello"),
        ("assistant", "Nice to meet you"),
        ("user", "Who am I?"),
    ]
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [i.role for i in items.data] == ["user", "user", "assistant", "user", "assistant"]  # type: ignore[union-attr]
    assert items.data[2].id == first.output[0].id


def test_errors(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.create(model=model, input="x", previous_response_id="resp_nope")
    assert missing.value.code == "previous_response_not_found"
    assert missing.value.param == "previous_response_id"
    conversation = client.conversations.create()
    first = client.responses.create(model=model, input="x")
    with pytest.raises(openai.BadRequestError) as both:
        client.responses.create(
            model=model, input="y", previous_response_id=first.id, conversation=conversation.id
        )
    assert both.value.param == "conversation"
    with pytest.raises(openai.BadRequestError) as background:
        client.responses.create(model=model, input="y", background=True, store=False)
    assert background.value.param == "background"
    with pytest.raises(openai.BadRequestError) as sync_cancel:
        client.responses.cancel(first.id)
    assert "synchronous" in sync_cancel.value.message
    with pytest.raises(openai.BadRequestError) as bad_item:
        client.responses.create(model=model, input=[{"type": "bogus"}])  # type: ignore[list-item]
    assert bad_item.value.param == "input[0].type"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_nope")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=model, input="y", conversation="conv_nope")


def test_upstream_failure_is_stored_as_failed(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, tenant: Tenant
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(status=500, error_message="boom"))
    with pytest.raises(openai.APIStatusError) as failure:
        client.responses.create(model=model, input="x")
    assert failure.value.status_code == 502
    assert "boom" in failure.value.message
    [usage] = tenant.service.store.tenant(tenant.id).usage.list(limit=10).items
    assert usage.status == "error"
    failed = tenant.service.store.tenant(tenant.id).responses.get(usage.metadata["response_id"])
    assert failed.status == "failed"
    assert failed.error is not None and "boom" in failed.error["message"]


def test_store_false_keeps_only_the_usage_row(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, tenant: Tenant
) -> None:
    model = _model()
    response = client.responses.create(model=model, input="secret", store=False)
    assert response.output_text == "You said: secret"
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=model, input="x", previous_response_id=response.id)
    assert len(tenant.service.store.tenant(tenant.id).usage.list(limit=10).items) == 1


def test_json_schema_format_goes_upstream(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text='{"ok": true}'))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    response = client.responses.create(
        model=model,
        input="json please",
        text={
            "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
        },
    )
    assert response.text.format.type == "json_schema"  # type: ignore[union-attr]
    sent = upstream_llm.requests_for(model)[0]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }


def _event_order(events: list[Any]) -> list[str]:
    return [e.type for e in events]


TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_stream_then_resume(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="Hello world"))
    events = list(client.responses.create(model=model, input="Hi", stream=True))
    assert _event_order(events) == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(TEXT_EVENTS)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == [
        "Hello",
        " world",
    ]
    done = events[-1].response
    assert (done.status, done.output_text) == ("completed", "Hello world")
    assert done.usage is not None
    assert client.responses.retrieve(done.id).model_dump() == done.model_dump()

    resumed = list(client.responses.retrieve(done.id, stream=True, starting_after=4))
    assert [e.model_dump() for e in resumed] == [e.model_dump() for e in events[5:]]


def test_concurrent_responses_each_end_stored_and_costed(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, tenant: Tenant
) -> None:
    """Responses in flight together share their writes' transactions; each ends as if alone."""
    model = _model()
    n = 12
    upstream_llm.script(
        model,
        *(
            Reply(text=f"answer {i} of many words", prompt_tokens=5, completion_tokens=i + 1)
            for i in range(n)
        ),
    )
    start = threading.Barrier(n)

    def one(i: int) -> Any:
        start.wait(timeout=30)
        if i % 2:
            return client.responses.create(model=model, input=f"q{i}")
        return list(client.responses.create(model=model, input=f"q{i}", stream=True))[-1].response

    with ThreadPoolExecutor(n) as pool:  # an error in any thread is raised here
        ended = dict(enumerate(pool.map(one, range(n), timeout=120)))
    texts = sorted(r.output_text for r in ended.values())
    assert texts == sorted(f"answer {i} of many words" for i in range(n))
    for r in ended.values():
        assert r.status == "completed"
        assert client.responses.retrieve(r.id).model_dump() == r.model_dump()
    store = tenant.service.store.tenant(tenant.id)
    rows = [u for u in store.usage.list(limit=100).items if u.model == model]
    assert sorted(u.output_tokens for u in rows) == list(range(1, n + 1))
    assert {u.metadata["response_id"] for u in rows} == {r.id for r in ended.values()}
    [day] = [r for r in store.usage.rollup("model") if r.key == model]
    assert (day.calls, day.output_tokens) == (n, sum(range(1, n + 1)))
    streamed = [r for i, r in ended.items() if i % 2 == 0]
    for r in streamed:  # every event stored, in order, once
        replay = list(client.responses.retrieve(r.id, stream=True))
        assert [e.sequence_number for e in replay] == list(range(len(replay)))
        assert replay[-1].response.output_text == r.output_text


def test_stream_function_call_events(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    upstream_llm.script(model, Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}')]))
    events = list(
        client.responses.create(
            model=model,
            input="Weather?",
            tools=[WEATHER_TOOL],
            stream=True,  # type: ignore[list-item]
        )
    )
    assert _event_order(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[4].arguments == '{"city": "Oslo"}'  # type: ignore[union-attr]
    assert events[-1].response.output[0].type == "function_call"  # type: ignore[union-attr]


def _wait_status(client: openai.OpenAI, response_id: str, statuses: set[str]) -> Any:
    """Poll until the response reaches one of ``statuses`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = client.responses.retrieve(response_id)
        if current.status in statuses:
            return current
        time.sleep(0.05)
    raise AssertionError(f"{response_id} never reached {statuses}")


def test_background_poll_and_cancel(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, tenant: Tenant
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="done later"), Reply(text="slow", delay=30.0))
    queued = client.responses.create(model=model, input="go", background=True)
    assert queued.status in ("queued", "in_progress")
    assert queued.background is True
    finished = _wait_status(client, queued.id, {"completed"})
    assert finished.output_text == "done later"
    assert client.responses.cancel(queued.id).status == "completed"  # unchanged

    slow = client.responses.create(model=model, input="wait", background=True)
    _wait_status(client, slow.id, {"in_progress"})
    cancelled = client.responses.cancel(slow.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(slow.id).status == "cancelled"
    usage = tenant.service.store.tenant(tenant.id).usage
    deadline = time.monotonic() + 30  # the worker notices within half a second
    while time.monotonic() < deadline:
        dropped = [u for u in usage.list(limit=10).items if u.metadata["response_id"] == slow.id]
        if dropped:
            break
        time.sleep(0.05)
    assert [(u.status, u.error_message) for u in dropped] == [
        ("error", "the response was cancelled while the upstream answered")
    ]


def test_a_cancelled_background_response_ends_its_followed_stream(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, tenant: Tenant
) -> None:
    """A cancel stores the stream's last event with the status: its followers see the end.

    OpenAI's stream has no ``response.cancelled`` event: the stream ends with
    ``response.incomplete`` whose response is the stored one, ``status: cancelled``.
    """
    model = _model()
    release = threading.Event()
    upstream_llm.script(model, Reply(text="one two three four", hold=release, hold_after=2))
    try:
        queued = client.responses.create(model=model, input="go", background=True)
        followed = client.responses.retrieve(queued.id, stream=True)
        seen = []
        for event in followed:  # until the answer is provably under way
            seen.append(event)
            if event.type == "response.output_text.delta":
                break
        cancelled = client.responses.cancel(queued.id)
        seen += list(followed)  # ends: the cancel stored the stream's last event
    finally:
        release.set()
    assert cancelled.status == "cancelled"
    last = seen[-1]
    assert last.type == "response.incomplete", [e.type for e in seen]
    assert last.response.status == "cancelled"
    assert last.response.model_dump() == cancelled.model_dump()
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    # Once the worker has dropped it, a new follower gets the same events, the end last:
    # none of the run's late ones after it.
    usage = tenant.service.store.tenant(tenant.id).usage
    deadline = time.monotonic() + 30
    while not [u for u in usage.list(limit=10).items if u.metadata["response_id"] == queued.id]:
        assert time.monotonic() < deadline, "the worker did not drop the cancelled response"
        time.sleep(0.05)
    again = list(client.responses.retrieve(queued.id, stream=True))
    assert [e.type for e in again][-1] == "response.incomplete"
    assert [e.sequence_number for e in again] == list(range(len(again)))
    assert [e.model_dump() for e in again[: len(seen)]] == [e.model_dump() for e in seen]


def test_background_stream(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="in the back"))
    events = list(client.responses.create(model=model, input="go", background=True, stream=True))
    assert _event_order(events)[:3] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_tenants_do_not_see_each_other(
    client: openai.OpenAI, service: LiveService, upstream_llm: UpstreamLLM
) -> None:
    response = client.responses.create(model=_model(), input="mine")
    other = service.new_tenant().client()
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        other.responses.create(model=_model(), input="x", previous_response_id=response.id)


def test_a_second_process_continues_the_chain(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM, tmp_path: Path
) -> None:
    """Two service processes on one database: either continues a chain the other began."""
    other = LiveService(
        backend=service.backend,
        database_url=service.database_url,
        log_path=tmp_path / "second.log",
        upstream=upstream_llm,
    )
    other.start()
    try:
        model = _model()
        upstream_llm.script(model, Reply(text="A1"), Reply(text="A2"))
        first = tenant.client().responses.create(model=model, input="one")
        second = other.client(key=tenant.key).responses.create(
            model=model, input="two", previous_response_id=first.id
        )
        assert _texts(upstream_llm.requests_for(model)[1]) == [
            ("user", "one"),
            ("assistant", "A1"),
            ("user", "two"),
        ]
        assert tenant.client().responses.retrieve(second.id).output_text == "A2"
    finally:
        other.close()


def _usage_of(tenant: Tenant, model: str) -> list[Any]:
    """The usage rows of ``model``'s upstream calls, once there are any (30 s at most)."""
    usage = tenant.service.store.tenant(tenant.id).usage
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if rows := [u for u in usage.list(limit=50).items if u.model == model]:
            return rows
        time.sleep(0.05)
    return []


def test_a_plain_request_whose_client_went_away_still_records_its_call(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """The client gives up while the upstream answers: the call it paid for is a usage row."""
    model = _model()
    gate = threading.Event()
    upstream_llm.script(
        model, Reply(text="too late", prompt_tokens=7, completion_tokens=2, gate=gate)
    )
    impatient = tenant.client(max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        impatient.responses.create(model=model, input="are you there?")
    gate.set()
    [row] = _usage_of(tenant, model)
    assert (row.input_tokens, row.output_tokens) == (7, 2)
    stored = tenant.service.store.tenant(tenant.id).responses.get(row.metadata["response_id"])
    assert stored.status == "completed"


def test_a_streamed_request_whose_client_went_away_is_failed_and_costed(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    model = _model()
    hold = threading.Event()
    upstream_llm.script(model, Reply(text="one two three four", hold=hold, hold_after=2))
    with tenant.client(max_retries=0).responses.create(
        model=model, input="talk", stream=True
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    hold.set()
    [row] = _usage_of(tenant, model)
    assert (row.status, row.error_message) == (
        "error",
        "the client disconnected before the response finished",
    )
    # The usage row is written first, then the response is ended: wait for the second.
    responses = tenant.service.store.tenant(tenant.id).responses
    deadline = time.monotonic() + 30
    while (status := responses.get(row.metadata["response_id"]).status) != "failed":
        assert time.monotonic() < deadline, f"the abandoned response stayed {status}"
        time.sleep(0.05)
    # Stored: the events the client was sent (its delta too, gathered and not yet
    # written when it left), then the stream's end, numbered without a gap.
    stored = responses.events(row.metadata["response_id"])
    assert [e.sequence_number for e in stored] == list(range(len(stored)))
    assert [e.type for e in stored][-1] == "response.failed"
    deltas = [e.data["delta"] for e in stored if e.type == "response.output_text.delta"]
    assert deltas[:1] == ["one"]


def test_a_streamed_response_deleted_while_it_runs_ends_with_an_error_and_keeps_its_cost(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """Its end cannot be stored: the stream ends with an ``error`` event, the call stays costed."""
    model = _model()
    hold = threading.Event()
    upstream_llm.script(
        model,
        Reply(
            text="one two three four", hold=hold, hold_after=2, prompt_tokens=9, completion_tokens=4
        ),
    )
    client = tenant.client(max_retries=0)
    events: list[Any] = []
    with client.responses.create(model=model, input="talk", stream=True) as stream:
        for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta" and not hold.is_set():
                client.responses.delete(events[0].response.id)
                hold.set()
    assert events[-1].type == "error"
    assert events[-1].sequence_number == events[-2].sequence_number + 1
    assert "No response found" in events[-1].message
    [row] = _usage_of(tenant, model)
    assert (row.status, row.input_tokens, row.output_tokens) == ("success", 9, 4)
    assert row.metadata["response_id"] == events[0].response.id


def test_streaming_a_response_that_was_not_streamed_is_refused(
    client: openai.OpenAI, upstream_llm: UpstreamLLM
) -> None:
    response = client.responses.create(model=_model(), input="plain")
    with pytest.raises(openai.BadRequestError) as refused:
        list(client.responses.retrieve(response.id, stream=True))
    assert refused.value.param == "stream"
    assert "stream=true" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        list(client.responses.retrieve("resp_nope", stream=True))
