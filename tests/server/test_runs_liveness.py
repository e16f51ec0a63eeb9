"""Crash recovery at the store level, on every backend: which workers are dead, and reaping them."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid

import pytest

from agentkeep import NotFound
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


def test_a_worker_on_this_host_is_alive_while_its_process_runs_and_it_beats(
    store: Store,
) -> None:
    me = _worker("me")
    beating, silent = _worker("beating"), _worker("silent")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) as other:
        try:
            _doc(store, beating, host=liveness.HOST, pid=other.pid, beat=time.time())
            _doc(store, silent, host=liveness.HOST, pid=other.pid, beat=time.time() - 3600)
            assert liveness.worker_alive(store, beating, me=me, stale_after=30)
            assert not liveness.worker_alive(store, silent, me=me, stale_after=30)
            dead = liveness.dead_workers(store, me=me, stale_after=30)
            assert silent in dead and beating not in dead
        finally:
            other.kill()
    other.wait()
    # Its process is gone: dead at once, however fresh its heartbeat.
    assert not liveness.worker_alive(store, beating, me=me, stale_after=30)


def test_more_workers_than_one_page_are_all_checked(store: Store) -> None:
    """Dead workers are found past the first 100 heartbeat documents."""
    stale = sorted(_worker(f"stale{i:03d}") for i in range(150))
    for worker in stale:
        _doc(store, worker, host="elsewhere", pid=1, beat=time.time() - 3600)
    dead = liveness.dead_workers(store, me=_worker("me"), stale_after=30)
    assert set(stale) <= set(dead)


def test_a_reaped_worker_is_forgotten_after_a_day(store: Store) -> None:
    state = store.tenant(liveness.SYSTEM_TENANT).state
    old, recent = _worker("old"), _worker("recent")
    long_ago = time.time() - liveness.PRUNE_AFTER - 60
    _doc(store, old, host="elsewhere", pid=1, beat=long_ago, reaped=True)
    _doc(store, recent, host="elsewhere", pid=1, beat=time.time() - 3600, reaped=True)
    dead = liveness.dead_workers(store, me=_worker("me"), stale_after=30)
    assert old not in dead and recent not in dead  # reaped already: not reported again
    with pytest.raises(NotFound):
        state.get(liveness.NAMESPACE, old)
    assert state.get(liveness.NAMESPACE, recent).value["reaped"] is True


def test_reaping_a_worker_that_never_beat_fails_its_runs(store: Store) -> None:
    """A worker that claimed runs and died before its first heartbeat document."""
    ghost = _worker("ghost")
    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id, model="m")
    assert store.runs.claim_next(ghost) is not None
    failed = liveness.reap(store, ghost, "the worker died")
    assert [r.id for r in failed] == [run.id]
    assert store.runs.get(run.id).status == "failed"
    assert [e.type for e in store.events.list(run_id=run.id)][-1] == "thread.run.failed"
    with pytest.raises(NotFound):  # nothing is written for a worker nobody knew
        store.tenant(liveness.SYSTEM_TENANT).state.get(liveness.NAMESPACE, ghost)


def test_a_run_that_cannot_be_settled_does_not_stop_the_others(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """One interrupted run with a corrupt delta event: it is failed, logged, the next settled."""
    dead = _worker("dead")
    _doc(store, dead, host="elsewhere", pid=1, beat=time.time() - 3600)
    broken = store.runs.create("asst_x", session_id=store.sessions.create(kind="thread").id)
    healthy = store.runs.create("asst_x", session_id=store.sessions.create(kind="thread").id)
    assert store.runs.claim_next(dead) is not None
    assert store.runs.claim_next(dead) is not None
    store.events.append(
        "thread.message.delta", run_id=broken.id, data={"id": "msg_x", "delta": "not an object"}
    )
    with caplog.at_level(logging.ERROR, logger="agentkeep.runner"):
        failed = liveness.reap(store, dead, "the worker died")
    assert sorted(r.id for r in failed) == sorted([broken.id, healthy.id])
    assert {store.runs.get(r).status for r in (broken.id, healthy.id)} == {"failed"}
    assert [e.type for e in store.events.list(run_id=healthy.id)][-1] == "thread.run.failed"
    assert "thread.run.failed" not in [e.type for e in store.events.list(run_id=broken.id)]
    assert f"could not settle interrupted run {broken.id}" in caplog.text
    assert caplog.text.count("could not settle interrupted run") == 1
    assert liveness.reap(store, dead, "again") == []
