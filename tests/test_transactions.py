"""Transactions: after-commit hooks run once the outermost write commits, never on rollback."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from _statements import sent_statements

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


def test_a_caught_failure_inside_a_transaction_keeps_the_other_calls(store: Store) -> None:
    kept = store.sessions.create(title="taken")
    with store.transaction():
        store.sessions.create(title="before")
        with pytest.raises(Conflict):  # its savepoint undoes it alone
            store.sessions.create(id=kept.id, title="duplicate")
        store.sessions.create(title="after")
    titles = sorted(s.title or "" for s in store.sessions.list().items)
    assert titles == ["after", "before", "taken"]


def test_without_savepoints_a_caught_failure_rolls_the_whole_transaction_back(
    store: Store,
) -> None:
    kept = store.sessions.create(title="taken")
    with (
        pytest.raises(Conflict, match="earlier in this transaction"),
        store.transaction(savepoints=False),
    ):
        store.sessions.create(title="before")
        store.after_commit(lambda: pytest.fail("a rolled-back transaction ran its hook"))
        with pytest.raises(Conflict):
            store.sessions.create(id=kept.id, title="duplicate")
        store.sessions.create(title="after")  # refused: the transaction can only roll back
    assert [s.title for s in store.sessions.list().items] == ["taken"]


def test_without_savepoints_a_caught_failure_at_the_end_still_rolls_back(store: Store) -> None:
    kept = store.sessions.create(title="taken")
    with (
        pytest.raises(Conflict, match="earlier in this transaction"),
        store.transaction(savepoints=False),
    ):
        store.sessions.create(title="before")
        with pytest.raises(Conflict):
            store.sessions.create(id=kept.id, title="duplicate")
    assert [s.title for s in store.sessions.list().items] == ["taken"]


def test_without_savepoints_a_failed_message_write_fails_the_whole_transaction(
    store: Store,
) -> None:
    """The message operations' writes share such a transaction too (``Core.run_write``):
    one that fails there, even caught, leaves the transaction only able to roll back."""
    session = store.sessions.create(title="kept")
    taken = store.messages.append(session.id, "user", "first")
    with (
        pytest.raises(Conflict, match="earlier in this transaction"),
        store.transaction(savepoints=False),
    ):
        store.messages.append(session.id, "user", "before")
        with pytest.raises(Conflict):
            store.messages.append(session.id, "user", "duplicate id", id=taken.id)
        store.messages.append(session.id, "user", "after")  # refused
    assert [m.text for m in store.messages.list(session.id).items] == ["first"]
    assert store.sessions.get(session.id).last_seq == 1


def test_a_savepoint_inside_a_transaction_without_savepoints_undoes_its_failure(
    store: Store,
) -> None:
    kept = store.sessions.create(title="taken")
    with store.transaction(savepoints=False):
        store.sessions.create(title="before")
        with pytest.raises(Conflict), store.transaction(savepoints=True):
            store.sessions.create(title="undone with its savepoint")
            store.sessions.create(id=kept.id, title="duplicate")
        store.sessions.create(title="after")
    titles = sorted(s.title or "" for s in store.sessions.list().items)
    assert titles == ["after", "before", "taken"]


def test_without_savepoints_the_calls_inside_take_none(store: Store) -> None:
    """Whichever layer a call sends its statements through (the message operations and a
    session's create go to the driver's cursor, an update through SQLAlchemy)."""
    with sent_statements(store) as statements:
        with store.transaction(savepoints=False):
            session = store.sessions.create(title="one")
            store.sessions.update(session.id, title="two")
            store.messages.append(session.id, "user", "hello")
        assert [s for s in statements if "INSERT INTO MESSAGES" in s.upper()]
        assert not [s for s in statements if "SAVEPOINT" in s.upper()]
        with store.transaction():
            store.messages.append(session.id, "user", "again")
        assert [s for s in statements if s.upper().startswith("SAVEPOINT")]


def test_reads_on_postgresql_take_no_transaction(_postgres_store: Store) -> None:
    """No BEGIN and ROLLBACK round trips around a read: each statement is its own transaction.

    (At READ COMMITTED each statement of a transaction sees what was committed
    before it started, so a ``reading()`` block sees the same either way.)
    """
    with _postgres_store.reading(), _postgres_store._core.read() as conn:
        now = sa.text("SELECT now()")
        first = conn.execute(now).scalar_one()
        while conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one() == first:
            pass
        assert conn.execute(now).scalar_one() > first  # now() is the transaction's start
    with _postgres_store.transaction(), _postgres_store._core.read() as conn:
        first = conn.execute(now).scalar_one()
        while conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one() == first:
            pass
        assert conn.execute(now).scalar_one() == first  # a write is one transaction


def test_before_commit_writes_last_in_the_transaction_and_goes_with_a_rollback(
    store: Store,
) -> None:
    core = store._core
    order: list[str] = []

    def last_write() -> None:
        order.append("last")
        store.sessions.create(title="written last")

    with store.transaction():
        core.before_commit(last_write)
        store.sessions.create(title="first")
        order.append("body")
        with pytest.raises(ValueError), store.transaction():  # a savepoint: its own go with it
            core.before_commit(lambda: order.append("rolled back"))
            raise ValueError("roll the savepoint back")
    assert order == ["body", "last"]
    assert {s.title for s in store.sessions.list().items} == {"first", "written last"}

    def broken() -> None:
        raise RuntimeError("the last write failed")

    with pytest.raises(RuntimeError), store.transaction():
        store.sessions.create(title="rolled back with it")
        core.before_commit(broken)
    assert len(store.sessions.list().items) == 2
    core.before_commit(lambda: order.append("no transaction: at once"))
    assert order[-1] == "no transaction: at once"


_flushed: list[list[str]] = []


def _flush_titles(titles: list[str]) -> None:
    _flushed.append(list(titles))


def test_gather_before_commit_flushes_once_with_the_items_kept(store: Store) -> None:
    """The items a transaction gathers reach their flush once, at its end, minus rolled-back ones."""
    _flushed.clear()
    with store.transaction():
        store.gather_before_commit(_flush_titles, "a")
        store.sessions.create(title="body")
        with pytest.raises(ValueError), store.transaction():  # a savepoint: its item goes
            store.gather_before_commit(_flush_titles, "rolled back")
            raise ValueError("roll the savepoint back")
        store.gather_before_commit(_flush_titles, "b")
        assert _flushed == []  # not before the end
    assert _flushed == [["a", "b"]]
    store.gather_before_commit(_flush_titles, "alone")  # outside a transaction: at once
    assert _flushed == [["a", "b"], ["alone"]]

    def broken(items: list[str]) -> None:
        raise RuntimeError(f"could not write {items}")

    with pytest.raises(RuntimeError, match="could not write"), store.transaction():
        store.sessions.create(title="rolled back with the flush")
        store.gather_before_commit(broken, "x")
    assert [s.title for s in store.sessions.list().items] == ["body"]
    with store.transaction():  # the next transaction gathers afresh
        store.gather_before_commit(_flush_titles, "c")
    assert _flushed[-1] == ["c"]


def test_a_run_on_a_session_the_same_write_made_reads_no_session(store: Store) -> None:
    """The write inserted the session, so it exists until the write ends: the run's
    check of it (a read, locked on PostgreSQL) is skipped. A session made elsewhere is
    still checked."""
    older = store.sessions.create()
    with sent_statements(store) as statements:
        with store.transaction(savepoints=False):
            session = store.sessions.create(kind="thread")
            store.runs.create("asst_x", session_id=session.id)
        assert not [s for s in statements if _reads_sessions(s)], statements
        with store.transaction(savepoints=False):
            store.runs.create("asst_x", session_id=older.id)
        assert [s for s in statements if _reads_sessions(s)], statements


def _reads_sessions(statement: str) -> bool:
    return statement.lstrip().upper().startswith("SELECT") and "FROM sessions" in statement


def test_a_session_a_rolled_back_savepoint_made_is_not_found_by_a_run_after_it(
    store: Store,
) -> None:
    with store.transaction():
        made: list[str] = []
        with pytest.raises(RuntimeError), store.transaction():
            made.append(store.sessions.create().id)
            raise RuntimeError("roll the savepoint back")
        with pytest.raises(NotFound) as caught:
            store.runs.create("asst_x", session_id=made[0])
        assert caught.value.kind == "session"
        kept = store.sessions.create()
        assert store.runs.create("asst_x", session_id=kept.id).session_id == kept.id
    assert store.runs.list(session_id=kept.id).items
