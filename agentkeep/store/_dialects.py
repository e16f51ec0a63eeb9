"""What differs between SQLite and PostgreSQL, one class per dialect.

Business code asks for capabilities (``skip_locked``, ``write_guard``,
``serialize_appends``, ``migration_lock``), never for a dialect's name.
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

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from agentkeep.errors import InvalidInput, StoreUnavailable

__all__ = ["Dialect", "PostgresDialect", "SQLiteDialect", "dialect_for_url"]

DEFAULT_URL = "sqlite:///./data/agentkeep.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_BEGIN_DEADLINE_S = 120.0


def lock_key(*parts: str) -> int:
    """A signed 64-bit key for a PostgreSQL advisory lock."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Dialect:
    """Capabilities of one backend; subclasses fill them in."""

    name: str
    skip_locked: bool = False
    embedded: bool = False
    supports_listen: bool = False

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


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3, pooled; advisory locks; SKIP LOCKED."""

    name = "postgresql"
    skip_locked = True
    supports_listen = True

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
        if self.durability == "normal":
            # Committed on return unless the server itself crashes: we keep the
            # server's own setting (synchronous_commit=on by default).
            pass
        elif self.durability == "off":

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET synchronous_commit = off")

        return engine

    def serialize_appends(self, conn: Connection, tenant_id: str, scope: str) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(tenant_id, scope)})

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

    def describe(self) -> str:
        return "postgresql"


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
