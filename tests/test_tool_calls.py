"""Tool calls: state machine, approvals, audit trail, durations, filters, pagination."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _statements import sent_statements, verbs, work
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, InvalidTransition, NotFound, Store
from agentkeep.models import TOOL_CALL_TERMINAL, TOOL_CALL_TRANSITIONS


def test_create_and_get_round_trip(store: Store) -> None:
    call = store.tool_calls.create("search", {"q": "cats", "n": [1, 2]}, metadata={"k": "v"})
    assert call.id.startswith("call_")
    assert (call.state, call.is_error, call.output, call.approval) == (
        "pending",
        False,
        None,
        None,
    )
    assert call.input == {"q": "cats", "n": [1, 2]}
    assert [(e["from"], e["to"]) for e in call.audit] == [(None, "pending")]
    assert call.started_at is None and call.finished_at is None and call.duration_ms is None
    assert store.tool_calls.get(call.id) == call


@pytest.mark.parametrize("value", ["plain text", 42, [1, "two"], None, {"nested": {"a": None}}])
def test_input_and_output_are_any_json(store: Store, value: Any) -> None:
    call = store.tool_calls.create("echo", value)
    assert store.tool_calls.get(call.id).input == value
    done = store.tool_calls.complete(call.id, value)
    assert done.output == value and store.tool_calls.get(call.id).output == value


def test_run_and_step_lend_their_links(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create("asst_1", session_id=s.id)
    step = store.run_steps.create(run.id, "tool_calls")
    by_run = store.tool_calls.create("f", run_id=run.id)
    assert (by_run.session_id, by_run.agent_id) == (s.id, "asst_1")
    by_step = store.tool_calls.create("f", step_id=step.id)
    assert (by_step.run_id, by_step.session_id, by_step.agent_id) == (run.id, s.id, "asst_1")
    own = store.tool_calls.create("f", session_id=s.id, agent_id="other")
    assert (own.run_id, own.session_id, own.agent_id) == (None, s.id, "other")


def test_links_that_do_not_exist_or_disagree_write_nothing(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create("a", session_id=s.id)
    other_run = store.runs.create("a")
    step = store.run_steps.create(other_run.id, "tool_calls")
    with pytest.raises(NotFound) as nf:
        store.tool_calls.create("f", run_id="run_missing")
    assert (nf.value.kind, nf.value.ident) == ("run", "run_missing")
    with pytest.raises(NotFound) as nf:
        store.tool_calls.create("f", session_id="sess_missing")
    assert nf.value.kind == "session"
    with pytest.raises(NotFound) as nf:
        store.tool_calls.create("f", step_id="step_missing")
    assert nf.value.kind == "run_step"
    with pytest.raises(InvalidInput) as err:
        store.tool_calls.create("f", run_id=run.id, step_id=step.id)
    assert err.value.field == "step_id"
    with pytest.raises(InvalidInput) as err:
        store.tool_calls.create("f", run_id=run.id, session_id=store.sessions.create().id)
    assert err.value.field == "session_id"
    assert store.tool_calls.list().items == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": "n" * 300}, "name"),
        ({"input": object()}, "input"),
        ({"input": {"x": float("nan")}}, "input"),
        ({"input": "a\x00b"}, "input"),
        ({"state": "running"}, "state"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"run_id": 5}, "run_id"),
    ],
)
def test_bad_input_names_the_field(store: Store, kwargs: dict[str, Any], field: str) -> None:
    args = {"name": "f", **kwargs}
    with pytest.raises(InvalidInput) as err:
        store.tool_calls.create(args.pop("name"), **args)
    assert err.value.field == field
    assert store.tool_calls.list().items == []


def test_transitions_follow_the_state_machine(store: Store) -> None:
    for current, allowed in TOOL_CALL_TRANSITIONS.items():
        for target in TOOL_CALL_TRANSITIONS:
            call = store.tool_calls.create("f", state=current)
            if target == current:
                assert store.tool_calls.transition(call.id, target) == call  # a no-op
            elif target in allowed:
                moved = store.tool_calls.transition(call.id, target, by="tester")
                assert moved.state == target
                assert moved.audit[-1]["from"] == current and moved.audit[-1]["to"] == target
                assert (moved.finished_at is not None) == (target in TOOL_CALL_TERMINAL)
                assert store.tool_calls.get(call.id) == moved
            else:
                with pytest.raises(InvalidTransition) as err:
                    store.tool_calls.transition(call.id, target)
                assert (err.value.current, err.value.target) == (current, target)
                assert store.tool_calls.get(call.id) == call


def test_approval_flow_records_decision_and_audit(store: Store) -> None:
    call = store.tool_calls.create("delete_file", {"path": "/tmp/x"})
    waiting = store.tool_calls.require_approval(call.id, note="destructive")
    assert waiting.state == "approval_required" and waiting.approval is None
    approved = store.tool_calls.decide(call.id, "approved", by="alice", note="ok")
    assert approved.approval is not None
    assert (approved.approval.decision, approved.approval.by, approved.approval.note) == (
        "approved",
        "alice",
        "ok",
    )
    assert approved.approval.at >= call.created_at
    running = store.tool_calls.transition(call.id, "executing")
    done = store.tool_calls.complete(call.id, {"deleted": True})
    assert done.state == "completed" and done.output == {"deleted": True}
    assert [(e["from"], e["to"], e["by"], e["note"]) for e in done.audit] == [
        (None, "pending", None, None),
        ("pending", "approval_required", None, "destructive"),
        ("approval_required", "approved", "alice", "ok"),
        ("approved", "executing", None, None),
        ("executing", "completed", None, None),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in done.audit]
    assert times == sorted(times)
    assert running.started_at is not None and done.started_at == running.started_at
    assert store.tool_calls.get(call.id) == done


def test_denied_calls_end_without_running(store: Store) -> None:
    call = store.tool_calls.create("rm")
    store.tool_calls.require_approval(call.id)
    denied = store.tool_calls.decide(call.id, "denied", by="bob", note="no")
    assert denied.state == "denied" and denied.approval is not None
    assert denied.approval.decision == "denied"
    assert denied.finished_at is not None and denied.duration_ms is None
    with pytest.raises(InvalidTransition):
        store.tool_calls.transition(call.id, "executing")
    with pytest.raises(InvalidInput) as err:
        store.tool_calls.decide(call.id, "maybe")
    assert err.value.field == "decision"
    pending = store.tool_calls.create("rm")
    with pytest.raises(InvalidTransition):
        store.tool_calls.decide(pending.id, "approved")  # approval was never asked for


def test_duration_covers_execution(store: Store) -> None:
    call = store.tool_calls.create("slow")
    before = time.monotonic()
    store.tool_calls.transition(call.id, "executing")
    time.sleep(0.03)  # the execution being timed
    done = store.tool_calls.complete(call.id, "ok")
    took_ms = (time.monotonic() - before) * 1000
    # At least the execution, at most the time the two calls around it took.
    assert done.duration_ms is not None and 25 <= done.duration_ms <= took_ms + 1
    assert done.started_at is not None and done.finished_at is not None
    assert done.duration_ms == (done.finished_at - done.started_at) // timedelta(milliseconds=1)
    direct = store.tool_calls.complete(store.tool_calls.create("fast").id, "ok")
    assert direct.duration_ms is not None and direct.started_at is None
    cancelled = store.tool_calls.transition(store.tool_calls.create("x").id, "cancelled")
    assert cancelled.duration_ms is None


def test_errors_mark_the_call(store: Store) -> None:
    call = store.tool_calls.create("f", state="executing")
    failed = store.tool_calls.complete(call.id, {"error": "timeout"}, is_error=True)
    assert (failed.state, failed.is_error) == ("failed", True)
    direct = store.tool_calls.transition(store.tool_calls.create("f").id, "failed")
    assert direct.is_error is True
    with pytest.raises(InvalidInput) as err:
        store.tool_calls.complete(call.id, "x", is_error="yes")  # type: ignore[arg-type]
    assert err.value.field == "is_error"
    with pytest.raises(InvalidInput) as err:
        store.tool_calls.transition(call.id, "completed", output={1, 2})
    assert err.value.field == "output"
    with pytest.raises(InvalidInput) as err:
        store.tool_calls.transition(call.id, "completed", note=5)  # type: ignore[arg-type]
    assert err.value.field == "note"
    assert store.tool_calls.get(call.id) == failed
    with pytest.raises(NotFound):
        store.tool_calls.transition("call_missing", "completed")


def test_racing_outcomes_only_one_wins(store: Store) -> None:
    call = store.tool_calls.create("f", state="executing")
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def finish(state: str) -> None:
        start.wait()
        try:
            store.tool_calls.transition(call.id, state)
            outcomes.append(state)
        except InvalidTransition:
            outcomes.append("lost")

    threads = [threading.Thread(target=finish, args=(s,)) for s in ("completed", "cancelled")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes).count("lost") == 1
    final = store.tool_calls.get(call.id)
    assert final.state in outcomes
    assert [e["to"] for e in final.audit] == ["executing", final.state]


def test_list_filters(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create("asst_1", session_id=s.id)
    a = store.tool_calls.create("search", run_id=run.id)
    b = store.tool_calls.create("search", agent_id="asst_2")
    c = store.tool_calls.create("fetch", session_id=s.id)
    store.tool_calls.complete(a.id, "ok")
    store.tool_calls.complete(b.id, "bad", is_error=True)
    store.tool_calls.require_approval(c.id)
    d = store.tool_calls.create("fetch")
    store.tool_calls.require_approval(d.id)
    store.tool_calls.decide(d.id, "approved")

    def ids(**kwargs: Any) -> set[str]:
        return {x.id for x in store.tool_calls.list(**kwargs)}

    assert ids(name="search") == {a.id, b.id}
    assert ids(state="completed") == {a.id}
    assert ids(state=["failed", "approval_required"]) == {b.id, c.id}
    assert ids(is_error=True) == {b.id}
    assert ids(is_error=False) == {a.id, c.id, d.id}
    assert ids(has_approval=True) == {d.id}
    assert ids(has_approval=False) == {a.id, b.id, c.id}
    assert ids(run_id=run.id) == {a.id}
    assert ids(session_id=s.id) == {a.id, c.id}
    assert ids(agent_id="asst_1") == {a.id}
    assert ids(agent_id="asst_2") == {b.id}
    assert ids(name="fetch", has_approval=False) == {c.id}
    now = datetime.now(UTC)
    assert len(ids(created_after=now - timedelta(minutes=1))) == 4
    assert ids(created_before=now - timedelta(minutes=1)) == set()
    for kwargs, field in (
        ({"state": "nope"}, "state"),
        ({"state": []}, "state"),
        ({"is_error": "yes"}, "is_error"),
        ({"has_approval": 1}, "has_approval"),
        ({"order": "up"}, "order"),
        ({"run_id": 5}, "run_id"),
        ({"name": ""}, "name"),
    ):
        with pytest.raises(InvalidInput) as err:
            store.tool_calls.list(**kwargs)
        assert err.value.field == field


def test_pagination(store: Store) -> None:
    made = [store.tool_calls.create(f"t{i}") for i in range(7)]
    page = store.tool_calls.list(limit=3)
    assert [c.id for c in page] == [c.id for c in reversed(made)][:3] and page.has_more
    seen = [c.id for c in page]
    while page.has_more:
        page = store.tool_calls.list(limit=3, after=page.last_id)
        seen += [c.id for c in page]
    assert seen == [c.id for c in reversed(made)]
    back = store.tool_calls.list(limit=2, before=made[3].id, order="asc")
    assert [c.id for c in back] == [made[1].id, made[2].id]


def test_delete_and_tenants(store: Store) -> None:
    call = store.tool_calls.create("f")
    other = store.tenant(store.tenant_id + "_b")
    with pytest.raises(NotFound):
        other.tool_calls.get(call.id)
    with pytest.raises(NotFound):
        other.tool_calls.transition(call.id, "executing")
    with pytest.raises(NotFound):
        other.tool_calls.delete(call.id)
    assert other.tool_calls.list().items == []
    store.tool_calls.delete(call.id)
    with pytest.raises(NotFound) as err:
        store.tool_calls.get(call.id)
    assert err.value.kind == "tool_call"
    with pytest.raises(NotFound):
        store.tool_calls.delete(call.id)
    with pytest.raises(InvalidInput) as bad:
        store.tool_calls.get(42)  # type: ignore[arg-type]
    assert bad.value.field == "call_id"


def test_deleting_a_session_deletes_its_tool_calls(store: Store) -> None:
    s = store.sessions.create()
    call = store.tool_calls.create("f", session_id=s.id)
    store.sessions.delete(s.id)
    with pytest.raises(NotFound):
        store.tool_calls.get(call.id)


async def test_async_tool_calls(astore: AsyncStore) -> None:
    call = await astore.tool_calls.create("search", {"q": 1})
    await astore.tool_calls.require_approval(call.id)
    await astore.tool_calls.decide(call.id, "approved", by="me")
    await astore.tool_calls.transition(call.id, "executing")
    done = await astore.tool_calls.complete(call.id, [1, 2])
    assert done.state == "completed" and done.approval is not None
    assert [c.id for c in await astore.tool_calls.list(has_approval=True)] == [call.id]


async def test_tool_calls_are_made_and_moved_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread: a create is one write (its links' reads, then the insert), a
    transition a read and an update conditional on the state and time read. Two
    transitions awaited together: one wins, the other is an ``InvalidTransition`` against
    the winner's state, and the audit has one entry per change (whether they interleave
    is up to the event loop; ``test_racing_outcomes_only_one_wins`` races them on threads)."""
    s = store.sessions.create()
    run = store.runs.create("asst_1", session_id=s.id)
    no_worker_threads(monkeypatch, "tool calls")

    with sent_statements(store) as sent:
        call = await astore.tool_calls.create("f", {"q": None}, run_id=run.id)
    assert verbs(work(sent)) == ["SELECT", "SELECT", "INSERT"], work(sent)  # run, session
    assert (call.session_id, call.agent_id, call.output, call.approval) == (
        s.id,
        "asst_1",
        None,
        None,
    )
    assert await astore.tool_calls.get(call.id) == call
    with sent_statements(store) as sent:
        held = await astore.tool_calls.require_approval(call.id, by="ops")
    assert verbs(work(sent)) == ["SELECT", "UPDATE"], work(sent)
    assert held.state == "approval_required" and held.output is None
    # an unset output and approval stay SQL NULL: the filters still find the call
    assert [c.id for c in await astore.tool_calls.list(has_approval=False)] == [call.id]
    decided = await astore.tool_calls.decide(call.id, "approved", by="ops", note="ok")
    assert decided.approval is not None and decided.approval.by == "ops"
    assert [c.id for c in await astore.tool_calls.list(has_approval=True)] == [call.id]
    await astore.tool_calls.transition(call.id, "executing")

    outcomes = await asyncio.gather(
        astore.tool_calls.complete(call.id, {"answer": 42}),
        astore.tool_calls.transition(call.id, "cancelled", by="user"),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], InvalidTransition) and lost[0].current == won[0].state
    final = store.tool_calls.get(call.id)
    assert final == won[0]
    assert [e["to"] for e in final.audit] == [
        "pending",
        "approval_required",
        "approved",
        "executing",
        final.state,
    ]
    with pytest.raises(NotFound):
        await astore.tool_calls.create("f", run_id="run_missing")
    with pytest.raises(NotFound):
        await astore.tool_calls.transition("call_missing", "executing")
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    with pytest.raises(NotFound):
        await other.tool_calls.complete(call.id, "theirs")
    assert store.tool_calls.get(call.id) == final
