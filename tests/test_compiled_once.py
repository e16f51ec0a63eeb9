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
