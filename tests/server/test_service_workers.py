"""``agentkeep serve --workers 2``: several processes share one database and its runs."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from live import LiveService, StartService
from upstream_llm import Reply, UpstreamLLM

from agentkeep.server.connections import fit, server_allows

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_worker_processes_serve_one_database(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    service = start_service(backend, AGENTKEEP_WORKERS="2")
    client = service.client()
    thread = client.beta.threads.create()

    def post(i: int) -> int:
        with service.http() as http:
            response = http.post(
                f"/v1/threads/{thread.id}/messages", json={"role": "user", "content": f"m{i}"}
            )
            return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(40)))
    assert statuses == [200] * 40
    stored = service.store.tenant("acme").messages.list(thread.id, limit=100).items
    assert [m.seq for m in stored] == list(range(1, 41))
    assert sorted(m.text for m in stored) == sorted(f"m{i}" for i in range(40))

    model = f"script-{uuid.uuid4().hex[:10]}"
    upstream_llm.script(model, Reply(text="done by some worker"))
    assistant = client.beta.assistants.create(model=model)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed", run.last_error
    assert client.beta.threads.messages.list(thread.id, limit=1).data[0].role == "assistant"
    if backend == "postgres":
        _each_process_took_its_share(service)


def _each_process_took_its_share(service: LiveService) -> None:
    """Each process logged its PostgreSQL connection budget, fitted to half the server's."""
    lines: list[str] = []
    for _ in range(3000):  # both processes have served requests: their start-up is logged
        lines = [line for line in service.log().splitlines() if "PostgreSQL connections" in line]
        if len(lines) >= 2:
            break
        threading.Event().wait(0.01)
    assert len(lines) == 2, service.log()
    for line in lines:
        assert "2 process(es)" in line and "WARNING" not in line, line
        size, overflow = fit(server_allows(service.store), 2)
        assert f"up to {3 * (size + overflow)} for this process" in line, line
