"""What a Responses request becomes: the upstream request built from its items, tools and
format; item references and conversations as context; the requests refused before any
upstream call; and background responses whose context changed while they were queued.

Each test drives a live service with the official client against the scripted upstream
and checks what the upstream was sent, what the client is told and what is stored.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from live import LiveService, StartService, Tenant
from test_responses_failures import WAIT_S, _model, _wait_status
from upstream_llm import Reply, ToolCall, UpstreamLLM

pytestmark = pytest.mark.slow

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
IMAGE = "data:image/png;base64,iVBORw0KGgo="


def _texts(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in body["messages"]]


# -- the upstream request --------------------------------------------------------------------


def test_items_tools_and_format_are_translated_for_the_upstream(
    client: openai.OpenAI, upstream_llm: UpstreamLLM
) -> None:
    """Images stay with the user's text, calls join the assistant's message, the rest maps."""
    model = _model()
    upstream_llm.script(model, Reply(text='{"city": "Oslo"}'))
    response = client.responses.create(
        model=model,
        input=[
            {"role": "developer", "content": "Answer in JSON."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Where is this?"},
                    {"type": "input_image", "image_url": IMAGE, "detail": "auto"},
                ],
            },
            {"role": "assistant", "content": "Let me look it up."},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
            {"role": "assistant", "content": ""},  # an empty turn: its call carries it
            {"type": "function_call", "call_id": "c3", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c3", "output": "snow"},
            {"type": "reasoning", "summary": []},  # the model's own: not sent back
            {
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "It is "},
                    {"type": "refusal", "refusal": "not for me to say"},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": IMAGE},
                    {"type": "input_file", "file_id": "file_1"},
                ],
            },
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        top_p=0.25,
        text={"format": {"type": "json_object"}},
    )
    assert response.output_text == '{"city": "Oslo"}'
    assert (response.top_p, response.parallel_tool_calls) == (0.25, False)
    assert response.tool_choice.type == "function"  # type: ignore[union-attr]
    [sent] = upstream_llm.requests_for(model)
    call = {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in JSON."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Where is this?"},
                {"type": "image_url", "image_url": {"url": IMAGE}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look it up.",
            "tool_calls": [{"id": "c1", **call}, {"id": "c2", **call}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c3", **call}]},
        {"role": "tool", "tool_call_id": "c3", "content": "snow"},
        {"role": "assistant", "content": "It is not for me to say"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}]},
    ]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER_TOOL["parameters"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (sent["parallel_tool_calls"], sent["top_p"]) == (False, 0.25)
    assert sent["response_format"] == {"type": "json_object"}


def test_a_json_schema_without_a_name_is_named_for_the_upstream(
    client: openai.OpenAI, upstream_llm: UpstreamLLM
) -> None:
    model = _model()
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    client.responses.create(
        model=model,
        input="json",
        text={"format": {"type": "json_schema", "schema": schema}},  # type: ignore[typeddict-item]
    )
    [sent] = upstream_llm.requests_for(model)
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    assert "tools" not in sent and "top_p" not in sent and "parallel_tool_calls" not in sent


@pytest.mark.parametrize(
    ("fields", "param", "in_message"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search' is not supported"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "is required"),
        ({"tools": [{"type": "function", "name": ""}]}, "tools[0].name", "is required"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice", "must be auto"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function"}},
            "tool_choice",
            "must be auto",
        ),
        ({"text": {"format": {"type": "json_schema"}}}, "text.format.schema", "JSON schema"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", "json_object"),
        ({"conversation": {"id": ""}}, "conversation", "conversation id"),
        ({"conversation": {}}, "conversation", "conversation id"),
        ({"input": []}, "input", "at least one input item"),
        ({"input": None}, "input", "at least one input item"),
        ({"input": [{"type": "item_reference", "id": "msg_nope"}]}, "input[0].id", "msg_nope"),
    ],
    ids=[
        "tool-type",
        "tool-without-name",
        "tool-empty-name",
        "tool-choice-word",
        "tool-choice-without-name",
        "schema-missing",
        "format-type",
        "conversation-empty-id",
        "conversation-without-id",
        "no-input",
        "input-null",
        "unknown-reference",
    ],
)
def test_a_request_the_upstream_cannot_be_sent_is_a_400_naming_the_field(
    tenant: Tenant,
    upstream_llm: UpstreamLLM,
    fields: dict[str, Any],
    param: str,
    in_message: str,
) -> None:
    """Refused before any upstream call: nothing is sent, stored or charged."""
    model = _model()
    body: dict[str, Any] = {"model": model, "input": "hello", **fields}
    if body["input"] is None:
        del body["input"]
    with pytest.raises(openai.BadRequestError) as refused:
        tenant.client().responses.create(**body)
    assert refused.value.param == param
    assert in_message in refused.value.message
    assert upstream_llm.requests_for(model) == []
    assert tenant.service.store.tenant(tenant.id).usage.list(limit=10).items == []
    with tenant.service.store._core.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM responses WHERE tenant_id = :t"), {"t": tenant.id}
        ).scalar()
    assert stored == 0


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stream": "yes"}, "stream"),
        ({"store": "false"}, "store"),
        ({"temperature": "0.5"}, "temperature"),
        ({"temperature": 5}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"max_output_tokens": "100"}, "max_output_tokens"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"parallel_tool_calls": 1}, "parallel_tool_calls"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"tool_choice": "bogus"}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "name": "get_weather"}}, "tool_choice"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "x"}},
            "tool_choice",
        ),
        ({"tools": [{**WEATHER_TOOL, "parameters": "{}"}]}, "tools[0].parameters"),
        ({"tools": [{**WEATHER_TOOL, "strict": "yes"}]}, "tools[0].strict"),
        ({"tools": [{**WEATHER_TOOL, "description": 7}]}, "tools[0].description"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_a_body_of_the_wrong_types_or_ranges_is_a_400_naming_the_field(
    tenant: Tenant, upstream_llm: UpstreamLLM, fields: dict[str, Any], param: str
) -> None:
    """Strict as OpenAI's API: no string read as a boolean or a number, the document's ranges."""
    model = _model()
    with tenant.http() as http:
        r = http.post("/v1/responses", json={"model": model, "input": "hello", **fields})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    assert upstream_llm.requests_for(model) == []
    assert tenant.service.store.tenant(tenant.id).usage.list(limit=10).items == []


def test_the_documented_ranges_and_unknown_fields_are_accepted(
    client: openai.OpenAI, upstream_llm: UpstreamLLM
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="fine"))
    response = client.responses.create(
        model=model,
        input="hello",
        temperature=0,
        top_p=1,
        max_output_tokens=16,
        tool_choice="none",
        extra_body={"prompt_cache_key": "k", "service_tier": "auto"},
    )
    assert response.output_text == "fine"
    [sent] = upstream_llm.requests_for(model)
    assert (sent["temperature"], sent["top_p"], sent["max_completion_tokens"]) == (0, 1, 16)


def test_a_function_tool_is_echoed_with_every_field_the_schema_requires(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="ok"))
    tool = {"type": "function", "name": "ping"}  # no strict, parameters or description
    with tenant.http() as http:
        r = http.post("/v1/responses", json={"model": model, "input": "hi", "tools": [tool]})
    assert r.status_code == 200, r.text
    assert r.json()["tools"] == [
        {
            "type": "function",
            "name": "ping",
            "description": None,
            "parameters": None,
            "strict": None,
        }
    ]


# -- context: item references and conversations -------------------------------------------


def test_item_references_bring_in_stored_items_under_new_ids(
    tenant: Tenant, service: LiveService, upstream_llm: UpstreamLLM
) -> None:
    """An output item of an earlier response and an item of a conversation, by id."""
    client = tenant.client()
    model = _model()
    upstream_llm.script(model, Reply(text="Paris"), Reply(text="Both"))
    earlier = client.responses.create(model=model, input="Capital of France?")
    conversation = client.conversations.create(items=[{"role": "user", "content": "I am Ada"}])
    [kept] = client.conversations.items.list(conversation.id).data
    answer = earlier.output[0].id
    response = client.responses.create(
        model=model,
        input=[
            {"type": "item_reference", "id": answer},
            {"type": "item_reference", "id": kept.id},
            {"role": "user", "content": "Say both."},
        ],
    )
    assert response.output_text == "Both"
    assert _texts(upstream_llm.requests_for(model)[1]) == [
        ("assistant", "Paris"),
        ("user", "I am Ada"),
        ("user", "Say both."),
    ]
    items = client.responses.input_items.list(response.id, order="asc").data
    assert [(i.type, i.role) for i in items] == [  # type: ignore[union-attr]
        ("message", "assistant"),
        ("message", "user"),
        ("message", "user"),
    ]
    ids = [i.id for i in items]
    assert len(set(ids)) == 3 and answer not in ids and kept.id not in ids
    assert all(i.startswith("msg_") for i in ids)
    assert items[0].content[0].text == "Paris"  # type: ignore[union-attr]
    # The originals are where they were.
    assert client.responses.retrieve(earlier.id).output[0].id == answer
    # Another tenant's items are not found.
    with pytest.raises(openai.BadRequestError) as foreign:
        service.new_tenant().client().responses.create(
            model=model, input=[{"type": "item_reference", "id": answer}]
        )
    assert foreign.value.param == "input[0].id"


def test_a_thread_is_not_a_conversation(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "thread text"}])
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model=model, input="x", conversation=thread.id)
    assert thread.id in missing.value.message
    assert upstream_llm.requests_for(model) == []


def test_a_long_conversation_is_sent_whole_and_keeps_only_messages_and_calls(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """More items than one page read (1000) all go upstream, in order; reasoning is kept out."""
    client = tenant.client()
    model = _model()
    conversation = client.conversations.create()
    store = tenant.service.store.tenant(tenant.id)
    store.messages.append_many(
        conversation.id,
        [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
            for i in range(1003)
        ],
    )
    upstream_llm.script(model, Reply(text="that was long"))
    client.responses.create(
        model=model,
        conversation=conversation.id,
        input=[
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm"}]},
            {"role": "user", "content": "the end"},
        ],
    )
    [sent] = upstream_llm.requests_for(model)
    assert [m["content"] for m in sent["messages"]] == [
        *(f"turn {i}" for i in range(1003)),
        "the end",
    ]
    newest = client.conversations.items.list(conversation.id, limit=3).data
    # The new user message and the answer were added; the reasoning item was not.
    assert [(i.type, i.role) for i in newest] == [  # type: ignore[union-attr]
        ("message", "assistant"),
        ("message", "user"),
        ("message", "user"),  # turn 1002
    ]
    assert newest[0].content[0].text == "that was long"  # type: ignore[union-attr]
    assert newest[1].content[0].text == "the end"  # type: ignore[union-attr]
    assert store.sessions.get(conversation.id).message_count == 1005


def test_a_background_response_in_a_conversation_reads_and_extends_it(
    client: openai.OpenAI, upstream_llm: UpstreamLLM
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="Hello Ada"))
    conversation = client.conversations.create(items=[{"role": "user", "content": "I am Ada"}])
    queued = client.responses.create(
        model=model, input="Greet me", conversation=conversation.id, background=True
    )
    done = _wait_status(client, queued.id, {"completed", "failed"})
    assert (done.status, done.output_text) == ("completed", "Hello Ada")
    assert _texts(upstream_llm.requests_for(model)[0]) == [
        ("user", "I am Ada"),
        ("user", "Greet me"),
    ]
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.content[0].text for i in items] == ["I am Ada", "Greet me", "Hello Ada"]  # type: ignore[union-attr]
    assert items[2].id == done.output[0].id


# -- background responses whose context changed while queued ------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_queued_response_whose_previous_response_was_deleted_runs_on_its_own_input(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    """The earlier response is deleted while the later one waits for a slot."""
    busy = start_service(backend, AGENTKEEP_RUN_CONCURRENCY="1")
    client = busy.new_tenant().client()
    model = _model()
    release = threading.Event()
    upstream_llm.script(
        model,
        Reply(text="A1"),
        Reply(text="held", hold=release, hold_after=1, hold_timeout=600),
        Reply(text="A2"),
    )
    try:
        first = client.responses.create(model=model, input="one")
        held = client.responses.create(model=model, input="hold", background=True)
        _wait_status(client, held.id, {"in_progress"})  # the only slot is taken
        later = client.responses.create(
            model=model, input="two", previous_response_id=first.id, background=True
        )
        assert client.responses.retrieve(later.id).status == "queued"
        client.responses.delete(first.id)
        release.set()
        done = _wait_status(client, later.id, {"completed", "failed"})
    finally:
        release.set()
    assert (done.status, done.output_text) == ("completed", "A2")
    assert done.previous_response_id == first.id
    assert _texts(upstream_llm.requests_for(model)[-1]) == [("user", "two")]
    assert f"response {later.id} failed in the worker" not in busy.log()


@pytest.mark.parametrize("service", ["postgres"], indirect=True)
def test_a_response_cancelled_after_the_upstream_answered_keeps_the_call_and_its_cancel(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """The cancel commits between the answer and the worker's write of it.

    PostgreSQL only: the test holds the response's row lock so the worker's final write
    provably waits behind the cancel (SQLite has no row locks to hold it by).
    """
    client = tenant.client()
    store = tenant.service.store.tenant(tenant.id)
    model = _model()
    answer = threading.Event()
    upstream_llm.script(
        model,
        Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}', id="c1")], gate=answer),
    )
    try:
        queued = client.responses.create(
            model=model,
            input="weather?",
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            background=True,
        )
        deadline = time.monotonic() + WAIT_S
        while [e.data["type"] for e in store.responses.events(queued.id)] != [
            "response.created",
            "response.queued",
            "response.in_progress",
        ]:
            assert time.monotonic() < deadline, "the worker never started the response"
            time.sleep(0.05)
        with store._core.engine.connect() as conn:
            me = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            conn.execute(
                sa.text("SELECT status FROM responses WHERE id = :id FOR UPDATE"),
                {"id": queued.id},
            )
            answer.set()  # the upstream answers; the worker's write waits for the lock
            deadline = time.monotonic() + WAIT_S
            while not conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :me = ANY(pg_blocking_pids(pid))"
                ),
                {"me": me},
            ).scalar():
                assert time.monotonic() < deadline, "the worker never wrote the answer"
                time.sleep(0.05)
            conn.execute(
                sa.text("UPDATE responses SET status = 'cancelled' WHERE id = :id"),
                {"id": queued.id},
            )
            conn.commit()
        [usage] = _usage_rows(store, model)
    finally:
        answer.set()
    # The call was made and paid for: its usage row is kept, with what it answered.
    assert (usage.status, usage.metadata["response_id"]) == ("success", queued.id)
    assert usage.response is not None and "get_weather" in usage.response
    # The cancel stands: no output, no final events.
    cancelled = client.responses.retrieve(queued.id)
    assert (cancelled.status, cancelled.output) == ("cancelled", [])
    assert [e.data["type"] for e in store.responses.events(queued.id)] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert f"response {queued.id} failed in the worker" not in tenant.service.log()


def _usage_rows(store: Any, model: str) -> list[Any]:
    deadline = time.monotonic() + WAIT_S
    while not (rows := [u for u in store.usage.list(limit=50).items if u.model == model]):
        assert time.monotonic() < deadline, f"no usage row for {model}"
        time.sleep(0.05)
    return rows


# -- answers that end unusually --------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_answer_cut_short_by_length_is_incomplete(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, stream: bool
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(text="half an", finish_reason="length"))
    if stream:
        events = list(client.responses.create(model=model, input="go", stream=True))
        assert events[-1].type == "response.incomplete"
        response = events[-1].response  # type: ignore[union-attr]
    else:
        response = client.responses.create(model=model, input="go", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "half an"
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    stored = client.responses.retrieve(response.id)
    assert (stored.status, stored.output_text) == ("incomplete", "half an")


@pytest.mark.parametrize("text", ["all at once", ""], ids=["text", "empty"])
def test_an_upstream_that_answers_without_streaming_is_still_streamed_in_order(
    client: openai.OpenAI, upstream_llm: UpstreamLLM, text: str
) -> None:
    """A whole completion where chunks were asked for: its text is one delta (none if empty)."""
    model = _model()
    upstream_llm.script(model, Reply(text=text, ignore_stream=True))
    events = list(client.responses.create(model=model, input="go", stream=True))
    expected = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *(["response.output_text.delta"] if text else []),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.type for e in events] == expected
    assert [e.sequence_number for e in events] == list(range(len(expected)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == (  # type: ignore[union-attr]
        [text] if text else []
    )
    done = events[-1].response  # type: ignore[union-attr]
    assert (done.status, done.output_text) == ("completed", text)
    added = events[2].item  # type: ignore[union-attr]
    assert added.id == done.output[0].id
    resumed = list(client.responses.retrieve(done.id, stream=True, starting_after=1))
    assert [e.model_dump() for e in resumed] == [e.model_dump() for e in events[2:]]
