"""Runs across service crashes and restarts, and several service processes on one database."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from conftest import LiveService, StartService, Tenant
from upstream_llm import Reply, ToolCall, UpstreamLLM

pytestmark = pytest.mark.slow

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def new_model() -> str:
    return f"script-{uuid.uuid4().hex[:10]}"


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_long_run(service: LiveService, tenant: Tenant, upstream: UpstreamLLM) -> tuple[str, str]:
    """A run whose upstream streams slowly; returns (thread, run) once deltas are stored."""
    client = tenant.client()
    model = new_model()
    upstream.script(model, Reply(text=" ".join(["tok"] * 400), chunk_delay=0.05))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go on"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    store = service.store.tenant(tenant.id)
    wait_for(
        lambda: len(store.events.list(run_id=run.id, types="thread.message.delta")) >= 3,
        what="deltas",
    )
    return thread.id, run.id


def test_killed_service_fails_the_interrupted_run(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    thread_id, run_id = start_long_run(service, tenant, upstream_llm)
    service.restart()  # kill -9 mid-run, start again
    client = tenant.client()
    run = wait_for(
        lambda: (
            (r := client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)).status == "failed"
            and r
        ),
        what="the run to be failed",
    )
    assert run.last_error is not None
    assert run.last_error.code == "server_error"
    assert "stopped before it finished" in run.last_error.message
    assert run.failed_at is not None

    store = service.store.tenant(tenant.id)
    deltas = store.events.list(run_id=run_id, types="thread.message.delta", limit=1000)
    sent = "".join(d.data["delta"]["content"][0]["text"]["value"] for d in deltas)
    message = client.beta.threads.messages.list(thread_id, run_id=run_id).data[0]
    assert message.status == "incomplete"
    assert message.content[0].text.value == sent  # type: ignore[union-attr]
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id).data
    assert [s.status for s in steps] == ["failed"]
    events = store.events.list(run_id=run_id, limit=1000)
    assert events[-1].type == "thread.run.failed"
    assert [e.type for e in events[-3:-1]] == [
        "thread.message.incomplete",
        "thread.run.step.failed",
    ]
    # a reconnecting stream sees the end, and the thread is usable again
    with tenant.http().stream(
        "GET",
        f"/v1/threads/{thread_id}/runs/{run_id}/events",
        params={"after": events[-2].bookmark},
    ) as response:
        body = response.read().decode()
    assert "event: thread.run.failed" in body and body.rstrip().endswith("data: [DONE]")
    again = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=run.assistant_id, poll_interval_ms=50
    )
    assert again.status == "completed"


def test_stopped_service_fails_its_runs(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    thread_id, run_id = start_long_run(service, tenant, upstream_llm)
    service.restart(kill=False)  # SIGTERM: the worker fails its run as it stops
    run = tenant.client().beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    assert run.status == "failed"
    assert run.last_error is not None and "service stopped" in run.last_error.message


def test_waiting_run_continues_after_restart(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(tool_calls=[ToolCall("lookup", "{}")]), Reply(text="found it"))
    assistant = client.beta.assistants.create(model=model, tools=[TOOL])  # type: ignore[list-item]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "look"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "requires_action"
    assert run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    service.restart()
    client = tenant.client()
    assert (
        client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "requires_action"
    )
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "42"}],
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    last = client.beta.threads.messages.list(thread.id, order="desc").data[0]
    assert last.content[0].text.value == "found it"  # type: ignore[union-attr]


def test_queued_runs_wait_for_the_service(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """A run queued while no worker runs is executed when the service comes back."""
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, Reply(text="later"))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    service.stop()
    store = service.store.tenant(tenant.id)
    run = store.runs.create(assistant.id, session_id=thread.id, model=model)
    service.start()
    run_wire = tenant.client().beta.threads.runs.poll(
        run.id, thread_id=thread.id, poll_interval_ms=50
    )
    assert run_wire.status == "completed"


def test_two_processes_share_the_queue(
    service: LiveService, start_service: StartService, upstream_llm: UpstreamLLM, tmp_path: Path
) -> None:
    """Two service processes on one database: every run is executed once, by either."""
    first = start_service(service.backend, AGENTKEEP_RUN_CONCURRENCY="1")
    second = LiveService(
        backend=first.backend,
        database_url=first.database_url,
        log_path=tmp_path / "second.log",
        upstream=upstream_llm,
        keys=dict(first.keys),
        env={"AGENTKEEP_RUN_CONCURRENCY": "1"},
    )
    second.start()
    try:
        tenant = first.new_tenant()
        model = new_model()
        upstream_llm.script(model, *[Reply(text=f"answer {i}", delay=0.4) for i in range(6)])
        clients = [first.client(key=tenant.key), second.client(key=tenant.key)]
        assistant = clients[0].beta.assistants.create(model=model)
        runs = []
        for i in range(6):
            thread = clients[i % 2].beta.threads.create(
                messages=[{"role": "user", "content": f"q{i}"}]
            )
            runs.append(
                clients[i % 2].beta.threads.runs.create(
                    thread_id=thread.id, assistant_id=assistant.id
                )
            )
        for run in runs:
            done = clients[0].beta.threads.runs.poll(
                run.id, thread_id=run.thread_id, poll_interval_ms=50
            )
            assert done.status == "completed"
        store = first.store.tenant(tenant.id)
        workers = {store.runs.get(r.id).worker_id for r in runs}
        assert len(workers) == 2  # both processes took work
        for run in runs:
            assert len(store.usage.list(run_id=run.id).items) == 1
            started = store.events.list(run_id=run.id, types="thread.run.in_progress")
            assert len(started) == 1
    finally:
        second.close()


def test_no_upstream_configured(start_service: StartService, service: LiveService) -> None:
    """Without AGENTKEEP_LLM_BASE_URL runs fail with a message that says what to set."""
    bare = start_service(service.backend, AGENTKEEP_LLM_BASE_URL="")
    client = bare.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "failed"
    assert run.last_error is not None and "AGENTKEEP_LLM_BASE_URL" in run.last_error.message
    assert httpx.get(f"{bare.base_url}/healthz").status_code == 200
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
