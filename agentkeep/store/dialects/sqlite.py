"""SQLite: WAL mode, one writer per process, BEGIN IMMEDIATE for writes.

The message statements read the new ``last_seq`` with a SELECT of its own
(SQLite's RETURNING collects its rows in a temporary table first) and write
batches as multi-row INSERTs with positional parameters. The store's own connections
are one writer (behind the process's write lock, which ``Core.write()``
takes too) and a few pooled readers that map the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from agentkeep.errors import AgentkeepError, InvalidInput, SchemaError, StoreUnavailable
from agentkeep.store._errors import translate
from agentkeep.store._idle import Idle, forks
from agentkeep.store._steps import COUNT, Steps, Stmt
from agentkeep.store.dialects.base import Dialect, OwnConnections
from agentkeep.store.dialects.sqlite_async import SQLiteAsyncConnections
from agentkeep.store.message_sql import (
    MessageSQL,
    NewRow,
    Shape,
    StoredRow,
    WhileIdle,
    b,
    bind_rows,
    bump_session,
    chunks,
    const,
    row_params,
    row_values,
    shape_of,
)
from agentkeep.store.schema import messages as t
from agentkeep.store.schema import sessions as st

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "SQLiteDialect", "retry_locked"]

T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_BEGIN_DEADLINE_S = 120.0
WAL_AUTOCHECKPOINT_PAGES = 10_000
READER_MMAP_BYTES = 256 * 1024 * 1024
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}
_BUSY_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED")
#: Compiles the message INSERTs, whose parameters are bound by position.
_POSITIONAL = sa_sqlite.dialect(paramstyle="qmark")


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` (bare or wrapped by SQLAlchemy) is SQLite's "database is locked"."""
    orig = getattr(exc, "orig", exc)
    name = getattr(orig, "sqlite_errorname", None) or ""
    return isinstance(orig, sqlite3.OperationalError) and name.startswith(_BUSY_CODES)


def retry_locked(fn: Callable[[], T]) -> T:
    """Run ``fn``, waiting out "database is locked" beyond SQLite's own busy timeout."""
    deadline = time.monotonic() + SQLITE_BEGIN_DEADLINE_S
    delay = 0.001
    while True:
        try:
            return fn()
        except Exception as exc:
            if not _busy(exc):
                raise
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"SQLite stayed locked for {SQLITE_BEGIN_DEADLINE_S:.0f}s; another process holds the write lock"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


class SQLiteMessageSQL(MessageSQL):
    """The message statements on SQLite (named parameters, ``:name``)."""

    def __init__(self, insert: Callable[[sa.Table], Any]) -> None:
        super().__init__(sa_sqlite.dialect(paramstyle="named"), insert)
        of_session = (t.c.tenant_id == b("t"), t.c.session_id == b("s"))
        self.bump = self.compile(bump_session(b("n")))
        self.last_seq = self.compile(
            sa.select(st.c.last_seq).where(st.c.tenant_id == b("t"), st.c.id == b("s"))
        )
        # The n-th last seq from the index alone, then the rows from there on in
        # ascending order: SQLite then finds each next row of the table from the
        # previous one instead of searching the table from its root for every row
        # (a backward scan), and the rows come oldest first, as returned.
        nth_last = (
            sa.select(t.c.seq)
            .where(*of_session)
            .order_by(t.c.seq.desc())
            .limit(const(1))
            .offset(b("n") - const(1))
            .scalar_subquery()
        )
        window = (*of_session, t.c.seq >= sa.func.coalesce(nth_last, const(0)))
        self.recent_rows = self.compile(self.select_stored().where(*window).order_by(t.c.seq))
        chat = sa.select(t.c.role, t.c.content)
        self.recent_chat = self.compile(chat.where(*window).order_by(t.c.seq))
        self._inserts: dict[tuple[int, Shape], str] = {}
        self._keys: dict[int, str] = {}

    def rest(self) -> sa.ColumnElement[Any]:
        # metadata and extra are JSON objects: a length of 2 is '{}' (measured a
        # little cheaper per row than comparing both texts).
        f = sa.func
        empty = sa.and_(
            f.coalesce(t.c.run_id, t.c.agent_id, t.c.idempotency_key).is_(None),
            f.length(t.c.metadata) + f.length(t.c.extra) == const(4),
        )
        return sa.case(
            (empty, sa.null()),
            else_=f.json_array(
                t.c.run_id,
                t.c.agent_id,
                t.c.idempotency_key,
                f.json(t.c.metadata),
                f.json(t.c.extra),
            ),
        )

    def insert_rows(self, size: int, shape: Shape) -> str:
        """A ``size``-row INSERT binding the optional columns in ``shape``, by position.

        Positional (``?``) parameters: sqlite3 binds a named one by building its
        name as a string and looking it up in the dict, about four times the cost
        of taking the next item of a list (measured for 100 messages: 600 µs
        named, 200 µs positional). The list is :func:`bind_rows`'. With positional
        parameters every row's ``(?, ...)`` is the same text: the one-row
        statement is compiled once per shape and its row repeated (compiling a
        64-row INSERT took 7 ms).
        """
        sql = self._inserts.get((size, shape))
        if sql is None:
            one = self._inserts.get((1, shape))
            if one is None:
                compiled = sa.insert(t).values(row_values(shape)).compile(dialect=_POSITIONAL)
                if list(compiled.positiontup or ()) != row_params(shape):  # bind_rows' order
                    raise RuntimeError(f"unexpected parameter order: {compiled.positiontup}")
                one = self._inserts[1, shape] = str(compiled)
            head, values, row = one.partition(" VALUES ")
            sql = self._inserts[size, shape] = head + values + ", ".join([row] * size)
        return sql

    def find_keys(
        self, tenant_id: str, session_id: str, keys: Sequence[str]
    ) -> Steps[list[StoredRow]]:
        sql = self._keys.get(len(keys))
        if sql is None:
            marks: list[sa.BindParameter[Any]] = [b(f"k{i}") for i in range(len(keys))]
            stmt = self.select_stored().where(
                t.c.tenant_id == b("t"), t.c.session_id == b("s"), t.c.idempotency_key.in_(marks)
            )
            sql = self._keys[len(keys)] = self.compile(stmt)
        params: dict[str, Any] = {f"k{i}": k for i, k in enumerate(keys)}
        params.update(t=tenant_id, s=session_id)
        found = yield Stmt(sql, params)
        return [StoredRow._make(r) for r in found]

    def insert(
        self,
        tenant_id: str,
        session_id: str,
        rows: Sequence[NewRow],
        ids: Sequence[str],
        now: int,
        idle: WhileIdle | None = None,
    ) -> Steps[int | None]:
        n = len(rows)
        where = {"t": tenant_id, "s": session_id}
        if not (yield Stmt(self.bump, {"n": n, "now": now, **where}, COUNT)):
            return None
        last: int = (yield Stmt(self.last_seq, where))[0][0]
        first = last - n + 1
        shape = shape_of(rows)
        for start, size in chunks(n):
            params: list[Any] = []
            end = start + size
            bind_rows(
                params,
                tenant_id,
                session_id,
                rows[start:end],
                ids[start:end],
                first + start,
                now,
                shape,
            )
            yield Stmt(self.insert_rows(size, shape), params, COUNT)
        if idle is not None:  # in the write's transaction: raising rolls the append back
            yield from self.require_idle(tenant_id, session_id, idle)
        return last

    def recent(
        self, tenant_id: str, session_id: str, n: int, chat: bool = False
    ) -> Steps[list[Any] | None]:
        sql = self.recent_chat if chat else self.recent_rows
        rows: list[Any] = yield Stmt(sql, {"t": tenant_id, "s": session_id, "n": n})
        if not rows and not (yield from self.exists(tenant_id, session_id)):
            return None
        return rows


class SQLiteConnections(OwnConnections):
    """One writer connection per store (behind the dialect's write lock), pooled readers.

    ``memory://`` is one connection (the engine's, StaticPool): both use it.
    """

    def __init__(self, dialect: SQLiteDialect) -> None:
        self._dialect = dialect
        # The writer does not check foreign keys (see _connect_writer); ``memory://``'s one
        # connection, the engine's, does.
        self.cascades = dialect.memory
        self._lock = dialect.write_guard()
        self._synchronous = _SYNCHRONOUS[dialect.durability]
        self._writer: sqlite3.Connection | None = None
        self._writer_cur: sqlite3.Cursor | None = None
        self._writer_forks = -1
        self._memory: sqlite3.Connection | None = None
        self._readers = Idle(self._connect_reader, keep=max(dialect.pool_size, 1))

    def _connect(self) -> sqlite3.Connection:
        assert self._dialect.path is not None
        conn = sqlite3.connect(
            self._dialect.path,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
        )
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        # Readers map the file instead of copying each page into their own cache
        # with a read() call (measured: 4-8 µs less of ~57 for a 20-message read).
        # Only readers: pages a connection maps count in the process's RSS, and
        # the writer touches every page it appends to.
        conn.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        # This connection only inserts messages after ``UPDATE sessions ...`` found
        # their session in the same BEGIN IMMEDIATE transaction, and never
        # deletes: the foreign key check would look up a row already proven there.
        conn.execute("PRAGMA foreign_keys=OFF")
        if self._synchronous != "FULL":
            # Checkpoint every ~40 MB of WAL instead of ~4 MB: an append dirties a
            # few pages, mostly the same hot ones, and each checkpoint copies every
            # page once and syncs the file twice. Not at FULL: there every commit
            # syncs the WAL, and a WAL that keeps growing (instead of being reused
            # from its start after a checkpoint) makes each of those syncs a
            # metadata sync too (measured: about a quarter fewer appends per second).
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        return conn

    def memory_conn(self) -> sqlite3.Connection:
        if self._memory is None:
            with self._dialect.engine.connect() as conn:
                driver = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            self._memory = driver
        return self._memory

    def writer(self) -> sqlite3.Connection:
        if self._dialect.memory:
            return self.memory_conn()
        if self._writer is None or self._writer_forks != forks():
            self._writer = self._connect_writer()
            self._writer_cur = self._writer.cursor()
            self._writer_forks = forks()
        return self._writer

    def _writer_cursor(self) -> sqlite3.Cursor:
        """The writer's one cursor (``conn.execute`` makes and tracks a new one per call)."""
        conn = self.writer()
        if conn is self._writer and self._writer_cur is not None:
            return self._writer_cur
        return conn.cursor()

    def write(self, what: str, work: Callable[[Any], T]) -> T:
        """``work(cur)`` in one BEGIN IMMEDIATE transaction."""
        with self._lock:
            try:
                cur = self._writer_cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:  # locked past the busy timeout: wait more
                    retry_locked(lambda: cur.execute("BEGIN IMMEDIATE"))
                try:
                    result = work(cur)
                    cur.execute("COMMIT")
                except BaseException:
                    if cur.connection.in_transaction:
                        cur.execute("ROLLBACK")
                    raise
            except AgentkeepError:
                raise
            except sqlite3.Error as exc:
                raise translate(exc, what) from exc
        return result

    def read(self, what: str, work: Callable[[Any], T]) -> T:
        try:
            if self._dialect.memory:
                with self._lock:
                    return work(self.memory_conn().cursor())
            conn = self._readers.get(None)
            try:
                return work(conn.cursor())
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._readers.put(conn)
        except sqlite3.Error as exc:
            raise translate(exc, what) from exc

    def close(self) -> None:
        self._readers.close()
        writer, self._writer, self._writer_cur = self._writer, None, None
        if writer is not None and self._writer_forks == forks():
            with contextlib.suppress(Exception):
                writer.close()
        self._memory = None  # owned by the engine


class SQLiteDialect(Dialect):
    """SQLite in WAL mode, one writer per process, BEGIN IMMEDIATE for writes."""

    name = "sqlite"
    embedded = True

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.path: str | None = None
        self.memory = url.startswith("memory://") or url in ("sqlite://", "sqlite:///:memory:")
        if not self.memory:
            raw = url.split("///", 1)[1] if "///" in url else ""
            if not raw:
                raise InvalidInput(
                    f"no file path in {url!r}; use sqlite:///path/to.db", field="url"
                )
            self.path = os.path.abspath(raw)
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.RLock()
        super().__init__(url, **kwargs)

    def create_message_sql(self) -> MessageSQL:
        return SQLiteMessageSQL(self.insert)

    def own_connections(self) -> SQLiteConnections:
        return SQLiteConnections(self)

    def async_connections(self, own: OwnConnections) -> SQLiteAsyncConnections:
        # At full every commit is an fsync: a write runs inline only when it is alone,
        # otherwise the writer thread commits it with the others queued (group commit).
        full = self.durability == "full" and not self.memory
        return SQLiteAsyncConnections(own.write, own.read, self._write_lock, full=full)

    def create_engine(self) -> Engine:
        synchronous = _SYNCHRONOUS[self.durability]
        if self.memory:
            engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = sa.create_engine(
                f"sqlite:///{self.path}",
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                **self.pool_options(),
            )
        memory = self.memory

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                retry_locked(lambda: cur.execute("PRAGMA journal_mode=WAL"))
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = (
                "BEGIN IMMEDIATE"
                if conn.get_execution_options().get("agentkeep_write")
                else "BEGIN"
            )
            retry_locked(lambda: conn.exec_driver_sql(mode))

        return engine

    def write_guard(self) -> AbstractContextManager[object]:
        return self._write_lock

    def read_guard(self) -> AbstractContextManager[object]:
        # One shared connection in memory: reads must not interleave with a write.
        return self._write_lock if self.memory else nullcontext()

    @contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[object]:
        if self.path is None:
            yield None
            return
        with open(f"{self.path}.migrate-lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield None
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    @contextmanager
    def schema_change(conn: Connection) -> Iterator[object]:
        """Foreign keys off while a migration runs.

        Alembic rebuilds a SQLite table to alter it (copy, drop, rename); with
        foreign keys on, dropping a parent would cascade-delete its children.
        The pragma only takes effect outside a transaction, so it is set on
        the driver connection before the migration begins.
        """
        raw = conn.connection.driver_connection
        assert raw is not None and not conn.in_transaction()
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            yield None
        finally:
            raw.execute("PRAGMA foreign_keys=ON")

    @staticmethod
    def verify_schema_change(conn: Connection) -> None:
        """Refuse to commit a migration that left a dangling foreign key."""
        bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if bad:
            raise SchemaError(f"the migration left rows with dangling foreign keys: {bad[:5]}")

    @staticmethod
    @contextmanager
    def secure_delete(conn: Connection) -> Iterator[object]:
        """``PRAGMA secure_delete``: deleted content is overwritten with zeros, not just freed."""
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
        try:
            yield None
        finally:
            conn.exec_driver_sql("PRAGMA secure_delete=OFF")

    def flush_deleted(self, tables: list[str]) -> None:
        """Checkpoint the WAL into the database and truncate it (old page images gone)."""
        if self.memory:
            return
        deadline = time.monotonic() + SQLITE_BEGIN_DEADLINE_S
        while True:
            with self._write_lock, self.engine.connect() as conn:
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                conn.commit()
            if busy is not None and busy[0] == 0:
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    "the erasure is committed, but readers kept the WAL from being checkpointed; "
                    "run the erasure again when the database is quieter"
                )
            time.sleep(0.05)

    def insert(self, table: sa.Table) -> Any:
        return sa_sqlite.insert(table)

    def size_bytes(self, conn: Connection) -> int:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar() or 0
        size = conn.exec_driver_sql("PRAGMA page_size").scalar() or 0
        wal = f"{self.path}-wal" if self.path else None
        return int(pages) * int(size) + (os.path.getsize(wal) if wal and os.path.exists(wal) else 0)

    def writable(self, conn: Connection) -> tuple[bool, str | None]:
        if self.path is None:
            return True, None
        directory = os.path.dirname(self.path)
        if not os.access(self.path, os.W_OK):
            return False, f"the database file {self.path} is not writable"
        if not os.access(directory, os.W_OK):
            return False, f"the directory {directory} (for the WAL and lock files) is not writable"
        return True, None

    def describe(self) -> str:
        return "memory" if self.memory else "sqlite"
