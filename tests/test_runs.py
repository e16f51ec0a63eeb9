"""Runs: create, transitions, optimistic updates, usage counters, the claim queue, recovery."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from _errors import check_in_session_not_found
from _statements import sent_statements, verbs, work
from _threads import no_worker_threads

import agentkeep
from agentkeep import AsyncStore, Conflict, InvalidInput, InvalidTransition, NotFound, Run, Store
from agentkeep.models import RUN_TRANSITIONS, TERMINAL_RUN_STATUSES
from agentkeep.store import schema


def test_create_and_get_round_trip(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create(
        "asst_x",
        session_id=s.id,
        objective="find it",
        instructions="be brief",
        model="gpt-x",
        tools=[{"type": "function", "function": {"name": "search"}}],
        metadata={"k": "v"},
        extra={"temperature": 0.2},
    )
    assert run.id.startswith("run_")
    assert (run.status, run.version, run.iterations) == ("queued", 1, 0)
    assert run.cost_usd is None and run.input_tokens == 0
    assert run.started_at is None and run.finished_at is None and run.worker_id is None
    assert store.runs.get(run.id) == run


async def test_a_run_of_a_session_is_read_in_one_look_with_every_field(store: Store) -> None:
    """``runs.in_session``: the run as ``get`` gives it, sync and async, once it has moved
    on (usage, an error, a required action); NotFound names the session, then the run."""
    thread = store.sessions.create(kind="thread")
    other = store.sessions.create(kind="thread")
    run = store.runs.create(
        "asst_x",
        session_id=thread.id,
        tools=[{"type": "function", "function": {"name": "search"}}],
        metadata={"k": "v"},
        extra={"temperature": 0.2, "nested": {"a": [1, None, "x"]}},
    )
    store.runs.add_usage(run.id, input_tokens=7, output_tokens=3, cost_usd=Decimal("0.0012"))
    store.runs.transition(run.id, "in_progress")
    action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
    store.runs.transition(run.id, "requires_action", required_action=action)
    moved = store.runs.get(run.id)
    assert store.runs.in_session(run.id, thread.id) == moved
    assert store.runs.in_session(run.id, thread.id, kind="thread") == moved
    assert await AsyncStore(store).runs.in_session(run.id, thread.id, kind="thread") == moved
    failed = store.runs.create("asst_x", session_id=thread.id, status="in_progress")
    failed = store.runs.transition(failed.id, "failed", last_error="it broke")
    assert store.runs.in_session(failed.id, thread.id) == failed
    check_in_session_not_found(store, "runs", "run", run.id, thread.id, other.id)
    with pytest.raises(InvalidInput) as bad:
        store.runs.in_session("", thread.id)
    assert bad.value.field == "run_id"


def test_created_past_queued_gets_its_times(store: Store) -> None:
    running = store.runs.create("a", status="in_progress")
    assert running.started_at is not None and running.finished_at is None
    done = store.runs.create("a", status="completed")
    assert done.started_at is not None and done.finished_at is not None


def test_run_on_a_missing_session_is_not_found_and_writes_nothing(store: Store) -> None:
    with pytest.raises(NotFound) as err:
        store.runs.create("a", session_id="thread_missing")
    assert (err.value.kind, err.value.ident) == ("session", "thread_missing")
    other = store.tenant(store.tenant_id + "_other").sessions.create()
    with pytest.raises(NotFound):
        store.runs.create("a", session_id=other.id)  # another tenant's session
    assert store.runs.list().items == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"agent_id": None}, "agent_id"),
        ({"agent_id": ""}, "agent_id"),
        ({"status": "running"}, "status"),
        ({"tools": "search"}, "tools"),
        ({"tools": [{"name": "x"}]}, "tools[0]"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"extra": [1]}, "extra"),
        ({"extra": {"x": float("nan")}}, "extra"),
        ({"objective": 5}, "objective"),
        ({"objective": "a\x00b"}, "objective"),
        ({"model": "m" * 300}, "model"),
        ({"id": ""}, "id"),
    ],
)
def test_bad_input_names_the_field(store: Store, kwargs: dict[str, Any], field: str) -> None:
    args = {"agent_id": "a", **kwargs}
    with pytest.raises(InvalidInput) as err:
        store.runs.create(args.pop("agent_id"), **args)
    assert err.value.field == field
    assert store.runs.list().items == []


def test_ids_of_the_wrong_type_never_reach_the_database(store: Store) -> None:
    run = store.runs.create("a")
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: store.runs.get(5), "run_id"),  # type: ignore[arg-type]
        (lambda: store.runs.get(""), "run_id"),
        (lambda: store.runs.get("run\x00x"), "run_id"),
        (lambda: store.runs.transition(None, "failed"), "run_id"),  # type: ignore[arg-type]
        (lambda: store.runs.add_usage(["x"], input_tokens=1), "run_id"),  # type: ignore[arg-type]
        (lambda: store.runs.update(1.5, objective="x"), "run_id"),  # type: ignore[arg-type]
        (lambda: store.runs.delete(7), "run_id"),  # type: ignore[arg-type]
        (lambda: store.runs.list(agent_id=3), "agent_id"),  # type: ignore[arg-type]
        (lambda: store.runs.list(session_id=""), "session_id"),
    ]
    for call, field in calls:
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.field == field
    assert store.runs.get(run.id) == run


def test_duplicate_id_conflicts(store: Store) -> None:
    store.runs.create("a", id="run_fixed")
    with pytest.raises(Conflict):
        store.runs.create("a", id="run_fixed")


def test_update_changes_fields_and_checks_versions(store: Store) -> None:
    run = store.runs.create("a")
    updated = store.runs.update(
        run.id, expected_version=1, objective="new", iterations=3, output="so far", metadata={}
    )
    assert (updated.version, updated.objective, updated.iterations, updated.output) == (
        2,
        "new",
        3,
        "so far",
    )
    assert updated.status == "queued"
    with pytest.raises(Conflict):
        store.runs.update(run.id, expected_version=1, objective="lost")
    assert store.runs.get(run.id) == updated
    with pytest.raises(InvalidInput) as err:
        store.runs.update(run.id, iterations=-1)
    assert err.value.field == "iterations"
    with pytest.raises(TypeError):
        store.runs.update(run.id, status="completed")  # type: ignore[call-arg]
    with pytest.raises(NotFound):
        store.runs.update("run_missing", objective="x")


def test_transitions_follow_the_state_machine(store: Store) -> None:
    for current, allowed in RUN_TRANSITIONS.items():
        for target in RUN_TRANSITIONS:
            run = store.runs.create("a", status=current)
            if target == current:
                assert store.runs.transition(run.id, target) == run  # a no-op
            elif target in allowed:
                moved = store.runs.transition(run.id, target)
                assert (moved.status, moved.version) == (target, 2)
                assert store.runs.get(run.id) == moved
            else:
                with pytest.raises(InvalidTransition) as err:
                    store.runs.transition(run.id, target)
                assert (err.value.current, err.value.target) == (current, target)
                assert current in str(err.value) and target in str(err.value)
                assert store.runs.get(run.id) == run


def test_end_of_a_turn_moves_the_run_in_one_read_and_one_update(store: Store) -> None:
    """``runs.end``: what the worker's end of a turn does, under one lock."""
    action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
    kept = {"kept": "yes", "n": 1}

    def running(status: str = "in_progress") -> Run:
        run = store.runs.create("a", status="in_progress")
        run = store.runs.update(run.id, extra=kept)
        return store.runs.transition(run.id, status) if status != "in_progress" else run

    run = running()
    with sent_statements(store) as statements:
        done, moved = store.runs.end(run.id, "completed", add_extra={"n": 2, "new": [1]})
    # The run's locked read and its update: no second read (BEGIN and COMMIT aside).
    assert verbs(statements) == ["SELECT", "UPDATE"]
    assert moved and (done.status, done.version) == ("completed", 3)
    assert done.finished_at is not None and done.extra == {"kept": "yes", "n": 2, "new": [1]}
    assert store.runs.get(run.id) == done

    run = running()
    waiting, moved = store.runs.end(
        run.id, "requires_action", required_action=action, add_extra={"expires_at": 5}
    )
    assert moved and waiting.status == "requires_action" and waiting.required_action == action
    assert waiting.finished_at is None and waiting.extra == {**kept, "expires_at": 5}
    assert store.runs.get(run.id) == waiting

    run = running()
    failed, moved = store.runs.end(run.id, "failed", last_error={"code": "x", "message": "m"})
    assert moved and failed.last_error == {"code": "x", "message": "m"}
    assert store.runs.get(run.id) == failed

    # Being cancelled: cancelled instead, without the action or the extra.
    for status in ("completed", "requires_action", "incomplete"):
        run = running("cancelling")
        ended, moved = store.runs.end(
            run.id, status, required_action=action, add_extra={"expires_at": 5}
        )
        assert moved and ended.status == "cancelled" and ended.required_action is None
        assert ended.extra == kept and ended.finished_at is not None
        assert store.runs.get(run.id) == ended
    run = running("cancelling")
    failed, moved = store.runs.end(run.id, "failed", last_error="boom")
    assert moved and failed.status == "failed"

    # Ended already, or at that status: left as it is.
    for status in ("completed", "cancelled", "failed", "expired"):
        run = running(status)
        assert store.runs.end(run.id, "completed", add_extra={"n": 9}) == (run, False)
        assert store.runs.get(run.id) == run
    run = running("requires_action")
    assert store.runs.end(run.id, "requires_action", add_extra={"n": 9}) == (run, False)
    assert store.runs.get(run.id) == run

    # Bad input names its field and changes nothing; a missing run is NotFound.
    run = running()
    for kwargs, field in (
        ({"status": "done"}, "status"),
        ({"status": "completed", "add_extra": ["x"]}, "add_extra"),
        ({"status": "requires_action", "required_action": "x"}, "required_action"),
        ({"status": "failed", "last_error": {"code": 5}}, "last_error.code"),
    ):
        with pytest.raises(InvalidInput) as err:
            store.runs.end(run.id, **kwargs)
        assert err.value.field == field
    assert store.runs.get(run.id) == run
    with pytest.raises(NotFound):
        store.runs.end("run_missing", "completed")
    with pytest.raises(NotFound):
        store.tenant("other").runs.end(run.id, "completed")
    assert store.runs.get(run.id) == run


def test_lifecycle_sets_times_and_required_action(store: Store) -> None:
    run = store.runs.create("a")
    started = store.runs.transition(run.id, "in_progress")
    assert started.started_at is not None and started.finished_at is None
    action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
    waiting = store.runs.transition(run.id, "requires_action", required_action=action)
    assert waiting.required_action == action
    assert store.runs.get(run.id).required_action == action
    resumed = store.runs.transition(run.id, "in_progress", expected_version=waiting.version)
    assert resumed.required_action is None and store.runs.get(run.id).required_action is None
    assert resumed.started_at == started.started_at
    with pytest.raises(Conflict):
        store.runs.transition(run.id, "completed", expected_version=waiting.version)
    done = store.runs.transition(run.id, "completed", output="answer")
    assert done.finished_at is not None and done.output == "answer"
    assert store.runs.get(run.id) == done


def _race(*actions: Callable[[], object]) -> list[BaseException | None]:
    """Run the actions at once in threads; what each raised (None if nothing)."""
    start = threading.Barrier(len(actions))
    out: list[BaseException | None] = [None] * len(actions)

    def go(i: int) -> None:
        start.wait()
        try:
            actions[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(actions))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def test_racing_transitions_only_one_wins(store: Store) -> None:
    run = store.runs.create("a", status="in_progress")
    errors = _race(
        lambda: store.runs.transition(run.id, "completed"),
        lambda: store.runs.transition(run.id, "failed"),
    )
    assert sum(isinstance(e, InvalidTransition) for e in errors) == 1
    assert errors.count(None) == 1
    final = store.runs.get(run.id)
    assert final.status == ("completed" if errors[0] is None else "failed")
    assert final.version == 2


def test_racing_versioned_updates_only_one_wins(store: Store) -> None:
    run = store.runs.create("a")
    errors = _race(
        *[
            (lambda n=n: store.runs.update(run.id, expected_version=1, objective=f"w{n}"))
            for n in range(4)
        ]
    )
    assert errors.count(None) == 1
    assert all(isinstance(e, Conflict) for e in errors if e is not None)
    assert store.runs.get(run.id).version == 2


def test_failure_records_last_error(store: Store) -> None:
    run = store.runs.create("a", status="in_progress")
    failed = store.runs.transition(
        run.id, "failed", last_error={"code": "rate_limit_exceeded", "message": "slow down"}
    )
    assert failed.last_error == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert store.runs.get(run.id).last_error == failed.last_error
    other = store.runs.create("a", status="in_progress")
    assert store.runs.transition(other.id, "failed", last_error="boom").last_error == {
        "code": "server_error",
        "message": "boom",
    }


def test_transition_input_is_checked_first(store: Store) -> None:
    run = store.runs.create("a", status="in_progress")
    with pytest.raises(InvalidInput) as err:
        store.runs.transition(run.id, "done")
    assert err.value.field == "status"
    with pytest.raises(InvalidInput) as err:
        store.runs.transition(run.id, "completed", required_action={"type": "x"})
    assert err.value.field == "required_action"
    with pytest.raises(InvalidInput) as err:
        store.runs.transition(run.id, "failed", last_error={"code": 5})
    assert err.value.field == "last_error.code"
    with pytest.raises(InvalidInput) as err:
        store.runs.transition(run.id, "completed", extra="x")  # type: ignore[arg-type]
    assert err.value.field == "extra"
    assert store.runs.get(run.id) == run
    with pytest.raises(NotFound):
        store.runs.transition("run_missing", "completed")


def test_a_transition_replaces_the_extra_in_the_same_write(store: Store) -> None:
    """Submitting tool outputs re-queues the run without its expiry: one locked read and one
    update, not ``update`` then ``transition`` (two of each)."""
    action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
    run = store.runs.create("a", status="in_progress")
    run, _ = store.runs.end(
        run.id,
        "requires_action",
        required_action=action,
        add_extra={"expires_at": 5, "kept": 1},
    )
    with sent_statements(store) as statements:
        queued = store.runs.transition(run.id, "queued", extra={"kept": 1})
    assert verbs(statements) == ["SELECT", "UPDATE"]
    assert (queued.status, queued.extra, queued.required_action) == ("queued", {"kept": 1}, None)
    assert queued.version == run.version + 1
    assert store.runs.get(run.id) == queued
    # A move the state machine refuses writes nothing, the extra included.
    with pytest.raises(InvalidTransition):
        store.runs.transition(run.id, "requires_action", extra={"other": 2})
    assert store.runs.get(run.id) == queued


def test_add_usage_increments_and_keeps_unknown_cost(store: Store) -> None:
    run = store.runs.create("a")
    after = store.runs.add_usage(
        run.id, input_tokens=10, output_tokens=5, cached_tokens=2, reasoning_tokens=1, iterations=1
    )
    assert (after.input_tokens, after.output_tokens, after.cached_tokens) == (10, 5, 2)
    assert (after.reasoning_tokens, after.iterations, after.total_tokens) == (1, 1, 15)
    assert after.cost_usd is None  # unknown, not zero
    assert after.version == run.version  # counters do not make optimistic updates conflict
    priced = store.runs.add_usage(run.id, input_tokens=1, cost_usd=Decimal("0.0015"))
    assert priced.cost_usd == Decimal("0.0015") and priced.input_tokens == 11
    assert store.runs.add_usage(run.id, output_tokens=1).cost_usd == Decimal("0.0015")
    assert store.runs.add_usage(run.id, cost_usd=Decimal("0.000000001")).cost_usd == Decimal(
        "0.001500001"
    )
    assert store.runs.get(run.id).cost_usd == Decimal("0.001500001")
    with pytest.raises(NotFound):
        store.runs.add_usage("run_missing", input_tokens=1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"cached_tokens": True}, "cached_tokens"),
        ({"iterations": "1"}, "iterations"),
        ({"cost_usd": Decimal("-1")}, "cost_usd"),
        ({"cost_usd": "lots"}, "cost_usd"),
        ({"cost_usd": float("inf")}, "cost_usd"),
    ],
)
def test_add_usage_rejects_bad_amounts(store: Store, kwargs: dict[str, Any], field: str) -> None:
    run = store.runs.create("a")
    with pytest.raises(InvalidInput) as err:
        store.runs.add_usage(run.id, **kwargs)
    assert err.value.field == field
    assert store.runs.get(run.id) == run


def test_concurrent_add_usage_loses_nothing(store: Store) -> None:
    run = store.runs.create("a")

    def add() -> None:
        for _ in range(20):
            store.runs.add_usage(run.id, input_tokens=1, output_tokens=2, cost_usd=Decimal("0.01"))

    threads = [threading.Thread(target=add) for _ in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    got = store.runs.get(run.id)
    assert (got.input_tokens, got.output_tokens) == (100, 200)
    assert got.cost_usd == Decimal("1")


def test_list_filters_and_pagination(store: Store) -> None:
    s = store.sessions.create()
    made = [
        store.runs.create("a" if i % 2 else "b", session_id=s.id if i < 3 else None)
        for i in range(6)
    ]
    store.runs.transition(made[0].id, "in_progress")
    store.runs.transition(made[1].id, "cancelled")
    assert [r.id for r in store.runs.list()] == [r.id for r in reversed(made)]
    assert {r.id for r in store.runs.list(agent_id="a")} == {made[1].id, made[3].id, made[5].id}
    assert [r.id for r in store.runs.list(session_id=s.id, order="asc")] == [r.id for r in made[:3]]
    assert [r.id for r in store.runs.list(status="in_progress")] == [made[0].id]
    assert {r.id for r in store.runs.list(status=["in_progress", "cancelled"])} == {
        made[0].id,
        made[1].id,
    }
    page = store.runs.list(limit=4)
    assert page.has_more and len(page) == 4
    rest = store.runs.list(limit=4, after=page.last_id)
    assert [r.id for r in rest] == [made[1].id, made[0].id] and not rest.has_more
    now = datetime.now(UTC)
    assert len(store.runs.list(created_after=now - timedelta(minutes=1))) == 6
    assert store.runs.list(created_before=now - timedelta(minutes=1)).items == []
    with pytest.raises(InvalidInput) as err:
        store.runs.list(status=["queued", "nope"])
    assert err.value.field == "status"
    with pytest.raises(InvalidInput) as err:
        store.runs.list(limit=0)
    assert err.value.field == "limit"


def test_tenants_do_not_see_each_others_runs(store: Store) -> None:
    run = store.runs.create("a")
    other = store.tenant(store.tenant_id + "_b")
    with pytest.raises(NotFound):
        other.runs.get(run.id)
    with pytest.raises(NotFound):
        other.runs.transition(run.id, "in_progress")
    with pytest.raises(NotFound):
        other.runs.delete(run.id)
    assert other.runs.list().items == []
    assert other.runs.claim_next("w") is None
    assert store.runs.get(run.id).status == "queued"


def _count_events(store: Store, run_id: str) -> int:
    t = schema.events
    with store._core.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(t.c.tenant_id == store.tenant_id, t.c.run_id == run_id)
            ).scalar_one()
        )


def _add_event(store: Store, run_id: str, bookmark: int) -> None:
    # Written directly, so this test does not depend on store.events.
    with store._core.write() as conn:
        conn.execute(
            sa.insert(schema.events).values(
                tenant_id=store.tenant_id,
                bookmark=bookmark,
                run_id=run_id,
                type="run_started",
                channel="progress",
                data={},
                created_at=1,
            )
        )


def test_delete_cascades_steps_events_and_tool_calls(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create("a", session_id=s.id)
    keep = store.runs.create("a", session_id=s.id)
    step = store.run_steps.create(run.id, "tool_calls")
    call = store.tool_calls.create("search", {"q": "x"}, run_id=run.id, step_id=step.id)
    kept_call = store.tool_calls.create("search", run_id=keep.id)
    _add_event(store, run.id, 1)
    _add_event(store, keep.id, 2)
    store.runs.delete(run.id)
    for fn, ident in (
        (store.runs.get, run.id),
        (store.run_steps.get, step.id),
        (store.tool_calls.get, call.id),
    ):
        with pytest.raises(NotFound):
            fn(ident)
    assert _count_events(store, run.id) == 0
    assert _count_events(store, keep.id) == 1
    assert store.tool_calls.get(kept_call.id).run_id == keep.id
    assert store.sessions.get(s.id).id == s.id  # the session stays
    with pytest.raises(NotFound):
        store.runs.delete(run.id)


def test_deleting_a_session_deletes_its_runs(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create("a", session_id=s.id)
    store.run_steps.create(run.id, "message_creation")
    store.sessions.delete(s.id)
    with pytest.raises(NotFound):
        store.runs.get(run.id)
    with pytest.raises(NotFound):
        store.run_steps.list(run.id)


def test_claim_next_takes_the_oldest_queued_run(store: Store) -> None:
    assert store.runs.claim_next("w1") is None
    first = store.runs.create("a")
    second = store.runs.create("a")
    store.runs.create("a", status="in_progress")
    claimed = store.runs.claim_next("w1")
    assert claimed is not None and claimed.id == first.id
    assert (claimed.status, claimed.worker_id, claimed.version) == ("in_progress", "w1", 2)
    assert claimed.started_at is not None
    assert store.runs.get(first.id) == claimed
    again = store.runs.claim_next("w2")
    assert again is not None and again.id == second.id and again.worker_id == "w2"
    assert store.runs.claim_next("w1") is None


def test_claim_next_can_resume_runs_waiting_for_action(store: Store) -> None:
    run = store.runs.create("a", status="in_progress")
    waiting = store.runs.transition(run.id, "requires_action", required_action={"type": "x"})
    assert store.runs.claim_next("w") is None
    resumed = store.runs.claim_next("w", statuses=("requires_action",))
    assert resumed is not None and resumed.id == run.id
    assert resumed.status == "in_progress" and resumed.required_action is None
    assert resumed.started_at == waiting.started_at
    with pytest.raises(InvalidInput) as err:
        store.runs.claim_next("w", statuses=("completed",))
    assert err.value.field == "statuses"
    with pytest.raises(InvalidInput) as err:
        store.runs.claim_next("")
    assert err.value.field == "worker_id"


def test_threads_claim_each_run_exactly_once(store: Store) -> None:
    made = {store.runs.create("a").id for _ in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def work(n: int) -> None:
        start.wait()
        while (run := store.runs.claim_next(f"w{n}")) is not None:
            with lock:
                claimed.append(run.id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == made
    assert {r.status for r in store.runs.list(limit=100)} == {"in_progress"}


def _claim_in_process(url: str, tenant: str, worker: str, ready: Any, results: Any) -> None:
    """A worker process: connect, wait for the others, claim until the queue is empty."""
    store = agentkeep.connect(url).tenant(tenant)
    got: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        while (run := store.runs.claim_next(worker)) is not None:
            with lock:
                got.append(run.id)

    try:
        ready.wait(timeout=60)
        threads = [threading.Thread(target=loop) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        results.put(got)
        store.close()


@pytest.mark.slow
def test_processes_claim_each_run_exactly_once(backend: str, db_url: str, store: Store) -> None:
    if backend == "memory":
        pytest.skip("an in-memory database is private to its process")
    made = {store.runs.create("a").id for _ in range(60)}
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_claim_in_process, args=(db_url, store.tenant_id, f"p{i}", ready, results)
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    claimed = [run_id for _ in procs for run_id in results.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == made
    workers = Counter(r.worker_id for r in store.runs.list(limit=100))
    assert sum(workers.values()) == 60 and set(workers) <= {"p0", "p1"}


def test_claim_next_any_tenant_takes_the_oldest_of_all(own_db: Store) -> None:
    a = own_db.tenant("tenant_a")
    b = own_db.tenant("tenant_b")
    first = b.runs.create("x")
    while datetime.now(UTC) <= first.created_at:  # the second is made later
        time.sleep(0.0001)
    second = a.runs.create("x")
    claimed = a.runs.claim_next_any_tenant("svc")
    assert claimed is not None and (claimed.id, claimed.tenant_id) == (first.id, "tenant_b")
    assert b.runs.get(first.id).worker_id == "svc"
    claimed = b.runs.claim_next_any_tenant("svc")
    assert claimed is not None and claimed.id == second.id and claimed.tenant_id == "tenant_a"
    assert a.runs.claim_next_any_tenant("svc") is None


def test_fail_interrupted_fails_runs_left_in_flight(store: Store) -> None:
    mine = store.runs.create("a")
    assert store.runs.claim_next("w1") is not None
    theirs = store.runs.create("a")
    assert store.runs.claim_next("w2") is not None
    queued = store.runs.create("a")
    stopping = store.runs.create("a", status="in_progress")
    store.runs.transition(stopping.id, "cancelling")
    waiting = store.runs.create("a", status="in_progress")
    store.runs.transition(waiting.id, "requires_action")

    failed = store.runs.fail_interrupted(worker_id="w1")
    assert [r.id for r in failed] == [mine.id]
    assert failed[0].status == "failed" and failed[0].finished_at is not None
    assert failed[0].last_error is not None and failed[0].last_error["code"] == "server_error"
    assert store.runs.get(mine.id) == failed[0]
    assert store.runs.get(theirs.id).status == "in_progress"

    failed = store.runs.fail_interrupted(message="restarted")
    assert [r.id for r in failed] == [theirs.id, stopping.id]
    assert all(r.last_error == {"code": "server_error", "message": "restarted"} for r in failed)
    assert store.runs.get(queued.id).status == "queued"
    assert store.runs.get(waiting.id).status == "requires_action"
    assert store.runs.fail_interrupted() == []


def test_fail_interrupted_stays_in_its_tenant_unless_asked(own_db: Store) -> None:
    a = own_db.tenant("tenant_a")
    b = own_db.tenant("tenant_b")
    ra = a.runs.create("x", status="in_progress")
    rb = b.runs.create("x", status="in_progress")
    assert [r.id for r in a.runs.fail_interrupted()] == [ra.id]
    assert b.runs.get(rb.id).status == "in_progress"
    assert [r.id for r in a.runs.fail_interrupted(all_tenants=True)] == [rb.id]
    assert b.runs.get(rb.id).status == "failed"


async def test_async_runs(astore: AsyncStore) -> None:
    run = await astore.runs.create("a")
    claimed = await astore.runs.claim_next("w")
    assert claimed is not None and claimed.id == run.id
    run = await astore.runs.add_usage(run.id, input_tokens=3, cost_usd=Decimal("0.5"))
    assert run.cost_usd == Decimal("0.5")
    done = await astore.runs.transition(run.id, "completed")
    assert done.status == "completed"
    assert [r.id for r in await astore.runs.list(status="completed")] == [run.id]
    with pytest.raises(InvalidTransition):
        await astore.runs.transition(run.id, "in_progress")
    assert done.status in TERMINAL_RUN_STATUSES
    await astore.runs.delete(run.id)
    with pytest.raises(NotFound):
        await astore.runs.get(run.id)


async def test_a_workers_claims_and_sweeps_run_on_the_async_connections(
    own_db: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a worker's loop awaits, with no worker thread: its claims (the poll, then one
    write that picks and takes the runs), the recovery of runs left in flight, the runs
    past their expiry; each answers as the sync API does."""
    a, b = own_db.tenant("tenant_a"), own_db.tenant("tenant_b")
    aa, ab = AsyncStore(a), AsyncStore(b)
    first = b.runs.create("x")
    while datetime.now(UTC) <= first.created_at:  # the others are made later
        time.sleep(0.0001)
    second, third = a.runs.create("x"), a.runs.create("x")
    no_worker_threads(monkeypatch, "the worker's claims and sweeps")
    with sent_statements(own_db) as sent:
        claimed = await aa.runs.claim_next_any_tenant("w1")
    assert claimed is not None and (claimed.id, claimed.tenant_id) == (first.id, "tenant_b")
    assert claimed == b.runs.get(first.id) and claimed.worker_id == "w1"
    if backend == "postgres":  # the poll, then BEGIN, the pick, the claim, COMMIT
        shown = [s.split(None, 1)[0].upper() for s in sent if not s.upper().startswith("SET ")]
        assert shown == ["SELECT", "BEGIN", "SELECT", "UPDATE", "COMMIT"], sent
        assert "SKIP LOCKED" in [s for s in sent if s.startswith("SELECT")][1], sent
    assert [r.id for r in await aa.runs.claim_many("w2", 5)] == [second.id, third.id]
    assert await aa.runs.claim_next("w2") is None
    assert await ab.runs.claim_many("w2", 5, all_tenants=True) == []
    waiting = a.runs.create("x", status="in_progress", extra={"expires_at": 1})
    a.runs.transition(waiting.id, "requires_action")
    assert [r.id for r in await aa.runs.past_expiry()] == [waiting.id]
    assert await ab.runs.past_expiry() == []
    assert [r.id for r in await ab.runs.past_expiry(all_tenants=True)] == [waiting.id]
    early = datetime.fromtimestamp(0.5, UTC)
    assert await aa.runs.past_expiry(now=early) == []
    failed = await aa.runs.fail_interrupted(worker_id="w2", message="gone")
    assert [r.id for r in failed] == [second.id, third.id]
    assert failed[0] == a.runs.get(second.id)
    assert failed[0].status == "failed" and failed[0].required_action is None
    assert failed[0].last_error == {"code": "server_error", "message": "gone"}
    assert await aa.runs.fail_interrupted() == []  # b's run is another tenant's
    assert [r.id for r in await aa.runs.fail_interrupted(all_tenants=True)] == [first.id]
    with pytest.raises(InvalidInput) as bad:
        await aa.runs.claim_many("w", 0)
    assert bad.value.field == "limit"


def test_active_in_session_answers_both_questions_in_one_read(store: Store) -> None:
    thread = store.sessions.create(kind="thread")
    assert store.runs.active_in_session(thread.id) is None
    assert store.runs.active_in_session(thread.id, kind="thread") is None
    done = store.runs.create("asst_x", session_id=thread.id)
    store.runs.transition(done.id, "cancelled")
    assert store.runs.active_in_session(thread.id) is None
    queued = store.runs.create("asst_x", session_id=thread.id)
    assert store.runs.active_in_session(thread.id, kind="thread") == queued.id
    with pytest.raises(NotFound):
        store.runs.active_in_session(thread.id, kind="conversation")
    with pytest.raises(NotFound):
        store.runs.active_in_session("sess_missing")
    assert store.tenant("t-other-active").sessions.list().items == []
    with pytest.raises(NotFound):  # another tenant's session
        store.tenant("t-other-active").runs.active_in_session(thread.id)


async def test_active_in_session_through_the_async_api_inside_and_outside_a_transaction(
    store: Store, astore: AsyncStore
) -> None:
    """One implementation (an operation compiled per dialect): the async API answers the
    same, and inside a transaction the read sees that transaction's own new run."""
    thread = store.sessions.create(kind="thread")
    assert await astore.runs.active_in_session(thread.id, kind="thread") is None
    with pytest.raises(NotFound):
        await astore.runs.active_in_session(thread.id, kind="conversation")
    with store.transaction():
        run = store.runs.create("asst_x", session_id=thread.id)
        assert store.runs.active_in_session(thread.id, kind="thread") == run.id
    assert await astore.runs.active_in_session(thread.id) == run.id
    with store.transaction():
        store.runs.transition(run.id, "cancelled")
        assert store.runs.active_in_session(thread.id) is None
    assert await astore.runs.active_in_session(thread.id) is None


def test_claim_many_takes_the_oldest_runs_once(store: Store) -> None:
    thread = store.sessions.create(kind="thread")
    other = store.tenant("t-claim-many")
    other_thread = other.sessions.create(kind="thread")
    runs = [store.runs.create("asst_x", session_id=thread.id) for _ in range(3)]
    foreign = other.runs.create("asst_x", session_id=other_thread.id)
    first = store.runs.claim_many("w1", 2)
    assert [r.id for r in first] == [r.id for r in runs[:2]]
    assert {r.status for r in first} == {"in_progress"}
    assert [r.id for r in store.runs.claim_many("w2", 5)] == [runs[2].id]  # this tenant only
    assert store.runs.claim_many("w2", 5) == []
    # Other tests' tenants may have queued runs in this database too.
    assert foreign.id in [r.id for r in store.runs.claim_many("w3", 1000, all_tenants=True)]
    assert store.runs.get(runs[2].id).worker_id == "w2"
    with pytest.raises(InvalidInput):
        store.runs.claim_many("w1", 0)


def test_claimable_says_whether_a_run_waits_to_be_claimed(own_db: Store) -> None:
    mine, theirs = own_db.tenant("t_claimable_a"), own_db.tenant("t_claimable_b")
    assert not mine.runs.claimable() and not mine.runs.claimable(all_tenants=True)
    waiting = theirs.runs.create("asst_x", status="in_progress")
    theirs.runs.transition(waiting.id, "requires_action")
    assert not theirs.runs.claimable()
    assert theirs.runs.claimable(statuses=["requires_action"])
    queued = theirs.runs.create("asst_x")
    assert theirs.runs.claimable() and not mine.runs.claimable()
    assert mine.runs.claimable(all_tenants=True)
    assert [r.id for r in mine.runs.claim_many("w", 5, all_tenants=True)] == [queued.id]
    assert not mine.runs.claimable(all_tenants=True)
    with pytest.raises(InvalidInput) as bad:
        mine.runs.claimable(statuses=["completed"])
    assert bad.value.field == "statuses"


async def test_claimable_is_one_read_on_the_async_connections(
    own_db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll of a worker built on the async API: one statement, no worker thread."""
    mine = own_db.tenant("t_aclaimable")
    amine = AsyncStore(mine)
    no_worker_threads(monkeypatch, "runs.claimable")
    assert not await amine.runs.claimable()
    queued = mine.runs.create("asst_x")
    with sent_statements(own_db) as sent:
        assert await amine.runs.claimable()
    assert len(work(sent)) == 1, work(sent)
    assert await amine.tenant("t_other").runs.claimable(all_tenants=True)
    assert not await amine.tenant("t_other").runs.claimable()
    mine.runs.claim_many("w", 5, all_tenants=True)
    assert not await amine.runs.claimable() and queued.status == "queued"


def test_an_idle_workers_poll_does_not_wait_for_another_processes_write_lock(
    tmp_path: Path,
) -> None:
    """The service's worker asks for work with a read first: on SQLite, while another
    process holds the write lock for long, an empty queue answers at once."""
    from agentkeep.runner import ops

    url = f"sqlite:///{tmp_path}/idle.db"
    with agentkeep.connect(url) as store:
        holder = sqlite3.connect(tmp_path / "idle.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write
        try:
            done = threading.Event()
            polled: list[Any] = []

            def poll() -> None:
                polled.append(ops.claim_runs(store, "w", 4))
                done.set()

            threading.Thread(target=poll, daemon=True).start()
            # With the write lock wanted, the poll would wait out SQLite's busy timeout.
            assert done.wait(timeout=20), "the idle poll waited for the write lock"
            assert polled == [[]]
        finally:
            holder.execute("ROLLBACK")
            holder.close()


def test_list_by_offset_is_done_in_the_database(store: Store) -> None:
    made = [store.runs.create("asst_off") for _ in range(5)]
    newest_first = [r.id for r in reversed(made)]
    page = store.runs.list(agent_id="asst_off", limit=2, offset=1)
    assert [r.id for r in page.items] == newest_first[1:3] and page.has_more
    last = store.runs.list(agent_id="asst_off", limit=2, offset=4)
    assert [r.id for r in last.items] == newest_first[4:] and not last.has_more
    assert store.runs.list(agent_id="asst_off", offset=5).items == []
    by_time = store.runs.list(agent_id="asst_off", sort="created_at", order="asc", offset=3)
    assert [r.id for r in by_time.items] == [r.id for r in made[3:]]
    with pytest.raises(InvalidInput) as err:
        store.runs.list(offset=-1)
    assert err.value.field == "offset"


def test_an_end_racing_a_cancel_ends_as_the_winner_left_it(store: Store) -> None:
    """``runs.end`` decides on the run as it finds it: when a cancel came first, the turn
    that would have completed ends the run ``cancelled``; when the end came first, the
    cancel is an ``InvalidTransition``. Never both applied to the same version."""
    for _ in range(5):
        run = store.runs.create("a", status="in_progress")
        ended: list[tuple[Run, bool]] = []
        errors = _race(
            lambda run=run, ended=ended: ended.append(store.runs.end(run.id, "completed")),
            lambda run=run: store.runs.transition(run.id, "cancelling"),
        )
        final = store.runs.get(run.id)
        assert errors[0] is None and ended[0][1] and ended[0][0] == final
        if errors[1] is None:  # the cancel first: the end made it cancelled
            assert (final.status, final.version) == ("cancelled", 3)
        else:
            assert isinstance(errors[1], InvalidTransition)
            assert (final.status, final.version) == ("completed", 2)


async def test_runs_are_made_and_moved_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread: a create is one write (the session's and the agent's reads, then
    the insert); an update, a transition and an end each a read and an update made only
    at the version read; usage one update."""
    s = store.sessions.create()
    agent = store.agents.create(model="m")
    no_worker_threads(monkeypatch, "runs")
    with sent_statements(store) as sent:
        run = await astore.runs.create(agent.id, session_id=s.id)
    assert verbs(work(sent)) == ["SELECT", "SELECT", "INSERT"], work(sent)
    assert (run.agent_version, run.last_error, run.required_action) == (1, None, None)
    assert await astore.runs.get(run.id) == run
    with sent_statements(store) as sent:
        moved = await astore.runs.transition(run.id, "in_progress")
    assert verbs(work(sent)) == ["SELECT", "UPDATE"], work(sent)
    assert moved.version == 2 and moved.started_at is not None
    changed = await astore.runs.update(run.id, expected_version=2, metadata={"a": "b"})
    assert (changed.version, changed.metadata) == (3, {"a": "b"})
    with pytest.raises(Conflict) as stale:
        await astore.runs.update(run.id, expected_version=2, output="lost")
    assert stale.value.current_version == 3
    with sent_statements(store) as sent:
        added = await astore.runs.add_usage(run.id, input_tokens=5, cost_usd=Decimal("0.1"))
    assert verbs(work(sent)) == ["UPDATE"], work(sent)
    assert (added.input_tokens, added.cost_usd, added.version) == (5, Decimal("0.1"), 3)
    action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
    waiting, did = await astore.runs.end(run.id, "requires_action", required_action=action)
    assert did and (waiting.status, waiting.required_action) == ("requires_action", action)
    # a filter on the SQL NULL an unset error left finds the run
    assert [r.id for r in store.runs.list(session_id=s.id)] == [run.id]
    resumed = await astore.runs.transition(run.id, "in_progress")
    assert resumed.required_action is None and resumed.version == 5
    with pytest.raises(InvalidTransition):
        await astore.runs.transition(run.id, "queued")
    with pytest.raises(NotFound):
        await astore.runs.create(agent.id, session_id="sess_missing")
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    with pytest.raises(NotFound):
        await other.runs.transition(run.id, "cancelling")
    with pytest.raises(NotFound):
        await other.runs.add_usage(run.id, input_tokens=1)
    assert store.runs.get(run.id) == resumed
