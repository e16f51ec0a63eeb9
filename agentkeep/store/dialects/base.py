"""What every dialect provides: capabilities, locks, listeners, its own connections."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from agentkeep.config import Pool
from agentkeep.store._steps import Steps
from agentkeep.store.message_sql import MessageSQL

__all__ = ["AsyncConnections", "Dialect", "Listener", "OwnConnections", "lock_key"]

T = TypeVar("T")


def lock_key(*parts: str) -> int:
    """A signed 64-bit key for a PostgreSQL advisory lock."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Listener:
    """Wakes a follower when something was written; this one only sleeps (polling).

    ``wait(timeout)`` returns True when a notification arrived before the
    timeout (the caller polls afterwards in any case); ``receive(timeout)``
    returns the notifications themselves. A listener is used by one thread.
    """

    notifying = False

    def wait(self, timeout: float) -> bool:
        if timeout > 0:
            time.sleep(timeout)
        return False

    def add(self, channel: str) -> None:
        """Listen to ``channel`` too, from the next ``wait`` or ``receive`` on."""

    def receive(self, timeout: float) -> list[tuple[str, str]] | None:
        """The (channel, payload) of the notifications that arrive within ``timeout``
        seconds (all that are queued once one is); None while not notifying, after
        sleeping the timeout (then anything may have been missed)."""
        self.wait(timeout)
        return None

    def close(self) -> None:
        pass


class OwnConnections:
    """Driver connections a store keeps for the message statements outside a transaction.

    ``write(what, work)`` runs ``work(cursor)`` in a write committed before it
    returns; ``read`` in a read. Driver errors come out translated
    (``_errors.translate``).
    """

    #: Whether writes here enforce foreign keys, so a delete takes the rows that
    #: point to the deleted one with it (``Write.cascades``).
    cascades = True
    #: Whether each statement commits alone here: a write of several statements that
    #: must commit together is then bracketed (``Write.atomic``, ``_steps.bracketed``).
    autocommit = False

    def write(self, what: str, work: Callable[[Any], T]) -> T:
        raise NotImplementedError

    def read(self, what: str, work: Callable[[Any], T]) -> T:
        raise NotImplementedError

    def close(self) -> None:
        pass


class AsyncConnections(Protocol):
    """Where the async API runs the message statements, without a thread hop per call.

    ``await write(what, steps)`` runs ``steps()`` (``_steps.Steps``) in a
    write committed before it returns; ``read`` in a read.
    """

    #: As ``OwnConnections.autocommit``.
    autocommit: bool

    async def write(self, what: str, steps: Callable[[], Steps[Any]]) -> Any: ...

    async def read(self, what: str, steps: Callable[[], Steps[Any]]) -> Any: ...

    def close(self) -> None: ...


class Dialect:
    """Capabilities of one backend; subclasses fill them in."""

    name: str
    skip_locked: bool = False
    embedded: bool = False
    supports_listen: bool = False
    session_locks: bool = False

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        durability: str = "normal",
        pool: Pool | None = None,
        schema: str | None = None,
    ) -> None:
        self.url = url
        self.pool = pool or Pool()
        self.pool_size = self.pool.size if self.pool.size is not None else pool_size
        self.max_overflow = (
            self.pool.max_overflow if self.pool.max_overflow is not None else max_overflow
        )
        self.pool_timeout_s = self.pool.timeout_s if self.pool.timeout_s is not None else 30.0
        """How long any of the store's connections is waited for (``AGENTKEEP_POOL_TIMEOUT``)."""
        self.durability = durability
        self.schema = schema
        self.engine = self.create_engine()
        _limit_idle(self.engine, self.pool.max_idle_s)
        self.message_sql = self.create_message_sql()
        """The compiled message statements (``message_sql.py``) of this dialect."""

    def pool_options(self) -> dict[str, Any]:
        """create_engine() pool arguments: size, overflow, checkout timeout, lifetime."""
        options: dict[str, Any] = {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout_s,
        }
        if self.pool.max_lifetime_s is not None:
            options["pool_recycle"] = self.pool.max_lifetime_s
        return options

    def create_engine(self) -> Engine:
        raise NotImplementedError

    def create_schema(self) -> None:
        """Create the namespace the tables live in (a PostgreSQL schema), if any."""

    def size_bytes(self, conn: Connection) -> int:
        """How many bytes the database takes (KODE's ``db_size_bytes``)."""
        raise NotImplementedError

    def writable(self, conn: Connection) -> tuple[bool, str | None]:
        """Whether a write would be accepted, and why not (KODE's ``fileSystem.writable``)."""
        raise NotImplementedError

    def create_message_sql(self) -> MessageSQL:
        raise NotImplementedError

    def own_connections(self) -> OwnConnections:
        """The driver connections a store keeps for its message statements."""
        raise NotImplementedError

    def async_connections(self, own: OwnConnections) -> AsyncConnections:
        """The async API's connections for the message statements (``own``: the sync ones)."""
        raise NotImplementedError

    def write_guard(self) -> AbstractContextManager[object]:
        """Held around every write transaction in this process."""
        return nullcontext()

    def read_guard(self) -> AbstractContextManager[object]:
        """Held around every read in this process."""
        return nullcontext()

    def serialize_appends(self, conn: Connection, tenant_id: str, scope: str) -> None:
        """Make the rest of the transaction the only writer of ``scope``."""

    @staticmethod
    def serializing(key: sa.ColumnElement[int]) -> sa.ColumnElement[Any] | None:
        """:meth:`serialize_appends` (``key``: ``lock_key(tenant_id, scope)``) as an
        expression, for a read the writer makes first (one round trip less); None where
        ``serialize_appends`` does nothing. The read's own rows are of its snapshot,
        taken before the wait: only the statements after it see every earlier writer."""
        return None

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

    @staticmethod
    def notifying(
        channel: sa.ColumnElement[str], payload: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[Any] | None:
        """:meth:`notify` as an expression, for a statement the writer runs anyway to
        return (one round trip less); None where ``notify`` does nothing."""
        return None

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
        raise NotImplementedError

    def plain_read(self, conn: Connection) -> None:
        """Prepare a pooled connection for a read outside any transaction (``Core.read``).

        SQLite: nothing (a deferred BEGIN reads one WAL snapshot and costs no I/O).
        """

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


def _limit_idle(engine: Engine, max_idle_s: float | None) -> None:
    """Replace a pooled connection that sat idle longer than ``max_idle_s`` on checkout."""
    if max_idle_s is None:
        return

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["agentkeep_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("agentkeep_idle_since", None)
        if since is not None and time.monotonic() - since > max_idle_s:
            # The pool closes this connection and checks out a fresh one.
            raise sa_exc.DisconnectionError("idle longer than AGENTKEEP_POOL_MAX_IDLE")
