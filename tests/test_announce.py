"""The run engine's events are announced at the end of their transaction, in order."""

from __future__ import annotations

import pytest

from agentkeep import Store
from agentkeep.models import Run
from agentkeep.runner import ops


def _run(store: Store) -> Run:
    agent = store.agents.create(name="a", model="m")
    thread = store.sessions.create(kind="thread")
    return store.runs.create(agent.id, session_id=thread.id)


def _kinds(store: Store, run: Run) -> list[str]:
    return [e.type for e in store.events.list(run_id=run.id, limit=100)]


def test_announced_events_are_written_last_in_one_append_in_order(store: Store) -> None:
    run = _run(store)
    with store.transaction(savepoints=False):
        ops.announce(store, run, ("thread.run.in_progress", {"n": 1}))
        ops.announce(store, run, ("thread.run.step.created", {"n": 2}), ("custom", {"n": 3}))
        assert _kinds(store, run) == []  # not written yet: at the end of the transaction
    events = store.events.list(run_id=run.id, limit=100)
    assert [e.data["n"] for e in events] == [1, 2, 3]
    assert [e.bookmark for e in events] == list(range(events[0].bookmark, events[0].bookmark + 3))


def test_announced_in_a_rolled_back_savepoint_they_go_with_it(store: Store) -> None:
    run = _run(store)
    with store.transaction():
        ops.announce(store, run, ("custom", {"n": 1}))
        with pytest.raises(ValueError), store.transaction():
            ops.announce(store, run, ("custom", {"n": 2}))
            raise ValueError("roll the savepoint back")
        ops.announce(store, run, ("custom", {"n": 3}))
    assert [e.data["n"] for e in store.events.list(run_id=run.id, limit=100)] == [1, 3]
    with pytest.raises(ValueError), store.transaction():
        ops.announce(store, run, ("custom", {"n": 4}))
        raise ValueError("roll everything back")
    ops.announce(store, run, ("custom", {"n": 5}))  # no transaction: at once
    assert [e.data["n"] for e in store.events.list(run_id=run.id, limit=100)] == [1, 3, 5]
