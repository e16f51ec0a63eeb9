"""The consistency check: each kind of finding, and a clean bill for healthy data."""

from __future__ import annotations

import sqlalchemy as sa

from agentkeep import AsyncStore, Store
from agentkeep.store.schema import sessions


def _kinds(store: Store) -> list[tuple[str, str]]:
    report = store.check_consistency()
    assert report.ok == (not report.issues)
    return [(i.kind, i.object_id) for i in report.issues]


def _corrupt_session(store: Store, session_id: str, **values: int) -> None:
    with store._core.write() as conn:
        conn.execute(
            sa.update(sessions)
            .where(sessions.c.tenant_id == store.tenant_id, sessions.c.id == session_id)
            .values(**values)
        )


def test_healthy_data_is_ok(store: Store) -> None:
    s = store.sessions.create()
    store.messages.append(s.id, "user", "hi")
    store.messages.append(
        s.id, "assistant", [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]
    )
    store.messages.append(
        s.id, "tool", [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]
    )
    last = store.messages.append(s.id, "assistant", "done")
    store.messages.delete(last.id)  # last_seq above the largest seq is fine
    store.sessions.fork(s.id, at_seq=3)
    run = store.runs.create("asst_1", session_id=s.id)
    call = store.tool_calls.create("f", {}, run_id=run.id)
    store.tool_calls.complete(call.id, "ok")
    store.runs.transition(run.id, "in_progress")
    store.runs.transition(run.id, "completed")
    report = store.check_consistency()
    assert report.ok and report.issues == []
    assert report.checked_at is not None


def test_tool_call_left_unfinished_after_its_run_ended(store: Store) -> None:
    run = store.runs.create("asst_1")
    store.runs.transition(run.id, "in_progress")
    pending = store.tool_calls.create("search", {"q": "x"}, run_id=run.id)
    executing = store.tool_calls.create("fetch", {}, run_id=run.id)
    store.tool_calls.transition(executing.id, "executing")
    done = store.tool_calls.create("ok", {}, run_id=run.id)
    store.tool_calls.complete(done.id, "fine")
    assert _kinds(store) == []  # the run is still going
    store.runs.transition(run.id, "failed")
    found = _kinds(store)
    assert sorted(found) == sorted(
        [("tool_call_without_result", pending.id), ("tool_call_without_result", executing.id)]
    )
    detail = store.check_consistency().issues[0].detail
    assert run.id in detail and "failed" in detail


def test_approved_call_left_when_run_expired(store: Store) -> None:
    run = store.runs.create("asst_1")
    call = store.tool_calls.create("rm", {}, run_id=run.id)
    store.tool_calls.require_approval(call.id)
    store.tool_calls.decide(call.id, "approved")
    store.runs.transition(run.id, "expired")
    assert _kinds(store) == [("tool_call_without_result", call.id)]


def test_tool_use_without_result_in_messages(store: Store) -> None:
    s = store.sessions.create()
    store.messages.append(s.id, "user", "go")
    # The result for toolu_early comes *before* its call: it does not count.
    store.messages.append(
        s.id, "tool", [{"type": "tool_result", "tool_use_id": "toolu_early", "content": "?"}]
    )
    m = store.messages.append(
        s.id,
        "assistant",
        [
            {"type": "tool_use", "id": "toolu_early", "name": "a", "input": {}},
            {"type": "tool_use", "id": "toolu_ok", "name": "b", "input": {}},
        ],
    )
    store.messages.append(
        s.id, "tool", [{"type": "tool_result", "tool_use_id": "toolu_ok", "content": "r"}]
    )
    report = store.check_consistency()
    assert [(i.kind, i.object_id) for i in report.issues] == [("tool_use_without_result", m.id)]
    assert "toolu_early" in report.issues[0].detail


def test_function_call_items_without_output(store: Store) -> None:
    s = store.sessions.create(kind="conversation")
    answered = store.messages.append(
        s.id,
        "assistant",
        [
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "f",
                "arguments": "{}",
            }
        ],
    )
    store.messages.append(
        s.id, "tool", [{"type": "function_call_output", "call_id": "call_1", "output": "1"}]
    )
    dangling = store.messages.append(
        s.id,
        "assistant",
        [
            {
                "type": "function_call",
                "id": "fc_2",
                "call_id": "call_2",
                "name": "f",
                "arguments": "{}",
            }
        ],
    )
    found = _kinds(store)
    assert found == [("tool_use_without_result", dangling.id)]
    assert answered.id not in [o for _, o in found]


def test_tool_use_of_an_active_run_is_not_reported(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create("asst_1", session_id=s.id)
    store.runs.transition(run.id, "in_progress")
    m = store.messages.append(
        s.id,
        "assistant",
        [{"type": "tool_use", "id": "toolu_live", "name": "a", "input": {}}],
        run_id=run.id,
    )
    assert _kinds(store) == []
    store.runs.transition(run.id, "completed")
    assert _kinds(store) == [("tool_use_without_result", m.id)]


def test_session_message_count_disagrees(store: Store) -> None:
    s = store.sessions.create()
    for i in range(3):
        store.messages.append(s.id, "user", f"m{i}")
    _corrupt_session(store, s.id, message_count=7)
    report = store.check_consistency()
    assert [(i.kind, i.object_id) for i in report.issues] == [("session_message_count", s.id)]
    assert "7" in report.issues[0].detail and "3" in report.issues[0].detail


def test_empty_session_with_a_count(store: Store) -> None:
    s = store.sessions.create()
    _corrupt_session(store, s.id, message_count=1)
    assert _kinds(store) == [("session_message_count", s.id)]


def test_session_last_seq_behind_its_messages(store: Store) -> None:
    s = store.sessions.create()
    for i in range(4):
        store.messages.append(s.id, "user", f"m{i}")
    _corrupt_session(store, s.id, last_seq=2)
    report = store.check_consistency()
    assert [(i.kind, i.object_id) for i in report.issues] == [("session_last_seq", s.id)]
    assert "4" in report.issues[0].detail


def test_both_counts_wrong_gives_two_issues(store: Store) -> None:
    s = store.sessions.create()
    store.messages.append(s.id, "user", "a")
    store.messages.append(s.id, "user", "b")
    _corrupt_session(store, s.id, last_seq=1, message_count=5)
    assert sorted(_kinds(store)) == [("session_last_seq", s.id), ("session_message_count", s.id)]


def test_check_is_per_tenant(store: Store) -> None:
    s = store.sessions.create()
    _corrupt_session(store, s.id, message_count=9)
    assert not store.check_consistency().ok
    assert store.tenant(store.tenant_id + "_other").check_consistency().ok


async def test_async_check(astore: AsyncStore, store: Store) -> None:
    s = store.sessions.create()
    _corrupt_session(store, s.id, message_count=2)
    report = await astore.check_consistency()
    assert [(i.kind, i.object_id) for i in report.issues] == [("session_message_count", s.id)]


def _delete_without_foreign_keys(store: Store, session_id: str) -> None:
    """Delete a session as a tool without foreign keys would: its rows stay behind."""
    if store.backend == "postgresql":
        with store._core.write() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.execute(
                sa.delete(sessions).where(
                    sessions.c.tenant_id == store.tenant_id, sessions.c.id == session_id
                )
            )
        return
    with store._core.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            raw.execute(
                "DELETE FROM sessions WHERE tenant_id = ? AND id = ?", (store.tenant_id, session_id)
            )
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def test_the_check_scoped_to_one_agent(store: Store) -> None:
    mine = store.sessions.create(agent_id="asst_mine")
    ran_on = store.sessions.create()  # no agent of its own, but asst_mine ran on it
    theirs = store.sessions.create(agent_id="asst_theirs")
    run = store.runs.create("asst_mine", session_id=ran_on.id)
    store.runs.transition(run.id, "in_progress")
    call = store.tool_calls.create("search", {}, run_id=run.id)
    store.runs.transition(run.id, "failed")
    other_run = store.runs.create("asst_theirs", session_id=theirs.id)
    store.runs.transition(other_run.id, "in_progress")
    other_call = store.tool_calls.create("fetch", {}, run_id=other_run.id)
    store.runs.transition(other_run.id, "failed")
    for s in (mine, ran_on, theirs):
        store.messages.append(s.id, "user", "hi")
        _corrupt_session(store, s.id, message_count=5)
    store.messages.append(
        ran_on.id, "assistant", [{"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}]
    )

    scoped = store.check_consistency(agent_id="asst_mine")
    assert sorted((i.kind, i.object_id) for i in scoped.issues) == sorted(
        [
            ("tool_call_without_result", call.id),
            ("tool_use_without_result", store.messages.recent(ran_on.id, 1)[0].id),
            ("session_message_count", mine.id),
            ("session_message_count", ran_on.id),
        ]
    )
    theirs_report = store.check_consistency(agent_id="asst_theirs")
    assert sorted(i.object_id for i in theirs_report.issues) == sorted([other_call.id, theirs.id])
    assert store.check_consistency(agent_id="asst_nobody").ok
    assert len(store.check_consistency().issues) == 6  # the whole tenant: both agents


def test_an_agents_orphaned_rows_are_found(store: Store) -> None:
    s = store.sessions.create(agent_id="asst_o")
    kept = store.sessions.create(agent_id="asst_o")
    store.messages.append(kept.id, "user", "fine")
    message = store.messages.append(s.id, "assistant", "hello", agent_id="asst_o")
    run = store.runs.create("asst_o", session_id=s.id)
    call = store.tool_calls.create("f", {}, run_id=run.id, session_id=s.id)
    store.tool_calls.complete(call.id, "ok")
    event = store.events.append("run_started", run_id=run.id, session_id=s.id, agent_id="asst_o")
    assert store.check_consistency(agent_id="asst_o").ok
    _delete_without_foreign_keys(store, s.id)
    found = {i.object_id for i in store.check_consistency(agent_id="asst_o").issues}
    assert found == {
        f"runs:{run.id}",
        f"messages:{message.id}",
        f"tool_calls:{call.id}",
        f"events:{event.bookmark}",
    }
    kinds = {i.kind for i in store.check_consistency(agent_id="asst_o").issues}
    assert kinds == {"orphaned_row"}
    assert store.check_consistency(agent_id="asst_other").ok


async def test_async_check_for_one_agent(astore: AsyncStore, store: Store) -> None:
    s = store.sessions.create(agent_id="asst_a")
    _corrupt_session(store, s.id, message_count=3)
    report = await astore.check_consistency(agent_id="asst_a")
    assert [i.object_id for i in report.issues] == [s.id]
    assert (await astore.check_consistency(agent_id="asst_b")).ok
