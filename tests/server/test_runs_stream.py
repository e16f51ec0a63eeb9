"""Streamed runs: the documented events in order, deltas, tools, replay from a bookmark."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from conftest import LiveService, Tenant
from openai import AssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from upstream_llm import Reply, ToolCall, UpstreamLLM

pytestmark = pytest.mark.slow

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

TEXT_RUN_EVENTS = [
    "thread.run.created",
    "thread.run.queued",
    "thread.run.in_progress",
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
    "thread.message.delta",
    "thread.message.completed",
    "thread.run.step.completed",
    "thread.run.completed",
]


def new_model() -> str:
    return f"script-{uuid.uuid4().hex[:10]}"


def squeeze(types: list[str]) -> list[str]:
    """The event types with runs of deltas folded into one."""
    out: list[str] = []
    for kind in types:
        if not (out and kind == out[-1] and kind.endswith(".delta")):
            out.append(kind)
    return out


class Recorder(AssistantEventHandler):
    def __init__(self, on_first_delta: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.events: list[str] = []
        self.deltas: list[str] = []
        self.tool_calls: list[Any] = []
        self._on_first_delta = on_first_delta

    def on_event(self, event: AssistantStreamEvent) -> None:
        self.events.append(event.event)

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.deltas.append(delta.value)
        if len(self.deltas) == 1 and self._on_first_delta is not None:
            self._on_first_delta()

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.tool_calls.append(tool_call)


def sse(response: httpx.Response) -> list[tuple[str, str, str | None]]:
    """(event, data, id) of a raw server-sent event stream."""
    out: list[tuple[str, str, str | None]] = []
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                out.append((event.get("event", ""), event.get("data", ""), event.get("id")))
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value[1:] if value.startswith(" ") else value
    return out


def test_streamed_run_events_in_order(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    chunks = ["The", " quick", " brown", " fox", "."]
    # The upstream holds after its first delta (its events: role, "The", ...) until the
    # client has received it: deltas reach the client while the upstream still answers,
    # not when the answer ends. (That the first one goes out at once rather than after
    # the batch window, 50 ms, is a matter of time this test does not measure.)
    first_seen = threading.Event()
    answering_at_first_delta: list[int] = []

    def first_delta() -> None:
        answering_at_first_delta.append(upstream_llm.active_for(model))
        first_seen.set()

    upstream_llm.script(
        model,
        Reply(chunks=chunks, chunk_delay=0.02, hold=first_seen, hold_after=2, hold_timeout=30),
    )
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "a fox?"}])
    recorder = Recorder(on_first_delta=first_delta)
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=recorder
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()
        messages = stream.get_final_messages()
    assert squeeze(recorder.events) == TEXT_RUN_EVENTS
    # The first delta went out alone while the upstream still held its answer (its own
    # call: a shared upstream may still answer other tests); later ones in batches, one
    # event each.
    assert answering_at_first_delta == [1]
    assert recorder.deltas[0] == chunks[0]
    assert "".join(recorder.deltas) == "".join(chunks)
    assert 2 <= recorder.events.count("thread.message.delta") == len(recorder.deltas) <= len(chunks)
    assert final.status == "completed"
    assert messages[0].content[0].text.value == "The quick brown fox."  # type: ignore[union-attr]
    stored = client.beta.threads.messages.list(thread.id, run_id=final.id).data[0]
    assert stored.content[0].text.value == "The quick brown fox."  # type: ignore[union-attr]


def test_raw_stream_ends_with_done(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(text="hi there"))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    with tenant.http().stream(
        "POST",
        f"/v1/threads/{thread.id}/runs",
        json={"assistant_id": assistant.id, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
    assert events[-1][:2] == ("done", "[DONE]")
    assert squeeze([e[0] for e in events[:-1]]) == TEXT_RUN_EVENTS, events
    bookmarks = [int(e[2]) for e in events[:-1] if e[2] is not None]
    assert len(bookmarks) == len(events) - 1
    assert bookmarks == sorted(bookmarks)
    created = json.loads(events[0][1])
    assert created["object"] == "thread.run" and created["status"] == "queued"
    completed = json.loads(events[-2][1])
    assert completed["status"] == "completed" and completed["usage"]["total_tokens"] > 0


def test_stream_function_tool_and_submit_stream(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(
        model,
        Reply(tool_calls=[ToolCall("get_weather", '{"city": "Bergen"}')]),
        Reply(text="Rainy, as always."),
    )
    assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Bergen?"}])
    recorder = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=recorder
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
    assert recorder.events == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.run.step.delta",
        "thread.run.requires_action",
    ]
    assert run.status == "requires_action"
    assert run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert [c.id for c in recorder.tool_calls] == [call.id]
    assert json.loads(call.function.arguments) == {"city": "Bergen"}

    after = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "rain"}],
        event_handler=after,
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()
    # The tool step completes, the run is queued again and then goes as a text run does.
    assert squeeze(after.events) == [
        "thread.run.step.completed",
        "thread.run.queued",
        *TEXT_RUN_EVENTS[TEXT_RUN_EVENTS.index("thread.run.in_progress") :],
    ]
    assert final.status == "completed"
    assert "".join(after.deltas) == "Rainy, as always."


def test_create_thread_and_run_stream_starts_with_thread_created(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(text="Welcome!"))
    assistant = client.beta.assistants.create(model=model)
    recorder = Recorder()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hello"}]},
        event_handler=recorder,
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
    assert recorder.events[0] == "thread.created"
    assert squeeze(recorder.events[1:]) == TEXT_RUN_EVENTS
    assert run.status == "completed"
    assert "".join(recorder.deltas) == "Welcome!"


def test_failed_run_stream(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(status=503, error_message="upstream down"))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    recorder = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=recorder
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
    assert recorder.events[-1] == "thread.run.failed"
    assert run.status == "failed"
    assert run.last_error is not None and "upstream down" in run.last_error.message


def test_replay_from_a_bookmark(tenant: Tenant, upstream_llm: UpstreamLLM) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(text="one two three four"))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
    http = tenant.http()
    with http.stream(
        "POST", f"/v1/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "stream": True}
    ) as response:
        live = sse(response)
    run_id = json.loads(live[0][1])["id"]
    path = f"/v1/threads/{thread.id}/runs/{run_id}/events"

    with http.stream("GET", path) as response:
        assert response.status_code == 200
        replayed = sse(response)
    assert replayed == live  # the same events, data and bookmarks

    middle = live[5][2]
    with http.stream("GET", path, params={"after": middle}) as response:
        assert sse(response) == live[6:]
    with http.stream("GET", path, headers={"Last-Event-ID": str(middle)}) as response:
        assert sse(response) == live[6:]
    last = live[-2][2]
    with http.stream("GET", path, params={"after": last}) as response:
        assert sse(response) == [("done", "[DONE]", None)]
    assert http.get(f"/v1/threads/{thread.id}/runs/run_nope/events").status_code == 404
    # the kumos seed's resume path is the same replay
    resume = f"/v1/threads/{thread.id}/runs/{run_id}/stream"
    with http.stream("GET", resume, headers={"Last-Event-ID": str(middle)}) as response:
        assert sse(response) == live[6:]


@pytest.mark.parametrize("how", ["after", "Last-Event-ID"])
def test_reconnect_to_a_live_run(tenant: Tenant, upstream_llm: UpstreamLLM, how: str) -> None:
    """A client that drops the stream picks it up again from its last bookmark, live.

    The upstream holds its answer after the first words until the client has
    reconnected: the run is provably still in progress, and the rest of its
    events is written while the new stream follows it.
    """
    client = tenant.client()
    model = new_model()
    words = [f"w{i}" for i in range(20)]
    hold = threading.Event()
    # The role chunk and three words, then nothing until ``hold`` is set.
    upstream_llm.script(model, Reply(text=" ".join(words), hold=hold, hold_after=4))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    http = tenant.http()
    first: list[tuple[str, str, str | None]] = []
    try:
        with http.stream(
            "POST",
            f"/v1/threads/{thread.id}/runs",
            json={"assistant_id": assistant.id, "stream": True},
        ) as response:
            event: dict[str, str] = {}
            for line in response.iter_lines():
                if not line:
                    first.append((event["event"], event["data"], event.get("id")))
                    event = {}
                    if first[-1][0] == "thread.message.delta":
                        break
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.strip()
        run_id = json.loads(first[0][1])["id"]
        assert client.beta.threads.runs.retrieve(run_id, thread_id=thread.id).status == (
            "in_progress"
        )
        bookmark = first[-1][2]
        assert bookmark is not None
        resume: dict[str, Any] = (
            {"params": {"after": bookmark}}
            if how == "after"
            else {"headers": {"Last-Event-ID": bookmark}}
        )
        with http.stream(
            "GET", f"/v1/threads/{thread.id}/runs/{run_id}/events", **resume
        ) as response:
            assert response.status_code == 200
            hold.set()  # the rest of the answer comes only now
            rest = sse(response)
    finally:
        hold.set()
    assert rest[-1][0] == "done"
    assert [e[2] for e in rest[:-1]] == [
        str(n) for n in range(int(bookmark) + 1, int(bookmark) + len(rest))
    ], "every event after the bookmark, once, in order"
    types = [e[0] for e in first + rest[:-1]]
    assert squeeze(types) == TEXT_RUN_EVENTS
    texts = [
        json.loads(data)["delta"]["content"][0]["text"]["value"]
        for kind, data, _ in first + rest
        if kind == "thread.message.delta"
    ]
    assert "".join(texts) == " ".join(words)


def test_error_during_stream_is_raised(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """The thread is deleted while its run streams: the client gets an ``error`` event.

    The thread is deleted only once text is streaming, so the error can only come
    from the stream itself (not from creating the run).
    """
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(text=" ".join(["x"] * 100), chunk_delay=0.05))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    deleter = tenant.client()
    seen: list[str] = []
    run_ids: list[str] = []
    with (
        pytest.raises(openai.APIError) as info,
        client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream,
    ):
        for event in stream:
            seen.append(event.event)
            if event.event == "thread.run.created":
                run_ids.append(event.data.id)
            if event.event == "thread.message.delta" and "deleted" not in seen:
                deleter.beta.threads.delete(thread.id)
                seen.append("deleted")
    assert "deleted" in seen, f"the stream ended before any text: {seen}"
    assert seen[0] == "thread.run.created"
    assert not set(seen) & {"thread.run.completed", "done"}
    assert info.value.message == f"No run found with id '{run_ids[0]}'.", info.value.message
