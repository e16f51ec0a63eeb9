"""Runs waiting in ``requires_action`` expire at their ``expires_at``, on every backend.

The transitions are the service's (``agentkeep.runner.ops``), driven here on the
store directly; the HTTP behaviour is in ``tests/server/test_runs_expiry.py``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from agentkeep import Store
from agentkeep.errors import InvalidInput, InvalidTransition
from agentkeep.runner import ops


def _waiting(store: Store, ttl: float) -> str:
    """A run of a thread, in requires_action with one pending call, expiring ``ttl`` s ahead."""
    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_1", session_id=thread.id, status="in_progress")
    return ops.require_action(store, run, [("up_1", "get_weather", "{}")], ttl_seconds=ttl).id


def test_entering_requires_action_sets_expires_at(store: Store) -> None:
    before = time.time()
    run = store.runs.get(_waiting(store, 600))
    assert run.status == "requires_action"
    expires_at = run.extra["expires_at"]
    assert isinstance(expires_at, int)
    assert before + 600 <= expires_at <= time.time() + 601
    assert not ops.is_past_expiry(run)
    assert ops.expire_if_due(store, run).status == "requires_action"
    assert store.runs.past_expiry() == []


def test_a_run_past_expires_at_is_expired_once(store: Store) -> None:
    run_id = _waiting(store, 600)
    run = store.runs.get(run_id)
    later = datetime.now(UTC) + timedelta(seconds=601)
    assert [r.id for r in store.runs.past_expiry(now=later)] == [run_id]
    assert ops.is_past_expiry(run, now=later.timestamp())
    # Make it due now, as time would.
    store.runs.update(run_id, extra={**run.extra, "expires_at": int(time.time()) - 1})
    assert [r.id for r in store.runs.past_expiry()] == [run_id]
    expired = ops.expire_if_due(store, store.runs.get(run_id))
    assert expired.status == "expired"
    assert expired.finished_at is not None
    assert expired.required_action is None
    step = store.run_steps.list(run_id).items[0]
    assert step.status == "expired"
    (call,) = store.tool_calls.list(run_id=run_id).items
    assert call.state == "cancelled"
    kinds = [e.type for e in store.events.list(run_id=run_id, limit=100)]
    assert kinds[-2:] == ["thread.run.step.expired", "thread.run.expired"]
    # A second expiry (another process, or the sweep) changes and announces nothing.
    assert ops.expire_run(store, run_id).version == expired.version
    assert [e.type for e in store.events.list(run_id=run_id, limit=100)] == kinds
    assert store.runs.past_expiry() == []
    # Tool outputs come too late.
    with pytest.raises(InvalidTransition):
        ops.submit_tool_outputs(store, expired, {call.id: "sunny"})


def test_submitting_clears_expires_at(store: Store) -> None:
    run = store.runs.get(_waiting(store, 600))
    (call,) = store.tool_calls.list(run_id=run.id).items
    queued, _ = ops.submit_tool_outputs(store, run, {call.id: "sunny"})
    assert queued.status == "queued"
    assert "expires_at" not in queued.extra
    assert store.runs.get(run.id).extra.get("expires_at") is None


def test_outputs_after_expires_at_are_refused_even_before_the_expiry_is_written(
    store: Store,
) -> None:
    run_id = _waiting(store, 600)
    run = store.runs.get(run_id)
    store.runs.update(run_id, extra={**run.extra, "expires_at": int(time.time()) - 1})
    (call,) = store.tool_calls.list(run_id=run_id).items
    with pytest.raises(InvalidTransition) as caught:
        ops.submit_tool_outputs(store, store.runs.get(run_id), {call.id: "sunny"})
    assert caught.value.current == "expired"
    assert store.runs.get(run_id).status == "requires_action"  # nothing written


def test_the_sweep_expires_every_tenants_due_runs(store: Store) -> None:
    other = store.tenant(store.tenant_id + "_b")
    due = []
    for s in (store, other):
        run_id = _waiting(s, 600)
        run = s.runs.get(run_id)
        s.runs.update(run_id, extra={**run.extra, "expires_at": int(time.time()) - 1})
        due.append(run_id)
    waiting = _waiting(store, 600)
    swept = {r.id for r in ops.expire_due_runs(store)}
    assert set(due) <= swept
    assert waiting not in swept
    assert store.runs.get(due[0]).status == "expired"
    assert other.runs.get(due[1]).status == "expired"
    assert store.runs.get(waiting).status == "requires_action"


def test_concurrent_expiry_announces_once(store: Store) -> None:
    run_id = _waiting(store, 600)
    run = store.runs.get(run_id)
    store.runs.update(run_id, extra={**run.extra, "expires_at": int(time.time()) - 1})
    barrier = threading.Barrier(4)
    results: list[str] = []

    def expire() -> None:
        barrier.wait()
        results.append(ops.expire_run(store, run_id).status)

    threads = [threading.Thread(target=expire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["expired"] * 4
    kinds = [e.type for e in store.events.list(run_id=run_id, limit=100)]
    assert kinds.count("thread.run.expired") == 1


def test_past_expiry_checks_its_arguments(store: Store) -> None:
    with pytest.raises(InvalidInput) as caught:
        store.runs.past_expiry(limit=0)
    assert caught.value.field == "limit"
    with pytest.raises(InvalidInput) as caught:
        store.runs.past_expiry(now="soon")  # type: ignore[arg-type]
    assert caught.value.field == "now"
