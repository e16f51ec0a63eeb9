"""Transactions: after-commit hooks run once the outermost write commits, never on rollback."""

from __future__ import annotations

import pytest

from agentkeep import Conflict, NotFound, Store


def test_after_commit_runs_after_the_outermost_commit(store: Store) -> None:
    seen: list[str] = []
    with store.transaction():
        session = store.sessions.create(title="hooks")
        # Run after the commit, outside the transaction: a read of its own sees the row.
        store.after_commit(lambda: seen.append(store.sessions.get(session.id).title or ""))
        with store.transaction():  # a savepoint: its hook waits for the outer commit too
            store.after_commit(lambda: seen.append("inner"))
        assert seen == []
    assert seen == ["hooks", "inner"]


def test_after_commit_is_dropped_with_a_rollback(store: Store) -> None:
    seen: list[str] = []
    with store.transaction():
        store.after_commit(lambda: seen.append("kept"))
        with pytest.raises(ValueError), store.transaction():
            store.after_commit(lambda: seen.append("savepoint rolled back"))
            raise ValueError("roll the savepoint back")
    assert seen == ["kept"]
    with pytest.raises(ValueError), store.transaction():
        store.after_commit(lambda: seen.append("transaction rolled back"))
        raise ValueError("roll everything back")
    assert seen == ["kept"]
    store.after_commit(lambda: seen.append("no transaction: at once"))
    assert seen == ["kept", "no transaction: at once"]


def test_a_failing_hook_does_not_stop_the_others(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken() -> None:
        raise RuntimeError("hook failed")

    with store.transaction():
        store.sessions.create(title="committed anyway")
        store.after_commit(broken)
        store.after_commit(lambda: seen.append("second"))
    assert seen == ["second"]
    assert "after-commit hook failed" in caplog.text
    assert store.sessions.list().items[0].title == "committed anyway"


def test_reading_runs_several_reads_on_one_connection(store: Store) -> None:
    session = store.sessions.create(title="read")
    store.messages.append(session.id, "user", "hello")
    with store.reading():
        assert store.sessions.get(session.id).title == "read"
        assert [m.text for m in store.messages.list(session.id).items] == ["hello"]
    assert len(store.sessions.list().items) == 1


def test_a_write_inside_reading_is_a_conflict_and_writes_nothing(store: Store) -> None:
    session = store.sessions.create(title="read")
    store.messages.append(session.id, "user", "hello")
    with store.reading():
        with pytest.raises(Conflict, match=r"creating a session.*inside store\.reading\(\)"):
            store.sessions.create(title="not here")
        # An idempotent append retries a Conflict once (a concurrent writer's key): it is
        # not mistaken for a duplicate, it fails the same way.
        with pytest.raises(Conflict, match="read-only"):
            store.messages.append(session.id, "user", "nor here", idempotency_key="k1")
        with pytest.raises(Conflict, match="read-only"):
            store.state.put("ns", "key", {"v": 1})
        with (
            pytest.raises(Conflict, match=r"\(transaction\) inside store\.reading"),
            store.transaction(),
        ):
            pass  # pragma: no cover - never entered
        # The failures left the read usable.
        assert store.sessions.get(session.id).title == "read"
    assert [s.title for s in store.sessions.list().items] == ["read"]
    assert [m.text for m in store.messages.list(session.id).items] == ["hello"]
    with pytest.raises(NotFound):
        store.state.get("ns", "key")
