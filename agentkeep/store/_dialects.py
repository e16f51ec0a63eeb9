"""What differs between SQLite and PostgreSQL, one class per dialect.

Business code asks for capabilities (``skip_locked``, ``write_guard``,
``serialize_appends``, ``migration_lock``, ``notify``/``listen``,
``session_locks``), never for a dialect's name.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from agentkeep.errors import InvalidInput, SchemaError, StoreUnavailable

__all__ = ["Dialect", "Listener", "PostgresDialect", "SQLiteDialect", "dialect_for_url"]

DEFAULT_URL = "sqlite:///./data/agentkeep.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_BEGIN_DEADLINE_S = 120.0


def lock_key(*parts: str) -> int:
    """A signed 64-bit key for a PostgreSQL advisory lock."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Listener:
    """Wakes a follower when something was written; this one only sleeps (polling).

    ``wait(timeout)`` returns True when a notification arrived before the
    timeout (the caller polls afterwards in any case).
    """

    notifying = False

    def wait(self, timeout: float) -> bool:
        if timeout > 0:
            time.sleep(timeout)
        return False

    def close(self) -> None:
        pass


class Dialect:
    """Capabilities of one backend; subclasses fill them in."""

    name: str
    skip_locked: bool = False
    embedded: bool = False
    supports_listen: bool = False
    session_locks: bool = False

    def __init__(
        self, url: str, *, pool_size: int = 5, max_overflow: int = 10, durability: str = "normal"
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.durability = durability
        self.engine = self.create_engine()

    def create_engine(self) -> Engine:
        raise NotImplementedError

    def write_guard(self) -> AbstractContextManager[object]:
        """Held around every write transaction in this process."""
        return nullcontext()

    def read_guard(self) -> AbstractContextManager[object]:
        """Held around every read in this process."""
        return nullcontext()

    def serialize_appends(self, conn: Connection, tenant_id: str, scope: str) -> None:
        """Make the rest of the transaction the only writer of ``scope``."""

    def migration_lock(self, conn: Connection) -> AbstractContextManager[object]:
        """Held while a process creates or upgrades the schema."""
        return nullcontext()

    @staticmethod
    def schema_change(conn: Connection) -> AbstractContextManager[object]:
        """Held around a migration's transaction on ``conn`` (see SQLite's)."""
        return nullcontext()

    @staticmethod
    def verify_schema_change(conn: Connection) -> None:
        """Checked inside a migration's transaction, before it commits."""

    def notify(self, conn: Connection, channel: str, payload: str) -> None:
        """Wake the listeners of ``channel`` when ``conn``'s transaction commits."""

    def listen(self, channel: str) -> Listener:
        """A listener for ``channel`` (with ``supports_listen``; else one that polls)."""
        return Listener()

    def acquire_session_lock(self, conn: Connection, key: int, wait: float) -> bool:
        """Take the lock ``key`` for ``conn``'s lifetime (``session_locks``); False after ``wait`` s."""
        raise NotImplementedError

    def release_session_lock(self, conn: Connection, key: int) -> bool:
        """Release a lock taken with ``acquire_session_lock``; False if it was not held."""
        raise NotImplementedError

    def insert(self, table: sa.Table) -> Any:
        """An INSERT of ``table`` that offers ``on_conflict_do_nothing`` / ``_do_update``."""
        return sqlite_insert(table)

    def consistent_read(self, conn: Connection) -> None:
        """Make ``conn``'s next transaction one snapshot of the database (before its first read).

        SQLite: a deferred BEGIN already reads one WAL snapshot.
        """

    def secure_delete(self, conn: Connection) -> AbstractContextManager[object]:
        """Held around deletes whose content must not stay in the database's files."""
        return nullcontext()

    def flush_deleted(self, tables: list[str]) -> None:
        """After such deletes committed: make the files drop what they held (see each dialect)."""

    def conninfo(self) -> str:
        """The URL a driver or a command-line tool (``pg_dump``) connects with."""
        return self.url

    def describe(self) -> str:
        return self.name

    def dispose(self) -> None:
        self.engine.dispose()


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

    def create_engine(self) -> Engine:
        synchronous = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}[self.durability]
        if self.memory:
            engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = sa.create_engine(
                f"sqlite:///{self.path}",
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                pool_size=self.pool_size,
                max_overflow=self.max_overflow,
            )
        memory = self.memory

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                _retry_locked(lambda: cur.execute("PRAGMA journal_mode=WAL"))
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
            _retry_locked(lambda: conn.exec_driver_sql(mode))

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

    def describe(self) -> str:
        return "memory" if self.memory else "sqlite"


def _retry_locked(fn: Any) -> Any:
    """Run ``fn``, waiting out "database is locked" beyond SQLite's own busy timeout."""
    deadline = time.monotonic() + SQLITE_BEGIN_DEADLINE_S
    delay = 0.001
    while True:
        try:
            return fn()
        except Exception as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"SQLite stayed locked for {SQLITE_BEGIN_DEADLINE_S:.0f}s; another process holds the write lock"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


class _PostgresListener(Listener):
    """LISTEN on a dedicated autocommit connection (outside the pool).

    If the connection cannot be made or is lost, it sleeps instead (the
    follower polls) and tries to listen again a few seconds later.
    """

    RETRY_S = 5.0

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._closed = False
        self._connect()

    @property
    def notifying(self) -> bool:  # type: ignore[override]
        return self._conn is not None

    def _connect(self) -> None:
        self._retry_at = time.monotonic() + self.RETRY_S
        try:
            conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=10,
                application_name="agentkeep-listen",
            )
        except psycopg.Error:
            return
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error:
            conn.close()
            return
        self._conn = conn

    def wait(self, timeout: float) -> bool:
        if self._closed:
            return False
        if self._conn is None:
            if time.monotonic() >= self._retry_at:
                self._connect()
            if self._conn is None:
                return super().wait(timeout)
        try:
            woken = False
            for _ in self._conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
                woken = True
            if woken:  # drain what else is queued: one poll answers them all
                for _ in self._conn.notifies(timeout=0.0):
                    pass
            return woken
        except psycopg.Error:
            self._drop()
            return True  # notifications may have been lost: poll now

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self._drop()


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3, pooled; advisory locks; SKIP LOCKED; LISTEN/NOTIFY."""

    name = "postgresql"
    skip_locked = True
    supports_listen = True
    session_locks = True

    @property
    def synchronous_commit(self) -> str | None:
        """What every connection sets ``synchronous_commit`` to; None keeps the server's.

        ``normal`` keeps the server's own setting (``on`` by default: a returned
        write survives a crash of the client and of the server); ``full`` insists
        on ``on``; ``off`` may lose the last commits if the server crashes.
        """
        return {"normal": None, "full": "on", "off": "off"}[self.durability]

    def create_engine(self) -> Engine:
        url = sa.engine.make_url(self.url)
        url = url.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(
            url,
            pool_size=self.pool_size,
            max_overflow=self.max_overflow,
            pool_pre_ping=True,
            pool_timeout=30,
            connect_args={"connect_timeout": 10, "application_name": "agentkeep"},
        )
        synchronous_commit = self.synchronous_commit
        if synchronous_commit is not None:

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute(f"SET synchronous_commit = {synchronous_commit}")
                # Commit the SET: a pool's reset-on-return rollback would undo it.
                dbapi_conn.commit()

        return engine

    def consistent_read(self, conn: Connection) -> None:
        conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)

    def flush_deleted(self, tables: list[str]) -> None:
        """VACUUM the touched tables, so their dead row versions are freed for reuse."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in tables:
                conn.exec_driver_sql(f'VACUUM "{name}"')

    def conninfo(self) -> str:
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def serialize_appends(self, conn: Connection, tenant_id: str, scope: str) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(tenant_id, scope)})

    def notify(self, conn: Connection, channel: str, payload: str) -> None:
        conn.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})

    def listen(self, channel: str) -> Listener:
        return _PostgresListener(self.conninfo(), channel)

    def acquire_session_lock(self, conn: Connection, key: int, wait: float) -> bool:
        if wait <= 0:
            got = bool(
                conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            )
            conn.commit()
            return got
        # Block in the server (handed over at once on release) up to lock_timeout.
        conn.execute(sa.text(f"SET LOCAL lock_timeout = {max(1, int(wait * 1000))}"))
        try:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except sa_exc.OperationalError as exc:
            conn.rollback()
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                return False
            raise
        conn.commit()  # a session lock outlives the transaction
        return True

    def release_session_lock(self, conn: Connection, key: int) -> bool:
        released = bool(conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key}).scalar())
        conn.commit()
        return released

    @contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[object]:
        key = lock_key("agentkeep", "migrations")
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.commit()
        try:
            yield None
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()

    def insert(self, table: sa.Table) -> Any:
        return pg_insert(table)

    def describe(self) -> str:
        return "postgresql"


DIALECTS: dict[str, type[Dialect]] = {"sqlite": SQLiteDialect, "postgresql": PostgresDialect}
"""Our dialect classes by SQLAlchemy dialect name."""


def dialect_for_url(url: str, **kwargs: Any) -> Dialect:
    """The dialect for a database URL (``memory://``, ``sqlite:///...``, ``postgresql://...``)."""
    if url.startswith(("memory://", "sqlite:")):
        return SQLiteDialect(url, **kwargs)
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        if url.startswith("postgres:"):
            url = "postgresql:" + url[len("postgres:") :]
        return PostgresDialect(url, **kwargs)
    raise InvalidInput(
        f"unsupported database URL {url!r}; use memory://, sqlite:///path or postgresql://...",
        field="url",
    )
