"""Data retention on every backend: inactive sessions go, finished runs lose their deltas, usage stays."""

from __future__ import annotations

import time

import sqlalchemy as sa

from agentkeep import NotFound, Store
from agentkeep.lifecycle.retention import sweep
from agentkeep.store.schema import sessions


def test_retention_dry_run_then_sweep(store: Store) -> None:
    old = store.sessions.create()
    store.messages.append(old.id, "user", "long ago")
    fresh = store.sessions.create()
    with store._core.write() as conn:
        conn.execute(
            sa.update(sessions)
            .where(sessions.c.tenant_id == store.tenant_id, sessions.c.id == old.id)
            .values(last_activity_at=int((time.time() - 10 * 86400) * 1_000_000))
        )
    done = store.runs.create("asst_x", session_id=fresh.id)
    running = store.runs.create("asst_x", session_id=fresh.id)
    for run in (done, running):
        store.runs.transition(run.id, "in_progress")
        store.events.append("thread.message.delta", run_id=run.id, data={"d": "x"})
        store.events.append("thread.run.step.delta", run_id=run.id, data={"d": "y"})
    store.runs.transition(done.id, "completed")
    store.usage.record(provider="p", model="m", input_tokens=4, session_id=old.id)

    dry = sweep(store, inactive_days=7, compact_events=True, dry_run=True)
    assert (dry.sessions, dry.events, dry.dry_run) == (1, 2, True)
    assert store.sessions.get(old.id).message_count == 1  # a dry run deletes nothing
    report = sweep(store, inactive_days=7, compact_events=True)
    assert (report.sessions, report.events) == (1, 2)
    try:
        store.sessions.get(old.id)
        raise AssertionError("the inactive session is still there")
    except NotFound:
        pass
    assert store.sessions.get(fresh.id)
    assert [e.type for e in store.events.list(run_id=done.id)] == []
    assert len(store.events.list(run_id=running.id)) == 2  # a live run keeps its stream
    assert store.usage.list().items[0].input_tokens == 4  # cost accounting stays
