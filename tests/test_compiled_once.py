"""The statements of a run's every step are compiled once: none is rendered again at each call.

SQLAlchemy renders a statement with an expanding parameter (an ``IN`` list
bound as one list) again at every execution, and SQLite then prepares the new
text again: about 40 µs a statement, on the polls and claims of every worker,
every step's end and every event write. Their lists are written into the
statement, or are a fixed number of parameters, instead.
"""

from __future__ import annotations

from _statements import rendered_per_call

from agentkeep import Store


def test_a_runs_claims_steps_and_events_are_compiled_once(store: Store) -> None:
    thread = store.sessions.create(kind="thread")
    runs = [store.runs.create("asst_x", session_id=thread.id, status="queued") for _ in range(2)]
    with rendered_per_call(store) as rendered:
        assert store.runs.claimable(statuses=["queued", "requires_action"])
        claimed = store.runs.claim_many("w1", 5, statuses=["queued"])
        assert sorted(r.id for r in claimed) == sorted(r.id for r in runs)
        assert all(r.status == "in_progress" and r.worker_id == "w1" for r in claimed)
        step = store.run_steps.create(runs[0].id, "message_creation")
        done = store.run_steps.update(step.id, status="completed")
        assert done.status == "completed" and done.finished_at is not None
        with store.transaction():
            linked = store.events.append_many_linked(
                [{"type": "thread.run.step.completed", "run_id": r.id} for r in runs],
                [r.id for r in runs],
            )
        assert [e.session_id for e in linked.events] == [thread.id, thread.id]
        assert linked.before == {r.id: 0 for r in runs}
        assert not store.runs.claimable()
    assert rendered == []


def test_a_reports_statements_are_compiled_once_per_structure_with_each_calls_values(
    store: Store,
) -> None:
    """The reports' statements (``MessageSQL.adhoc``) are compiled once per structure and
    given each call's values: another tenant, window or list of the same structure reads
    its own rows, and a new structure is a new compile; lists are written out."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from agentkeep.store.message_sql import named
    from agentkeep.store.schema import llm_usage as u

    other = store.tenant(store.tenant_id + "_b")
    early, late = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)
    for s, n in ((store, 2), (other, 3)):
        for i in range(n):
            s.usage.record(provider="p", model=f"m{i}", created_at=late if i else early)
    sql = store._core.message_sql

    def calls(tenant: str, models: list[str]) -> int:
        stmt = (
            sa.select(sa.func.count().label("n"))
            .select_from(u)
            .where(u.c.tenant_id == tenant, u.c.model.in_(models))
        )
        found = store._core.run_read("counting", lambda cur: cur.execute(*_sent(stmt)).fetchall())
        return int(named(stmt, found)[0]["n"])

    def _sent(stmt: sa.Select[tuple[int]]) -> tuple[str, object]:
        made = sql.adhoc(stmt)
        return made.sql, made.params

    assert calls(store.tenant_id, ["m0", "m1"]) == 2
    kept = len(sql._adhoc)
    assert calls(other.tenant_id, ["m0", "m1"]) == 2
    assert calls(other.tenant_id, ["m2", "m1"]) == 2  # another list of the same length
    assert calls(other.tenant_id, ["m9", "m1"]) == 1
    assert len(sql._adhoc) == kept  # the same structure: no new compile
    assert calls(other.tenant_id, ["m0", "m1", "m2"]) == 3  # a longer list: its own values
    assert calls(store.tenant_id, ["m0"]) == 1
    windows = [store.usage.rollup("model", created_after=d) for d in (early, late)]
    assert [[r.key for r in w] for w in windows] == [["m0", "m1"], ["m1"]]
    assert [[r.key for r in other.usage.rollup("model", created_before=late)]] == [["m0"]]
