"""Driver-level hot paths for appending and reading messages.

SQLAlchemy Core costs tens of microseconds per statement (compilation,
pool checkout, pre-ping, BEGIN/ROLLBACK round trips); an append that the
database does in 25 µs must not pay ten times that. ``FastPath`` keeps its
own driver connections and fixed SQL for the three hottest operations:
appending messages, finding idempotency keys and reading the last messages
of a session. Every other operation goes through ``Core.write()`` /
``Core.read()`` as before, and so do these whenever a transaction of the
calling thread is open (``store.transaction()``).

The guarantees are the ones of the SQLAlchemy path:

- **gapless seq**: the append takes the session row (``UPDATE sessions ...
  RETURNING last_seq``) in the same transaction as the insert. On SQLite that
  transaction is ``BEGIN IMMEDIATE`` behind the dialect's in-process write
  lock (the one ``Core.write()`` takes), so it is the only writer of the
  file. On PostgreSQL it is one statement (``WITH s AS (UPDATE ...) INSERT
  ... SELECT ... FROM s``), its own transaction in autocommit mode: the row
  lock serializes appends to a session and a failed insert rolls the counter
  back with it.
- **durability**: SQLite's connections use the dialect's ``synchronous``
  setting and commit before returning; PostgreSQL's autocommit statement is
  committed (``synchronous_commit`` as the dialect sets it) when it returns.
- **errors**: driver errors are wrapped as SQLAlchemy errors and translated by
  ``_errors.translate``, so callers see the same ``Conflict`` /
  ``StoreUnavailable`` / ``SchemaError`` as on the other path.
"""

from __future__ import annotations

import contextlib
import json
import json.decoder
import json.encoder
import json.scanner
import os
import select
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from psycopg import pq

from agentkeep.errors import AgentkeepError
from agentkeep.store._dialects import (
    SQLITE_BUSY_TIMEOUT_MS,
    Dialect,
    PostgresDialect,
    SQLiteDialect,
    _retry_locked,
)
from agentkeep.store._errors import translate

__all__ = ["MESSAGE_COLUMNS", "FastPath", "make_fastpath"]

WAL_AUTOCHECKPOINT_PAGES = 10_000

# Column order of the message rows the fast path reads (tenant and session are
# known from the query: not fetched).
MESSAGE_COLUMNS = (
    "id",
    "seq",
    "role",
    "content",
    "run_id",
    "agent_id",
    "idempotency_key",
    "metadata",
    "extra",
    "created_at",
)
_SELECT_COLS = ", ".join(MESSAGE_COLUMNS)
# PostgreSQL: JSONB as text, parsed here (psycopg's loader is json.loads per value).
_PG_SELECT_COLS = ", ".join(
    f"{c}::text" if c in ("content", "metadata", "extra") else c for c in MESSAGE_COLUMNS
)
_INSERT_COLS = (
    "tenant_id, id, session_id, seq, role, content, content_types, run_id, agent_id, "
    "idempotency_key, metadata, extra, created_at"
)

_dumps = json.dumps
# What json.dumps does for a str with the default ensure_ascii=True, without its two wrappers.
_dump_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
# The C scanner behind json.loads, without its wrapper (a third of the cost for short text).
_scan: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def dump_json(value: Any) -> str:
    """JSON text as SQLAlchemy's JSON type writes it (``json.dumps``)."""
    return "{}" if not value and isinstance(value, dict) else _dumps(value)


def dump_content(blocks: list[dict[str, Any]]) -> str:
    """``dump_json(blocks)``; one text block (the common message) without the generic encoder."""
    if len(blocks) == 1:
        block = blocks[0]
        if len(block) == 2 and block.get("type") == "text":
            text = block.get("text")
            if type(text) is str and next(iter(block)) == "type":
                return '[{"type": "text", "text": ' + _dump_str(text) + "}]"
    return _dumps(blocks)


def _load_text(value: Any) -> Any:
    """A JSON column as SQLite returns it (text written by ``dump_json``)."""
    if value == "{}":
        return {}
    if not isinstance(value, str):
        return value
    try:
        obj, end = _scan(value, 0)
    except StopIteration:
        return json.loads(value)  # raises the usual JSONDecodeError
    return obj if end == len(value) else json.loads(value)


_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]
# One text block as dump_content writes it (SQLite) and as PostgreSQL's jsonb prints it.
_TEXT_HEAD = '[{"type": "text", "text": "'
_TEXT_TAIL = '"}]'
_PG_TEXT_HEAD = '[{"text": "'
_PG_TEXT_TAIL = '", "type": "text"}]'


def _load_content(value: Any) -> Any:
    """``_load_text`` for a content column; one text block decodes only its string."""
    if type(value) is str and value.startswith(_TEXT_HEAD) and value.endswith(_TEXT_TAIL):
        try:
            text, end = _scanstring(value, len(_TEXT_HEAD))
        except ValueError:
            return _load_text(value)
        if end == len(value) - len(_TEXT_TAIL) + 1:
            return [{"type": "text", "text": text}]
    return _load_text(value)


def _load_pg_content(value: Any) -> Any:
    """``_load_content`` for jsonb as PostgreSQL prints it (keys in its own order)."""
    if type(value) is str and value.startswith(_PG_TEXT_HEAD) and value.endswith(_PG_TEXT_TAIL):
        try:
            text, end = _scanstring(value, len(_PG_TEXT_HEAD))
        except ValueError:
            return _load_text(value)
        if end == len(value) - len(_PG_TEXT_TAIL) + 1:
            return [{"text": text, "type": "text"}]
    return _load_text(value)


def _identity(value: Any) -> Any:
    return value


class _Idle:
    """Idle driver connections of one process; ``list.pop``/``append`` are atomic."""

    def __init__(self, connect: Callable[[], Any], keep: int) -> None:
        self._connect = connect
        self._keep = keep
        self._conns: list[Any] = []
        self._pid = os.getpid()
        self.closed = False

    def get(self, usable: Callable[[Any], bool]) -> Any:
        if self._pid != os.getpid():  # forked: the parent's connections are not ours
            self._conns = []
            self._pid = os.getpid()
        while True:
            try:
                conn = self._conns.pop()
            except IndexError:
                return self._connect()
            if usable(conn):
                return conn
            with contextlib.suppress(Exception):
                conn.close()

    def put(self, conn: Any) -> None:
        if self.closed or len(self._conns) >= self._keep or self._pid != os.getpid():
            with contextlib.suppress(Exception):
                conn.close()
            return
        self._conns.append(conn)

    def close(self) -> None:
        self.closed = True
        conns, self._conns = self._conns, []
        if self._pid != os.getpid():
            return
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


class FastPath:
    """Fixed SQL on driver connections; one subclass per dialect."""

    #: ``load(value)`` turns a JSON column as the driver returns it into Python.
    load_json: Callable[[Any], Any] = staticmethod(_identity)
    #: ``load_json`` for the content column.
    load_content: Callable[[Any], Any] = staticmethod(_identity)
    driver_error: type[Exception] = Exception

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Translate driver errors raised in the block as ``Core`` does."""
        try:
            yield
        except AgentkeepError:
            raise
        except self.driver_error as exc:
            wrapped = sa_exc.DBAPIError.instance(
                None, None, exc, self.driver_error, hide_parameters=True
            )
            raise translate(wrapped, what) from exc

    def write(self, what: str) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def read(self, what: str) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def find_keys(
        self, conn: Any, tenant_id: str, session_id: str, keys: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def insert(
        self, conn: Any, tenant_id: str, session_id: str, rows: Sequence[tuple[Any, ...]], now: int
    ) -> int | None:
        """Insert ``rows`` (id, role, content, content_types, run_id, agent_id,
        idempotency_key, metadata, extra; JSON as text) after the session's last
        message; returns the session's new ``last_seq``, None if there is no session."""
        raise NotImplementedError

    def recent(self, conn: Any, tenant_id: str, session_id: str, n: int) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def session_exists(self, conn: Any, tenant_id: str, session_id: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SQLiteFastPath(FastPath):
    """One writer connection per store (behind the dialect's write lock), pooled readers."""

    load_json = staticmethod(_load_text)
    load_content = staticmethod(_load_content)
    driver_error = sqlite3.Error

    _UPDATE = (
        "UPDATE sessions SET last_seq = last_seq + ?, message_count = message_count + ?, "
        "last_activity_at = ? WHERE tenant_id = ? AND id = ? RETURNING last_seq"
    )
    _INSERT = (
        f"INSERT INTO messages ({_INSERT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    _RECENT = (
        f"SELECT {_SELECT_COLS} FROM messages WHERE tenant_id = ? AND session_id = ? "
        "ORDER BY seq DESC LIMIT ?"
    )
    _EXISTS = "SELECT 1 FROM sessions WHERE tenant_id = ? AND id = ?"

    def __init__(self, dialect: SQLiteDialect) -> None:
        super().__init__(dialect)
        self._sqlite = dialect
        self._lock = dialect.write_guard()
        self._synchronous = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}[dialect.durability]
        self._writer: sqlite3.Connection | None = None
        self._writer_pid = 0
        self._memory: sqlite3.Connection | None = None
        self._readers = _Idle(self._connect, keep=max(dialect.pool_size, 1))

    def _connect(self) -> sqlite3.Connection:
        assert self._sqlite.path is not None
        conn = sqlite3.connect(
            self._sqlite.path,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
        )
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        # This connection only inserts messages after ``UPDATE sessions ... RETURNING``
        # found their session in the same BEGIN IMMEDIATE transaction, and never
        # deletes: the foreign key check would look up a row already proven there.
        conn.execute("PRAGMA foreign_keys=OFF")
        # Checkpoint every ~40 MB of WAL instead of ~4 MB: an append dirties ~9 pages
        # (table, indexes, session row), mostly the same hot ones, and each
        # checkpoint copies every page once and syncs the file twice.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        return conn

    def _memory_conn(self) -> sqlite3.Connection:
        # memory:// is one connection (StaticPool): the fast path must use that one.
        if self._memory is None:
            with self._sqlite.engine.connect() as conn:
                driver = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            self._memory = driver
        return self._memory

    def _writer_conn(self) -> sqlite3.Connection:
        if self._sqlite.memory:
            return self._memory_conn()
        if self._writer is None or self._writer_pid != os.getpid():
            self._writer = self._connect_writer()
            self._writer_pid = os.getpid()
        return self._writer

    @contextmanager
    def write(self, what: str) -> Iterator[sqlite3.Connection]:
        with self.errors(what), self._lock:
            conn = self._writer_conn()
            _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self, what: str) -> Iterator[sqlite3.Connection]:
        if self._sqlite.memory:
            with self.errors(what), self._lock:
                yield self._memory_conn()
            return
        with self.errors(what):
            conn = self._readers.get(_sqlite_usable)
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._readers.put(conn)

    def find_keys(
        self, conn: sqlite3.Connection, tenant_id: str, session_id: str, keys: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        marks = ", ".join("?" * len(keys))
        return conn.execute(
            f"SELECT {_SELECT_COLS} FROM messages WHERE tenant_id = ? AND session_id = ? "
            f"AND idempotency_key IN ({marks})",
            (tenant_id, session_id, *keys),
        ).fetchall()

    def insert(
        self,
        conn: sqlite3.Connection,
        tenant_id: str,
        session_id: str,
        rows: Sequence[tuple[Any, ...]],
        now: int,
    ) -> int | None:
        n = len(rows)
        found = conn.execute(self._UPDATE, (n, n, now, tenant_id, session_id)).fetchone()
        if found is None:
            return None
        last: int = found[0]
        first = last - n + 1
        if n == 1:
            r = rows[0]
            conn.execute(
                self._INSERT,
                (
                    tenant_id,
                    r[0],
                    session_id,
                    first,
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    now,
                ),
            )
        else:
            conn.executemany(
                self._INSERT,
                [
                    (
                        tenant_id,
                        r[0],
                        session_id,
                        first + i,
                        r[1],
                        r[2],
                        r[3],
                        r[4],
                        r[5],
                        r[6],
                        r[7],
                        r[8],
                        now,
                    )
                    for i, r in enumerate(rows)
                ],
            )
        return last

    def recent(
        self, conn: sqlite3.Connection, tenant_id: str, session_id: str, n: int
    ) -> list[tuple[Any, ...]]:
        return conn.execute(self._RECENT, (tenant_id, session_id, n)).fetchall()

    def session_exists(self, conn: sqlite3.Connection, tenant_id: str, session_id: str) -> bool:
        return conn.execute(self._EXISTS, (tenant_id, session_id)).fetchone() is not None

    def close(self) -> None:
        self._readers.close()
        writer, self._writer = self._writer, None
        if writer is not None and self._writer_pid == os.getpid():
            with contextlib.suppress(Exception):
                writer.close()
        self._memory = None  # owned by the engine


def _sqlite_usable(conn: sqlite3.Connection) -> bool:
    return True


def _pg_usable(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection is still open, without a round trip.

    An idle connection has nothing to read; if its socket is readable the
    server closed it (restart, idle timeout) or sent an error.
    """
    if conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        return False


class PostgresFastPath(FastPath):
    """Autocommit psycopg connections; every write is one statement (one round trip)."""

    load_json = staticmethod(_load_text)
    load_content = staticmethod(_load_pg_content)
    driver_error = psycopg.Error

    _INSERT_ONE = (
        "WITH s AS (UPDATE sessions SET last_seq = last_seq + 1, "
        "message_count = message_count + 1, last_activity_at = %(now)s "
        "WHERE tenant_id = %(t)s AND id = %(s)s RETURNING last_seq) "
        f"INSERT INTO messages ({_INSERT_COLS}) "
        "SELECT %(t)s, %(id)s, %(s)s, s.last_seq, %(role)s, %(content)s::jsonb, %(ct)s, "
        "%(run)s, %(agent)s, %(key)s, %(meta)s::jsonb, %(extra)s::jsonb, %(now)s FROM s "
        "RETURNING seq"
    )
    _INSERT_MANY = (
        "WITH s AS (UPDATE sessions SET last_seq = last_seq + %(n)s, "
        "message_count = message_count + %(n)s, last_activity_at = %(now)s "
        "WHERE tenant_id = %(t)s AND id = %(s)s RETURNING last_seq) "
        f"INSERT INTO messages ({_INSERT_COLS}) "
        "SELECT %(t)s, u.id, %(s)s, s.last_seq - %(n)s + u.ord, u.role, u.content::jsonb, u.ct, "
        "u.run, u.agent, u.key, u.meta::jsonb, u.extra::jsonb, %(now)s "
        # The arrays go in binary (%b): no quoting of every element by psycopg and no
        # text-array parsing by the server (about 3x faster for 100 JSON texts).
        "FROM s, unnest(%(ids)b::text[], %(roles)b::text[], %(contents)b::text[], %(cts)b::text[], "
        "%(runs)b::text[], %(agents)b::text[], %(keys)b::text[], %(metas)b::text[], "
        "%(extras)b::text[]) WITH ORDINALITY "
        "AS u(id, role, content, ct, run, agent, key, meta, extra, ord) "
        "RETURNING seq"
    )
    _RECENT = (
        f"SELECT {_PG_SELECT_COLS} FROM messages WHERE tenant_id = %s AND session_id = %s "
        "ORDER BY seq DESC LIMIT %s"
    )
    _EXISTS = "SELECT 1 FROM sessions WHERE tenant_id = %s AND id = %s"

    def __init__(self, dialect: PostgresDialect) -> None:
        super().__init__(dialect)
        url = sa.engine.make_url(dialect.url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._durability = dialect.durability
        keep = max(dialect.pool_size, 1)
        self._idle = _Idle(self._connect, keep=keep)
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=10,
            application_name="agentkeep",
        )
        if self._durability == "off":
            conn.execute("SET synchronous_commit = off")
        # These connections run only the fixed statements below. Before the first
        # ANALYZE of a fresh table the planner picks the smaller idempotency-key
        # index for recent() and sorts the whole session; without sorts it must
        # read the (tenant_id, session_id, seq) index backwards and stop after n rows.
        conn.execute("SET enable_sort = off")
        return conn

    @contextmanager
    def _conn(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        with self.errors(what):
            conn = self._idle.get(_pg_usable)
            try:
                yield conn
            except BaseException:
                if conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    with contextlib.suppress(Exception):
                        conn.close()
                    raise
                self._idle.put(conn)
                raise
            self._idle.put(conn)

    def write(self, what: str) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self._conn(what)

    def read(self, what: str) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self._conn(what)

    def find_keys(
        self, conn: psycopg.Connection[Any], tenant_id: str, session_id: str, keys: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        return conn.execute(
            f"SELECT {_PG_SELECT_COLS} FROM messages WHERE tenant_id = %s AND session_id = %s "
            "AND idempotency_key = ANY(%s::text[])",
            (tenant_id, session_id, list(keys)),
        ).fetchall()

    def insert(
        self,
        conn: psycopg.Connection[Any],
        tenant_id: str,
        session_id: str,
        rows: Sequence[tuple[Any, ...]],
        now: int,
    ) -> int | None:
        n = len(rows)
        if n == 1:
            r = rows[0]
            params: dict[str, Any] = {
                "now": now,
                "t": tenant_id,
                "s": session_id,
                "id": r[0],
                "role": r[1],
                "content": r[2],
                "ct": r[3],
                "run": r[4],
                "agent": r[5],
                "key": r[6],
                "meta": r[7],
                "extra": r[8],
            }
            found = conn.execute(self._INSERT_ONE, params).fetchall()
        else:
            cols = list(zip(*rows, strict=True))
            params = {
                "n": n,
                "now": now,
                "t": tenant_id,
                "s": session_id,
                "ids": list(cols[0]),
                "roles": list(cols[1]),
                "contents": list(cols[2]),
                "cts": list(cols[3]),
                "runs": list(cols[4]),
                "agents": list(cols[5]),
                "keys": list(cols[6]),
                "metas": list(cols[7]),
                "extras": list(cols[8]),
            }
            found = conn.execute(self._INSERT_MANY, params).fetchall()
        if not found:
            return None
        return max(int(r[0]) for r in found)

    def recent(
        self, conn: psycopg.Connection[Any], tenant_id: str, session_id: str, n: int
    ) -> list[tuple[Any, ...]]:
        return conn.execute(self._RECENT, (tenant_id, session_id, n)).fetchall()

    def session_exists(
        self, conn: psycopg.Connection[Any], tenant_id: str, session_id: str
    ) -> bool:
        return conn.execute(self._EXISTS, (tenant_id, session_id)).fetchone() is not None

    def close(self) -> None:
        self._idle.close()


def make_fastpath(dialect: Dialect) -> FastPath | None:
    """The hot paths for ``dialect``; None keeps every operation on ``Core``."""
    if isinstance(dialect, SQLiteDialect):
        return SQLiteFastPath(dialect)
    if isinstance(dialect, PostgresDialect):
        return PostgresFastPath(dialect)
    return None
