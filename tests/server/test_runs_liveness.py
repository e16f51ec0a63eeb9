"""Crash recovery at the store level, on every backend: which workers are dead, and reaping them."""

from __future__ import annotations

import time
import uuid

from agentkeep.runner import liveness, ops
from agentkeep.store import Store


def _doc(store: Store, worker_id: str, **value: object) -> None:
    store.tenant(liveness.SYSTEM_TENANT).state.put(liveness.NAMESPACE, worker_id, value)


def _worker(tag: str) -> str:
    return f"test-{tag}-{uuid.uuid4().hex[:8]}"


def test_dead_and_live_workers(store: Store) -> None:
    me = _worker("me")
    alive = _worker("alive")
    stale = _worker("stale")
    gone = _worker("gone")
    stopped = _worker("stopped")
    _doc(store, alive, host="elsewhere", pid=1, beat=time.time())
    _doc(store, stale, host="elsewhere", pid=1, beat=time.time() - 3600)
    _doc(store, gone, host=liveness.HOST, pid=2**22 + 12345, beat=time.time())  # no such pid
    _doc(store, stopped, host="elsewhere", pid=1, beat=time.time(), stopped=True)
    liveness.beat(store, me)
    dead = set(liveness.dead_workers(store, me=me, stale_after=30))
    assert {stale, gone, stopped} <= dead
    assert alive not in dead and me not in dead
    assert liveness.worker_alive(store, alive, me=me, stale_after=30)
    assert not liveness.worker_alive(store, gone, me=me, stale_after=30)
    assert not liveness.worker_alive(store, None, me=me, stale_after=30)
    assert not liveness.worker_alive(store, _worker("unknown"), me=me, stale_after=30)


def test_reap_fails_the_runs_of_a_dead_worker(store: Store) -> None:
    dead = _worker("dead")
    _doc(store, dead, host="elsewhere", pid=1, beat=time.time() - 3600)
    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id, model="m")
    claimed = store.runs.claim_next(dead)
    assert claimed is not None and claimed.id == run.id
    step, message = ops.start_message(store, claimed)
    ops.record_deltas(store, claimed, message.id, ["par", "tial"])
    other = store.runs.create("asst_x", session_id=store.sessions.create(kind="thread").id)

    failed = liveness.reap(store, dead, "the worker died")
    assert [r.id for r in failed] == [run.id]
    after = store.runs.get(run.id)
    assert after.status == "failed"
    assert after.last_error == {"code": "server_error", "message": "the worker died"}
    assert store.runs.get(other.id).status == "queued"  # not this worker's
    stored = store.messages.get(message.id)
    assert stored.extra["status"] == "incomplete"
    assert stored.text == "partial"
    assert store.run_steps.get(step.id).status == "failed"
    types = [e.type for e in store.events.list(run_id=run.id)]
    assert types[-3:] == [
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
    ]
    # reaped once: the worker is no longer reported dead, and reaping again does nothing
    assert dead not in liveness.dead_workers(store, me=_worker("me"), stale_after=30)
    assert liveness.reap(store, dead, "again") == []


def test_cancel_while_waiting_closes_the_tool_calls(store: Store) -> None:
    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id)
    claimed = store.runs.claim_next(_worker("w"))
    assert claimed is not None
    waiting = ops.require_action(store, claimed, [("up_1", "lookup", "{}")])
    assert waiting.status == "requires_action"
    assert waiting.required_action is not None
    cancelled = ops.cancel_run(store, run.id)
    assert cancelled.status == "cancelled"
    calls = store.tool_calls.list(run_id=run.id).items
    assert [c.state for c in calls] == ["cancelled"]
    steps = store.run_steps.list(run.id).items
    assert [s.status for s in steps] == ["cancelled"]
    types = [e.type for e in store.events.list(run_id=run.id)]
    assert types[-3:] == [
        "thread.run.cancelling",
        "thread.run.step.cancelled",
        "thread.run.cancelled",
    ]
