"""Runs waiting for tool outputs expire (``AGENTKEEP_REQUIRED_ACTION_TTL_SECONDS``), over HTTP.

A service of this module's own per backend, with a TTL of a few seconds. The
tests wait for conditions (the clock passing ``expires_at``, a status), never
for a fixed time.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from live import LiveService, StartService
from upstream_llm import Reply, ToolCall, UpstreamLLM

from agentkeep import Store
from agentkeep.store.schema import graph_store_items

pytestmark = pytest.mark.slow

TTL_S = 3
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def service(request: pytest.FixtureRequest, start_service: StartService) -> LiveService:
    return start_service(str(request.param), AGENTKEEP_REQUIRED_ACTION_TTL_SECONDS=str(TTL_S))


def _until(condition: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _waiting_run(
    service: LiveService, upstream: UpstreamLLM
) -> tuple[openai.OpenAI, str, str, Store]:
    """A run of a fresh tenant that called a tool; (client, thread id, run id, tenant's store)."""
    tenant = service.new_tenant()
    client = tenant.client()
    model = f"script-{uuid.uuid4().hex[:10]}"
    upstream.script(model, Reply(tool_calls=[ToolCall("get_weather", "{}")]))
    assistant = client.beta.assistants.create(model=model, tools=[TOOL])  # type: ignore[list-item]
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    return client, thread.id, run.id, service.store.tenant(tenant.id)


def test_a_waiting_run_expires_and_refuses_late_outputs(
    service: LiveService, upstream_llm: UpstreamLLM
) -> None:
    client, thread_id, run_id, _ = _waiting_run(service, upstream_llm)
    started = time.time()
    run = _until(
        lambda: (
            (r := client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)).expires_at and r
        ),
        "expires_at",
    )
    assert run.status in ("requires_action", "expired")
    assert started + TTL_S - 1 <= run.expires_at <= time.time() + TTL_S + 1
    _until(lambda: time.time() > run.expires_at, "the clock to pass expires_at")
    # The first read after expires_at expires it (lazily), whichever process reads.
    expired = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    assert expired.status == "expired"
    assert expired.required_action is None
    assert expired.expires_at == run.expires_at
    listed = client.beta.threads.runs.list(thread_id=thread_id).data
    assert [r.status for r in listed] == ["expired"]
    (step,) = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id).data
    assert step.status == "expired"
    assert step.expired_at is not None
    call_id = "call_whatever"
    if run.required_action is not None:
        call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.submit_tool_outputs(
            run_id, thread_id=thread_id, tool_outputs=[{"tool_call_id": call_id, "output": "x"}]
        )
    assert "expired" in caught.value.message
    # The thread is free again: a message and a new run are accepted.
    client.beta.threads.messages.create(thread_id, role="user", content="Still there?")


def test_a_new_message_expires_a_run_past_its_time(
    service: LiveService, upstream_llm: UpstreamLLM
) -> None:
    client, thread_id, run_id, tenant = _waiting_run(service, upstream_llm)
    run = _until(
        lambda: (r := tenant.runs.get(run_id)).status == "requires_action" and r,
        "requires_action",
    )
    _until(lambda: time.time() > run.extra["expires_at"], "the clock to pass expires_at")
    # No read of the run: appending to its thread finds it past its time.
    client.beta.threads.messages.create(thread_id, role="user", content="Hello again")
    assert tenant.runs.get(run_id).status == "expired"


def test_the_sweep_expires_runs_nobody_reads_across_a_restart(
    service: LiveService, upstream_llm: UpstreamLLM
) -> None:
    _client, _thread_id, run_id, tenant = _waiting_run(service, upstream_llm)
    _until(lambda: tenant.runs.get(run_id).status == "requires_action", "requires_action")
    service.restart()  # kill -9: expires_at is in the database, not in the process
    # Nobody reads the run over HTTP: the worker's sweep expires it.
    _until(lambda: tenant.runs.get(run_id).status == "expired", "the sweep")
    kinds = [e.type for e in tenant.events.list(run_id=run_id, limit=100)]
    assert kinds.count("thread.run.expired") == 1


def test_the_sweep_deletes_expired_graph_store_items(service: LiveService) -> None:
    tenant = service.store.tenant(service.new_tenant().id)
    past = datetime.now(UTC) - timedelta(hours=1)
    tenant.graph_items.put(("memories",), "expired", {"v": 1}, ttl_minutes=1, now=past)
    tenant.graph_items.put(("memories",), "kept", {"v": 2}, ttl_minutes=1440)

    def rows() -> list[str]:
        with service.store._core.read() as conn:
            table = graph_store_items
            keys = sa.select(table.c.key).where(table.c.tenant_id == tenant.tenant_id)
            return sorted(conn.execute(keys).scalars())

    assert rows() == ["expired", "kept"]  # invisible to reads, still stored
    _until(lambda: rows() == ["kept"], "the worker's sweep")
