"""store.get_metrics(): per-process operation counts and latencies, and the storage size."""

from __future__ import annotations

import pytest

from agentkeep import AsyncStore, NotFound, Store, StoreMetrics


def _count(metrics: StoreMetrics, label: str) -> int:
    found = metrics.by_operation.get(label)
    return 0 if found is None else found.count


def test_operations_are_counted_with_their_latency(store: Store) -> None:
    before = store.get_metrics()
    agent = store.agents.create(model="m")
    session = store.sessions.create(agent_id=agent.id)
    for i in range(3):
        store.messages.append(session.id, "user", f"hi {i}")
    store.messages.recent(session.id)
    with pytest.raises(NotFound):
        store.sessions.get("sess_missing")
    after = store.get_metrics()

    assert _count(after, "appending a message") - _count(before, "appending a message") == 3
    assert _count(after, "creating an agent") - _count(before, "creating an agent") == 1
    writes, reads = after.operations["write"], after.operations["read"]
    assert writes.count - before.operations["write"].count >= 5
    assert reads.count - before.operations["read"].count >= 2
    assert reads.errors - before.operations["read"].errors == 1  # the missing session
    appended = after.by_operation["appending a message"]
    assert appended.mean_ms is not None and appended.mean_ms > 0
    assert appended.p50_ms is not None and appended.p95_ms is not None
    assert appended.p50_ms <= appended.p95_ms <= (appended.max_ms or 0)
    assert after.since == before.since and after.collected_at >= before.collected_at
    assert after.backend == store.backend and after.pid > 0


def test_storage_counts_this_tenant_and_sizes_the_database(store: Store) -> None:
    empty = store.get_metrics().storage
    assert {k: empty[k] for k in ("agents", "sessions", "messages", "runs", "tool_calls")} == {
        "agents": 0,
        "sessions": 0,
        "messages": 0,
        "runs": 0,
        "tool_calls": 0,
    }
    agent = store.agents.create(model="m")
    session = store.sessions.create()
    store.messages.append_many(session.id, [{"role": "user", "content": "a"}] * 4)
    run = store.runs.create(agent.id, session_id=session.id)
    store.tool_calls.create("search", {}, run_id=run.id)
    storage = store.get_metrics().storage
    assert (storage["agents"], storage["sessions"], storage["messages"]) == (1, 1, 4)
    assert (storage["runs"], storage["tool_calls"]) == (1, 1)
    assert storage["db_size_bytes"] is not None and storage["db_size_bytes"] > 0
    assert store.tenant(store.tenant_id + "_other").get_metrics().storage["sessions"] == 0


async def test_async_operations_are_counted(astore: AsyncStore) -> None:
    before = await astore.get_metrics()
    session = await astore.sessions.create()
    await astore.messages.append(session.id, "user", "hi")
    await astore.messages.append(session.id, "user", "again")
    after = await astore.get_metrics()
    assert _count(after, "appending a message") - _count(before, "appending a message") == 2
