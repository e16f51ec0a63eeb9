"""Failures of the database itself become agentkeep errors, and nothing is half-written.

A SQLite file locked past the busy timeout, an exhausted pool, a missing table, a
connection lost inside a transaction, a full disk, a read-only file, a LISTEN
connection that dies, an advisory lock whose connection dies: each raises an
error of the tree in ``agentkeep.errors`` (never a driver error), and the store
works again once the cause is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _postgres import terminate_backends

import agentkeep
from agentkeep import Store
from agentkeep.errors import AgentkeepError, LockTimeout, SchemaError, StoreUnavailable
from agentkeep.store.dialects import postgresql as pg_dialect
from agentkeep.store.dialects import sqlite as sqlite_dialect
from agentkeep.store.dialects.postgresql_async import PostgresAsyncConnections

pytestmark = pytest.mark.slow


def _until(condition: Callable[[], bool], what: str, tries: int = 1000) -> None:
    for _ in range(tries):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"never: {what}")


def _all_texts(store: Store, session_id: str) -> list[str]:
    return [m.text for m in store.messages.list(session_id, limit=1000).items]


# -- SQLite: locked past the busy timeout ---------------------------------------------------------


def test_sqlite_locked_past_the_busy_timeout_is_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shorter waits than the 30 s busy timeout and 120 s BEGIN deadline of production.
    monkeypatch.setattr(sqlite_dialect, "SQLITE_BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(sqlite_dialect, "SQLITE_BEGIN_DEADLINE_S", 0.5)
    path = tmp_path / "locked.db"
    with agentkeep.connect(f"sqlite:///{path}") as store:
        session = store.sessions.create()
        store.messages.append(session.id, "user", "before")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
        try:
            with pytest.raises(StoreUnavailable):
                store.sessions.create()  # the SQLAlchemy path
            with pytest.raises(StoreUnavailable):
                store.messages.append(session.id, "user", "during")  # the store's own writer
            with pytest.raises(StoreUnavailable), store.transaction():
                store.messages.append(session.id, "user", "during")
        finally:
            other.rollback()
            other.close()
        assert store.messages.append(session.id, "user", "after").seq == 2
        assert _all_texts(store, session.id) == ["before", "after"]
        assert store.check_consistency().ok


# -- pool exhaustion ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_exhausted_pool_is_store_unavailable(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/pool.db"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    store = agentkeep.connect(url, pool_size=1, max_overflow=0).tenant("pool_exhaustion")
    try:
        store._core.engine.pool._timeout = 0.2  # type: ignore[attr-defined]
        session = store.sessions.create()
        failed: list[BaseException] = []

        def other_thread() -> None:
            try:  # a read through SQLAlchemy's pool (most reads are on the driver's own)
                store.backups.list()
            except BaseException as exc:
                failed.append(exc)

        with store.transaction():  # holds the pool's only connection
            store.sessions.update(session.id, title="held")
            th = threading.Thread(target=other_thread)
            th.start()
            th.join(30)
        assert len(failed) == 1 and isinstance(failed[0], StoreUnavailable), failed
        assert store.sessions.get(session.id).title == "held"  # the pool is usable again
    finally:
        store.close()


def test_the_message_connections_of_a_process_stay_within_its_pool_size(
    postgres_url: str,
) -> None:
    """PostgreSQL: the message statements' own connections (outside SQLAlchemy's pool) are
    at most ``pool_size + max_overflow`` in use at once; one more waits, then is refused."""
    store = agentkeep.connect(postgres_url, pool_size=1, max_overflow=1).tenant("own_budget")
    own = store._core.own
    try:
        assert isinstance(own, pg_dialect.PostgresConnections) and own.limit == 2
        session = store.sessions.create()
        store.messages.append(session.id, "user", "before")
        own._timeout = 0.3
        holding = [threading.Event(), threading.Event()]
        release = threading.Event()

        def hold(started: threading.Event) -> None:
            def work(cur: Any) -> None:
                cur.execute("SELECT 1")
                started.set()
                release.wait(30)

            own.read("holding", work)

        holders = [threading.Thread(target=hold, args=(e,)) for e in holding]
        for th in holders:
            th.start()
        try:
            for started in holding:
                assert started.wait(30)
            with pytest.raises(StoreUnavailable, match="AGENTKEEP_POOL_SIZE") as refused:
                store.messages.append(session.id, "user", "refused")
            assert "all 2 message connections" in str(refused.value)
        finally:
            release.set()
            for th in holders:
                th.join(30)
        own._timeout = 30.0

        # Under contention every call waits its turn: no refusal, no gap, nothing lost.
        def appender(i: int) -> None:
            for j in range(10):
                store.messages.append(session.id, "user", f"{i}-{j}")

        workers = [threading.Thread(target=appender, args=(i,)) for i in range(12)]
        for th in workers:
            th.start()
        for th in workers:
            th.join(60)
        stored = store.messages.list(session.id, limit=200).items
        assert [m.seq for m in stored] == list(range(1, 122))
        assert sorted(m.text for m in stored[1:]) == sorted(
            f"{i}-{j}" for i in range(12) for j in range(10)
        )
    finally:
        store.close()


async def test_the_async_connections_of_a_loop_wait_for_the_pool_timeout_then_refuse(
    postgres_url: str,
) -> None:
    """PostgreSQL's async path: with every place of the loop taken, a call waits
    ``AGENTKEEP_POOL_TIMEOUT`` and is refused naming the settings; a place freed while
    it waits is taken (tasks queue, they are not refused at once)."""
    astore = (await agentkeep.aconnect(postgres_url, pool_size=1, max_overflow=0)).tenant(
        "async_budget"
    )
    try:
        session = await astore.sessions.create()
        await astore.messages.append(session.id, "user", "before")
        conns = astore.sync._core.aio
        assert isinstance(conns, PostgresAsyncConnections)
        conns.timeout = 0.3
        mine = conns._for_loop()
        await mine.slots.acquire()  # the loop's only place, held here
        try:
            with pytest.raises(StoreUnavailable, match="AGENTKEEP_POOL_SIZE") as refused:
                await astore.messages.recent(session.id)
            assert "all 1 async connections" in str(refused.value)
            conns.timeout = 30.0
            waiting = asyncio.ensure_future(astore.messages.recent(session.id))
            for _ in range(100):  # until the call waits for the place
                if waiting.done() or len(mine.slots._waiters or ()) == 1:
                    break
                await asyncio.sleep(0.01)
            assert not waiting.done()
        finally:
            mine.slots.release()
        assert [m.text for m in await waiting] == ["before"]
        assert [m.text for m in await astore.messages.recent(session.id)] == ["before"]
    finally:
        await astore.close()


# -- a missing table ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_missing_table_is_schema_error(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/schema.db"
    else:
        url = str(request.getfixturevalue("postgres_server").new_database())
    agentkeep.connect(url, auto_migrate=True).close()
    with agentkeep.connect(url) as store:
        session = store.sessions.create()
        store.messages.append(session.id, "user", "hi")
        with store._core.write() as conn:
            conn.exec_driver_sql("DROP TABLE messages")
        calls: dict[str, Callable[[], object]] = {
            "append": lambda: store.messages.append(session.id, "user", "x"),
            "append_many": lambda: store.messages.append_many(
                session.id, [{"role": "user", "content": "x"}]
            ),
            "recent": lambda: store.messages.recent(session.id),
            "history": lambda: store.messages.history(session.id),
            "list": lambda: store.messages.list(session.id),
            "append in a transaction": lambda: _in_transaction(
                store, lambda: store.messages.append(session.id, "user", "x")
            ),
        }
        for name, call in calls.items():
            with pytest.raises(SchemaError):
                call()
                pytest.fail(f"{name} did not fail")
        assert store.sessions.get(session.id).id == session.id  # other tables still answer


def _in_transaction(store: Store, call: Callable[[], object]) -> object:
    with store.transaction():
        return call()


# -- PostgreSQL: a connection lost inside a transaction --------------------------------------------


def _terminate(url: str, where: str, args: tuple[Any, ...] = ()) -> list[int]:
    """End the backends of ``url``'s database matching ``where``; wait until they are gone."""
    return [pid for pid, ended in terminate_backends(url, where, args) if ended]


def test_a_connection_lost_inside_a_transaction_is_store_unavailable(postgres_url: str) -> None:
    store = agentkeep.connect(postgres_url).tenant("lost_in_transaction")
    try:
        session = store.sessions.create()
        with pytest.raises(StoreUnavailable), store.transaction():
            store.messages.append(session.id, "user", "lost")
            with store._core.read() as conn:
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            assert _terminate(postgres_url, "pid = %s", (pid,)) == [pid]
            store.messages.append(session.id, "user", "also lost")
        # Nothing of the transaction was kept, and the store works again.
        assert _all_texts(store, session.id) == []
        store.messages.append(session.id, "user", "after")
        assert _all_texts(store, session.id) == ["after"]
        assert store.sessions.get(session.id).message_count == 1
    finally:
        store.close()


# -- a full disk, a read-only file --------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (CI runs as root; failing to mount fails the test)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (needs root): {done.stderr}", pytrace=False)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` with one file; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


def test_a_full_disk_is_store_unavailable_and_loses_nothing(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk}/full.db"
    with agentkeep.connect(url) as store:
        session = store.sessions.create()
        store.messages.append(session.id, "user", "before")
        filler = _fill(small_disk)
        stored = 1
        with pytest.raises(StoreUnavailable):
            for i in range(10_000):
                store.messages.append(session.id, "user", f"{i}-" + "x" * 2000)
                stored += 1
        with pytest.raises(AgentkeepError):
            store.sessions.create(metadata={"k": "x" * 2000})
        # What was acknowledged is there, gapless; the failed write left nothing behind.
        current = store.sessions.get(session.id)
        assert (current.message_count, current.last_seq) == (stored, stored)
        filler.unlink()
        assert store.messages.append(session.id, "user", "after").seq == stored + 1
        assert store.check_consistency().ok
    with agentkeep.connect(url) as store:
        assert store.sessions.get(session.id).message_count == stored + 1


def test_a_read_only_database_is_store_unavailable(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk}/ro.db"
    with agentkeep.connect(url) as store:
        session = store.sessions.create()
        store.messages.append(session.id, "user", "kept")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        # Opening it (SQLite needs its WAL index), or the first write, fails.
        with pytest.raises(AgentkeepError) as err, agentkeep.connect(url) as store:
            store.messages.append(session.id, "user", "refused")
        assert isinstance(err.value, (StoreUnavailable, SchemaError)), repr(err.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    with agentkeep.connect(url) as store:
        assert _all_texts(store, session.id) == ["kept"]


# -- PostgreSQL: the LISTEN connection dies, and listens again ----------------------------------


def test_a_lost_listen_connection_is_replaced(
    postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(postgres_server.new_database())
    monkeypatch.setattr(pg_dialect._PostgresListener, "RETRY_S", 0.0)
    with agentkeep.connect(url, auto_migrate=True) as store:
        got: list[int] = []
        cancel = threading.Event()

        def follow() -> None:
            for event in store.events.follow(poll_interval=30, cancel=cancel):
                got.append(event.data["n"])

        def listening() -> list[int]:
            with psycopg.connect(url, autocommit=True) as admin:
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'agentkeep-listen'"
                ).fetchall()
            return [pid for (pid,) in rows]

        th = threading.Thread(target=follow)
        th.start()
        try:
            _until(lambda: len(listening()) == 1, "the follower listens")
            store.events.append("custom", data={"n": 1})
            _until(lambda: got == [1], "the first event arrives")
            first = listening()
            assert _terminate(url, "application_name = 'agentkeep-listen'") == first
            # The follower notices the lost connection and listens on a new one ...
            _until(lambda: len(listening()) == 1 and listening() != first, "a new LISTEN")
            # ... which a NOTIFY reaches (the 30 s poll interval could not).
            store.events.append("custom", data={"n": 2})
            _until(lambda: got == [1, 2], "the event after the reconnect arrives", tries=1500)
        finally:
            cancel.set()
            th.join(10)


# -- PostgreSQL: advisory locks whose connection dies ---------------------------------------------


def test_an_advisory_lock_whose_connection_dies(postgres_url: str) -> None:
    store = agentkeep.connect(postgres_url).tenant("lock_failures")
    try:
        held = threading.Event()
        release = threading.Event()
        failures: list[BaseException] = []

        def holder() -> None:
            with store.lock("shaky", wait=5):
                held.set()
                release.wait(30)

        def waiter() -> None:
            try:
                with store.lock("shaky", wait=60):
                    pass
            except BaseException as exc:
                failures.append(exc)

        first = threading.Thread(target=holder)
        first.start()
        assert held.wait(10)
        second = threading.Thread(target=waiter)
        second.start()

        def waiting_pid() -> int | None:
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                row = admin.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ).fetchone()
            return row[0] if row else None

        _until(lambda: waiting_pid() is not None, "the waiter blocks in pg_advisory_lock")
        pid = waiting_pid()
        # The waiter's connection dies while it waits: a StoreUnavailable, not a LockTimeout.
        _terminate(postgres_url, "pid = %s", (pid,))
        second.join(30)
        assert len(failures) == 1, failures
        assert isinstance(failures[0], StoreUnavailable) and not isinstance(
            failures[0], LockTimeout
        ), repr(failures[0])

        # The holder's connection dies inside its block: leaving the block does not raise,
        # and the lock is free (the server released it with the session).
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchall()
        _terminate(postgres_url, "pid = ANY(%s)", ([p for (p,) in rows],))
        release.set()
        first.join(30)
        with store.lock("shaky", wait=5):
            pass
    finally:
        store.close()


# -- an idempotent append inside a transaction ----------------------------------------------------


def test_an_idempotent_append_inside_a_transaction(store: Store) -> None:
    session = store.sessions.create()
    with store.transaction():
        first = store.messages.append(session.id, "user", "once", idempotency_key="k1")
        again = store.messages.append(session.id, "user", "once", idempotency_key="k1")
        assert again == first
        many = store.messages.append_many(
            session.id,
            [
                {"role": "user", "content": "once", "idempotency_key": "k1"},
                {"role": "user", "content": "two", "idempotency_key": "k2"},
            ],
        )
        assert many[0] == first and many[1].seq == 2
    assert store.messages.append(session.id, "user", "once", idempotency_key="k1") == first
    assert _all_texts(store, session.id) == ["once", "two"]
    assert store.sessions.get(session.id).message_count == 2

    # Rolled back: the key is free again, and the seq too.
    with pytest.raises(RuntimeError), store.transaction():
        store.messages.append(session.id, "user", "gone", idempotency_key="k3")
        raise RuntimeError("abort")
    kept = store.messages.append(session.id, "user", "kept", idempotency_key="k3")
    assert (kept.text, kept.seq) == ("kept", 3)


def test_a_pooled_connection_the_server_ended_is_replaced(postgres_url: str) -> None:
    """A connection ended while idle in the pool is found closed at checkout, not used."""
    store = agentkeep.connect(postgres_url).tenant("ended_while_pooled")
    try:
        session = store.sessions.create()
        with store._core.read() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert _terminate(postgres_url, "pid = %s", (pid,)) == [pid]
        assert store.sessions.get(session.id).id == session.id  # a pooled (SQLAlchemy) read
    finally:
        store.close()
