"""The run engine's pace: deltas committed in batches, readers woken after commit, a run limit."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from conftest import Tenant
from test_runs_stream import new_model, sse
from upstream_llm import Reply, UpstreamLLM

from agentkeep.config import Settings
from agentkeep.models import Run
from agentkeep.runner import RunWorker, notify, ops
from agentkeep.runner.answer import DELTA_BATCH_MAX
from agentkeep.store import Store


async def until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _queued_run(store: Store, model: str) -> Run:
    thread = store.sessions.create(kind="thread")
    store.messages.append(thread.id, "user", "go")
    return store.runs.create("asst_x", session_id=thread.id, model=model)


async def test_runs_beyond_the_limit_wait_queued_in_the_database(own_db: Store) -> None:
    store = own_db  # its RunWorker claims every tenant's queued runs
    gate = threading.Event()
    with UpstreamLLM() as upstream:
        model = new_model()
        upstream.script(model, *[Reply(text="one two", gate=gate) for _ in range(5)])
        runs = [_queued_run(store, model) for _ in range(5)]
        settings = replace(Settings.from_env(), llm_base_url=upstream.base_url)
        worker = RunWorker(store, settings, concurrency=2, poll_interval=0.05)
        await worker.start()
        try:
            await until(lambda: upstream.active == 2, "two runs calling the upstream")
            statuses = sorted(store.runs.get(r.id).status for r in runs)
            assert statuses == ["in_progress", "in_progress", "queued", "queued", "queued"]
            assert len(worker._tasks) == 2  # the others are rows in the database, not tasks
            gate.set()
            await until(
                lambda: all(store.runs.get(r.id).status == "completed" for r in runs),
                "every run completed",
            )
        finally:
            gate.set()
            await worker.stop()
        assert upstream.most_active == 2


def test_readers_are_woken_after_the_commit_never_before(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _queued_run(store, "m")
    woken: list[tuple[tuple[str, ...], int]] = []

    def spy(*keys: str) -> None:  # what a woken reader would read, from its own connection
        woken.append((keys, len(store.events.list(run_id=run.id))))

    monkeypatch.setattr(notify, "notify", spy)
    with pytest.raises(ValueError), store.transaction():
        ops.emit(store, run, ("thread.run.in_progress", {"id": run.id}))
        raise ValueError("rolled back")
    assert woken == []
    with store.transaction():
        ops.emit(store, run, ("thread.run.in_progress", {"id": run.id}))
        ops.emit(store, run, ("thread.run.completed", {"id": run.id}))
        assert woken == []
    assert woken == [((run.id,), 2), ((run.id,), 2)]


def _events(tenant: Tenant, path: str, **params: object) -> list[tuple[str, str, str | None]]:
    with tenant.http().stream("GET", path, params=params) as response:
        assert response.status_code == 200
        return sse(response)


def test_batched_deltas_replay_exactly_from_every_bookmark(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    """300 deltas streamed at once: a few transactions, one event per batch, exact replays."""
    client = tenant.client()
    model = new_model()
    chunks = [f"w{i} " for i in range(300)]
    upstream_llm.script(model, Reply(chunks=chunks))
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    http = tenant.http()
    live: list[tuple[str, str, str | None]] = []
    with http.stream(
        "POST", f"/v1/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "stream": True}
    ) as response:
        for event in sse(response):
            live.append(event)
            kind, data = event[0], event[1]
            # Announced only once committed: what the event says is there to read.
            if kind == "thread.message.completed":
                message = json.loads(data)
                stored = client.beta.threads.messages.retrieve(message["id"], thread_id=thread.id)
                assert stored.status == "completed"
                assert stored.content[0].text.value == "".join(chunks)  # type: ignore[union-attr]
            if kind == "thread.run.completed":
                run = client.beta.threads.runs.retrieve(json.loads(data)["id"], thread_id=thread.id)
                assert run.status == "completed"
    assert live[-1][0] == "done"
    deltas = [e for e in live if e[0] == "thread.message.delta"]
    texts = [json.loads(d)["delta"]["content"][0]["text"]["value"] for _, d, _ in deltas]
    assert "".join(texts) == "".join(chunks)

    run_id = json.loads(live[0][1])["id"]
    stored = tenant.service.store.tenant(tenant.id).events.list(run_id=run_id, limit=1000)
    assert [(e.type, e.bookmark) for e in stored] == [(k, int(i or 0)) for k, _, i in live[:-1]]
    # A few events for 300 deltas, each holding whole upstream deltas, none more than a batch.
    assert 300 / DELTA_BATCH_MAX <= len(texts) < 300
    pieces = iter(chunks)
    for text in texts:
        taken = ""
        while len(taken) < len(text):
            taken += next(pieces)
        assert taken == text, "a delta event split an upstream delta"
        assert len(re.findall(r"w\d+ ", text)) <= DELTA_BATCH_MAX

    path = f"/v1/threads/{thread.id}/runs/{run_id}/events"
    for i in range(len(stored)):  # every bookmark
        bookmark = stored[i].bookmark
        assert _events(tenant, path, after=bookmark) == live[i + 1 :]


def test_a_round_of_new_threads_of_two_tenants_gives_each_run_its_own_events(
    own_db: Store,
) -> None:
    """A round of the group commit of new runs (``routes.runs._create_round``):
    threads of two tenants in one transaction, each tenant's events in one write, and
    each request handed exactly its run's three events, in order."""
    import functools

    from agentkeep.server.bodies import CreateThread, CreateThreadAndRun
    from agentkeep.server.routes.runs import _create_round, _thread_and_run

    stores = [own_db.tenant("round_a"), own_db.tenant("round_b")]
    agents = [s.agents.create(model="m").id for s in stores]
    items = []
    for i in range(5):
        store, agent = stores[i % 2], agents[i % 2]
        body = CreateThreadAndRun(assistant_id=agent)
        thread = CreateThread(metadata={"i": str(i)})
        rows = [{"role": "user", "content": f"m{i}"}]
        items.append((store, None, functools.partial(_thread_and_run, body, thread, rows, None)))
    queued = _create_round(items)
    assert len(queued) == 5
    for i, (run, events) in enumerate(queued):
        store = stores[i % 2]
        assert run.tenant_id == store.tenant_id
        assert [e.type for e in events] == [
            "thread.created",
            "thread.run.created",
            "thread.run.queued",
        ]
        assert {e.run_id for e in events} == {run.id}
        assert events[0].data["metadata"] == {"i": str(i)}
        assert [e.bookmark for e in events] == [
            e.bookmark for e in store.events.list(run_id=run.id, limit=10)
        ]
        assert run.session_id is not None
        assert store.messages.recent(run.session_id, 5)[0].text == f"m{i}"
