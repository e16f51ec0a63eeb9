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

- **gapless seq**: the append takes the session row (``UPDATE sessions SET
  last_seq = last_seq + n ...``) in the same transaction as the insert. On
  SQLite that transaction is ``BEGIN IMMEDIATE`` behind the dialect's
  in-process write lock (the one ``Core.write()`` takes), so it is the only
  writer of the file and reads the new ``last_seq`` back before inserting. On
  PostgreSQL it is one statement (``WITH s AS (UPDATE ...) INSERT ... SELECT
  ... FROM s``), its own transaction in autocommit mode: the row
  lock serializes appends to a session and a failed insert rolls the counter
  back with it.
- **durability**: SQLite's connections use the dialect's ``synchronous``
  setting and commit before returning; PostgreSQL's autocommit statement is
  committed (``synchronous_commit`` as the dialect sets it) when it returns.
- **errors**: driver errors are wrapped as SQLAlchemy errors and translated by
  ``_errors.translate``, so callers see the same ``Conflict`` /
  ``StoreUnavailable`` / ``SchemaError`` as on the other path.

What makes it cheap, measured with ``python -m benchmarks`` and, where the
machine was too noisy for seconds, as instructions counted by callgrind:

- one call per operation (connection, transaction, statements, translation),
  no context managers on the path;
- SQLite batches of plain messages (no run, agent, key, metadata or extra) go
  in as multi-row INSERTs with the empty columns as literals: binding and
  stepping per row was most of a bulk append's database time; PostgreSQL's
  one-message statement has them as literals too;
- SQLite's writer runs every statement on one kept cursor, and reads the new
  ``last_seq`` with a SELECT rather than RETURNING (which SQLite buffers in a
  temporary table);
- reads fetch the five usually-empty columns as one value (NULL when all are
  empty), walk SQLite's table forwards, and slice a text block that has
  nothing to unescape; SQLite readers map the file (``mmap_size``);
  PostgreSQL sends a plain message's text instead of its jsonb (whose text
  output cost the server more than the rest of the row);
- ``recent(chat=True)`` reads role and content only, for ``messages.history``;
- each PostgreSQL connection is kept with one cursor for all its statements,
  and checked before use with a kept poller instead of a round trip;
- SQLite at ``synchronous=NORMAL`` checkpoints every ~40 MB of WAL; at FULL the
  default ~4 MB, so the WAL is reused instead of grown (a growing file turns
  every commit's fsync into a metadata sync as well).
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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pydantic_core
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

__all__ = ["MESSAGE_COLUMNS", "FastPath", "dump_content", "dump_json", "dump_str", "make_fastpath"]

WAL_AUTOCHECKPOINT_PAGES = 10_000
READER_MMAP_BYTES = 256 * 1024 * 1024

DbRow = tuple[Any, ...]
#: What ``FastPath.append`` returns: the stored rows of repeated idempotency keys,
#: the session's new ``last_seq`` (None: no such session) and ``created_at``.
Appended = tuple[list[DbRow], int | None, int]

# What the fast path reads of a message (tenant and session are known from the
# query: not fetched). The five columns most messages leave empty (run, agent,
# idempotency key, metadata, extra) come back as one value, NULL when all are
# empty, else a JSON array of the five: every column fetched costs each row.
MESSAGE_COLUMNS = ("id", "seq", "role", "content", "created_at", "rest")
# SQLite: metadata and extra are JSON objects, so a length of 2 is '{}' (measured a
# little cheaper per row than comparing both texts).
_SELECT_COLS = (
    "id, seq, role, content, created_at, CASE WHEN coalesce(run_id, agent_id, "
    "idempotency_key) IS NULL AND length(metadata) + length(extra) = 4 THEN NULL ELSE "
    "json_array(run_id, agent_id, idempotency_key, json(metadata), json(extra)) END"
)
# PostgreSQL: content of one plain text block (most messages: ``[{"type": "text",
# "text": <string>}]`` and no other key) comes back as its text alone; jsonb's text
# output of the whole content costs the server more than the rest of the row, and
# the client then need not check the JSON. For other messages the text column is
# not used: the rest (then never NULL) carries the content as a sixth element.
_PG_PLAIN = (
    "jsonb_array_length(content) = 1 AND (content->0) - 'text' = '{\"type\": \"text\"}' "
    "AND jsonb_typeof(content->0->'text') = 'string'"
)
_PG_SELECT_COLS = (
    "id, seq, role, content->0->>'text', created_at, CASE WHEN run_id IS NULL "
    "AND agent_id IS NULL AND idempotency_key IS NULL AND metadata = '{}' AND extra = '{}' "
    f"AND {_PG_PLAIN} THEN NULL ELSE "
    "jsonb_build_array(run_id, agent_id, idempotency_key, metadata, extra, content)::text END"
)
_INSERT_COLS = (
    "tenant_id, id, session_id, seq, role, content, content_types, run_id, agent_id, "
    "idempotency_key, metadata, extra, created_at"
)

_dumps = json.dumps
_encode_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii
_to_json = pydantic_core.to_json


def dump_str(text: str) -> str:
    """``text`` as a JSON string.

    pydantic-core's encoder (about 2.5x json's for a message's text): it escapes
    what JSON requires and writes other characters as they are (UTF-8), which
    also lets a read take the text as stored. A lone surrogate cannot be UTF-8:
    such a text is written with json's ASCII escapes, as json.dumps would.
    """
    try:
        return _to_json(text).decode()
    except pydantic_core.PydanticSerializationError:
        return _encode_ascii(text)


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
                return '[{"type": "text", "text": ' + dump_str(text) + "}]"
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
# One text block as dump_content writes it.
_TEXT_HEAD = '[{"type": "text", "text": "'
_TEXT_TAIL = '"}]'
_HEAD_LEN, _TAIL_CUT = len(_TEXT_HEAD), -len(_TEXT_TAIL)


def _load_content(value: Any) -> Any:
    """``_load_text`` for a content column; one text block decodes only its string."""
    if type(value) is str and value.startswith(_TEXT_HEAD) and value.endswith(_TEXT_TAIL):
        text = value[_HEAD_LEN:_TAIL_CUT]
        # No escape and no quote: the JSON string is the text itself (a second block
        # would bring quotes, an escaped character a backslash).
        if "\\" not in text and '"' not in text:
            return [{"type": "text", "text": text}]
        try:
            text, end = _scanstring(value, _HEAD_LEN)
        except ValueError:
            return _load_text(value)
        if end == len(value) + _TAIL_CUT + 1:
            return [{"type": "text", "text": text}]
    return _load_text(value)


def _identity(value: Any) -> Any:
    return value


# How many times this process is a forked child: connections made before a fork
# belong to the parent (counted instead of calling getpid on every use).
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class _Idle:
    """Idle driver connections of one process; ``list.pop``/``append`` are atomic.

    An item is anything with ``close()``: a connection, or something that holds
    one (a PostgreSQL connection kept with its cursor).
    """

    def __init__(self, connect: Callable[[], Any], keep: int) -> None:
        self._connect = connect
        self._keep = keep
        self._conns: list[Any] = []
        self._forks = _forks
        self.closed = False

    def get(self, usable: Callable[[Any], bool] | None) -> Any:
        """An idle connection (``usable(conn)`` checked, if given) or a new one."""
        if self._forks != _forks:  # forked: the parent's connections are not ours
            self._conns = []
            self._forks = _forks
        while True:
            try:
                conn = self._conns.pop()
            except IndexError:
                return self._connect()
            if usable is None or usable(conn):
                return conn
            with contextlib.suppress(Exception):
                conn.close()

    def put(self, conn: Any) -> None:
        if self.closed or len(self._conns) >= self._keep or self._forks != _forks:
            with contextlib.suppress(Exception):
                conn.close()
            return
        self._conns.append(conn)

    def close(self) -> None:
        self.closed = True
        conns, self._conns = self._conns, []
        if self._forks != _forks:
            return
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


class FastPath:
    """Fixed SQL on driver connections; one subclass per dialect.

    ``append`` and ``recent`` are the whole operation (connection, transaction,
    statements, error translation) in one call: no context managers on the path
    that runs once per message.
    """

    #: ``load(value)`` turns a JSON column as the driver returns it into Python.
    load_json: Callable[[Any], Any] = staticmethod(_identity)
    #: ``load_json`` for the content column.
    load_content: Callable[[Any], Any] = staticmethod(_identity)
    #: How the driver returns a content of one text block: ``head + text + tail``
    #: when the text needs no escape.
    text_head, text_tail = _TEXT_HEAD, _TEXT_TAIL
    #: Whether rows carry the text of a plain message instead of its content
    #: (PostgreSQL: see ``_PG_SELECT_COLS``); ``recent(chat=True)`` rows are then
    #: (role, text, content or NULL).
    text_column = False
    driver_error: type[Exception] = Exception

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def translate(self, exc: Exception, what: str) -> Exception:
        """A driver error as ``Core`` translates it."""
        wrapped = sa_exc.DBAPIError.instance(
            None, None, exc, self.driver_error, hide_parameters=True
        )
        return translate(wrapped, what)

    def append(
        self,
        tenant_id: str,
        session_id: str,
        rows: Sequence[DbRow],
        keys: Sequence[str],
        clock: Callable[[], int],
    ) -> Appended:
        """Append ``rows`` after the session's last message, in one transaction.

        A row is (id, role, content, content_types, run_id, agent_id,
        idempotency_key, metadata, extra), JSON as text. Rows whose
        idempotency key is stored already are not written. ``clock()`` gives
        ``created_at``, read once the transaction holds the session. Returns the
        stored rows of those keys (``MESSAGE_COLUMNS``), the session's new
        ``last_seq`` (None if there is no session) and ``created_at``.
        """
        raise NotImplementedError

    def recent(
        self, tenant_id: str, session_id: str, n: int, chat: bool = False
    ) -> list[DbRow] | None:
        """The last ``n`` rows of a session, oldest first; None if there is no session.

        Rows of ``MESSAGE_COLUMNS``, or with ``chat`` only (role, content).
        """
        raise NotImplementedError

    def close(self) -> None:
        pass


def _unstored(
    rows: Sequence[DbRow], found: list[DbRow], load: Callable[[Any], Any]
) -> Sequence[DbRow]:
    """``rows`` without those whose idempotency key is among the stored rows ``found``."""
    if not found:
        return rows
    stored = set()
    for row in found:
        rest = row[5]
        if rest is not None:
            stored.add(load(rest)[2])
    return [r for r in rows if r[6] not in stored]


def _plain(rows: Sequence[DbRow]) -> bool:
    """Whether no row has a run, an agent, a key, metadata or extra (the usual message)."""
    for r in rows:
        if r[4] is not None or r[5] is not None or r[6] is not None or r[7] != "{}" or r[8] != "{}":
            return False
    return True


_MAX_CHUNK = 128


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    """(start, size) pieces of ``n`` rows, each size a power of two up to ``_MAX_CHUNK``.

    A multi-row INSERT is one compiled statement per size: powers of two keep
    that to eight statements whatever the batch sizes callers use.
    """
    start = 0
    while start < n:
        size = min(_MAX_CHUNK, 1 << ((n - start).bit_length() - 1))
        yield start, size
        start += size


class SQLiteFastPath(FastPath):
    """One writer connection per store (behind the dialect's write lock), pooled readers."""

    load_json = staticmethod(_load_text)
    load_content = staticmethod(_load_content)
    driver_error = sqlite3.Error

    # Then the new last_seq, read by a SELECT of its own in the same transaction:
    # SQLite's RETURNING collects its rows in a temporary table first (measured:
    # the two statements take about 10 % fewer instructions per append).
    _UPDATE = (
        "UPDATE sessions SET last_seq = last_seq + ?, message_count = message_count + ?, "
        "last_activity_at = ? WHERE tenant_id = ? AND id = ?"
    )
    _LAST_SEQ = "SELECT last_seq FROM sessions WHERE tenant_id = ? AND id = ?"
    _INSERT = (
        f"INSERT INTO messages ({_INSERT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    # The n-th last seq from the index alone, then the rows from there on in
    # ascending order: SQLite then finds each next row of the table from the
    # previous one instead of searching the table from its root for every row
    # (a backward scan), and the rows come oldest first, as returned.
    _LAST_N = (
        "FROM messages WHERE tenant_id = ?1 AND session_id = ?2 "
        "AND seq >= coalesce((SELECT seq FROM messages WHERE tenant_id = ?1 "
        "AND session_id = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3 - 1), 0) ORDER BY seq"
    )
    _RECENT = f"SELECT {_SELECT_COLS} {_LAST_N}"
    _RECENT_CHAT = f"SELECT role, content {_LAST_N}"
    _EXISTS = "SELECT 1 FROM sessions WHERE tenant_id = ? AND id = ?"

    def __init__(self, dialect: SQLiteDialect) -> None:
        super().__init__(dialect)
        self._sqlite = dialect
        self._lock = dialect.write_guard()
        self._synchronous = {"normal": "NORMAL", "full": "FULL", "off": "OFF"}[dialect.durability]
        self._writer: sqlite3.Connection | None = None
        self._writer_cur: sqlite3.Cursor | None = None
        self._writer_forks = -1
        self._memory: sqlite3.Connection | None = None
        self._readers = _Idle(self._connect_reader, keep=max(dialect.pool_size, 1))
        self._plain_sql: dict[int, str] = {}

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

    def _connect_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        # Readers map the file instead of copying each page into their own cache
        # with a read() call: a read of the last messages of a session not read
        # lately touches a few pages that are in no connection's cache yet
        # (measured: 4-8 µs less of ~57 for the rows of a 20-message read). Only
        # readers: pages a connection maps count in the process's RSS, and the
        # writer touches every page it appends to.
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
        if self._writer is None or self._writer_forks != _forks:
            self._writer = self._connect_writer()
            self._writer_cur = self._writer.cursor()
            self._writer_forks = _forks
        return self._writer

    def _writer_cursor(self) -> sqlite3.Cursor:
        """The writer's one cursor (``conn.execute`` makes and tracks a new one per call)."""
        conn = self._writer_conn()
        if conn is self._writer and self._writer_cur is not None:
            return self._writer_cur
        return conn.cursor()

    def _plain_insert(self, size: int) -> str:
        """A ``size``-row INSERT for rows with nothing but id, role and content set."""
        sql = self._plain_sql.get(size)
        if sql is None:
            # ?1 tenant, ?2 session, ?3 created_at, ?4 first seq; then per row
            # id, role, content, content types. Empty columns are literals, not
            # parameters: binding costs per value.
            values = ", ".join(
                f"(?1, ?{5 + 4 * k}, ?2, ?4 + {k}, ?{6 + 4 * k}, ?{7 + 4 * k}, ?{8 + 4 * k}, "
                "NULL, NULL, NULL, '{}', '{}', ?3)"
                for k in range(size)
            )
            sql = f"INSERT INTO messages ({_INSERT_COLS}) VALUES {values}"
            self._plain_sql[size] = sql
        return sql

    def append(
        self,
        tenant_id: str,
        session_id: str,
        rows: Sequence[DbRow],
        keys: Sequence[str],
        clock: Callable[[], int],
    ) -> Appended:
        what = "appending a message"
        with self._lock:
            try:
                cur = self._writer_cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:  # locked past the busy timeout: wait more
                    _retry_locked(lambda: cur.execute("BEGIN IMMEDIATE"))
                try:
                    found: list[DbRow] = []
                    if keys:
                        marks = ", ".join("?" * len(keys))
                        found = cur.execute(
                            f"SELECT {_SELECT_COLS} FROM messages WHERE tenant_id = ? "
                            f"AND session_id = ? AND idempotency_key IN ({marks})",
                            (tenant_id, session_id, *keys),
                        ).fetchall()
                        rows = _unstored(rows, found, self.load_json)
                    now = clock()
                    last = self._insert(cur, tenant_id, session_id, rows, now) if rows else 0
                    cur.execute("COMMIT")
                except BaseException:
                    if cur.connection.in_transaction:
                        cur.execute("ROLLBACK")
                    raise
            except AgentkeepError:
                raise
            except sqlite3.Error as exc:
                raise self.translate(exc, what) from exc
        return found, last, now

    def _insert(
        self,
        cur: sqlite3.Cursor,
        tenant_id: str,
        session_id: str,
        rows: Sequence[DbRow],
        now: int,
    ) -> int | None:
        n = len(rows)
        if not cur.execute(self._UPDATE, (n, n, now, tenant_id, session_id)).rowcount:
            return None
        last: int = cur.execute(self._LAST_SEQ, (tenant_id, session_id)).fetchone()[0]
        first = last - n + 1
        if n == 1 and _plain(rows):
            cur.execute(self._plain_insert(1), (tenant_id, session_id, now, first, *rows[0][:4]))
        elif _plain(rows):
            for start, size in _chunks(n):
                params: list[Any] = [tenant_id, session_id, now, first + start]
                extend = params.extend
                for r in rows[start : start + size] if size != n else rows:
                    extend(r[:4])
                cur.execute(self._plain_insert(size), params)
        elif n == 1:
            r = rows[0]
            cur.execute(self._INSERT, (tenant_id, r[0], session_id, first, *r[1:], now))
        else:
            cur.executemany(
                self._INSERT,
                [(tenant_id, r[0], session_id, first + i, *r[1:], now) for i, r in enumerate(rows)],
            )
        return last

    def recent(
        self, tenant_id: str, session_id: str, n: int, chat: bool = False
    ) -> list[DbRow] | None:
        sql = self._RECENT_CHAT if chat else self._RECENT
        try:
            if self._sqlite.memory:
                with self._lock:
                    return self._recent(self._memory_conn(), sql, tenant_id, session_id, n)
            conn = self._readers.get(None)
            try:
                return self._recent(conn, sql, tenant_id, session_id, n)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._readers.put(conn)
        except sqlite3.Error as exc:
            raise self.translate(exc, "reading messages") from exc

    def _recent(
        self, conn: sqlite3.Connection, sql: str, tenant_id: str, session_id: str, n: int
    ) -> list[DbRow] | None:
        rows = conn.execute(sql, (tenant_id, session_id, n)).fetchall()
        if not rows and conn.execute(self._EXISTS, (tenant_id, session_id)).fetchone() is None:
            return None
        return rows

    def close(self) -> None:
        self._readers.close()
        writer, self._writer, self._writer_cur = self._writer, None, None
        if writer is not None and self._writer_forks == _forks:
            with contextlib.suppress(Exception):
                writer.close()
        self._memory = None  # owned by the engine


Cursor = psycopg.Cursor[Any]
_IDLE = pq.TransactionStatus.IDLE
_OK = pq.ConnStatus.OK


class _PgConn:
    """A kept connection: its one cursor, and a poller on its socket."""

    __slots__ = ("cur", "pgconn", "poller")

    def __init__(self, cur: Cursor) -> None:
        self.cur = cur
        self.pgconn = cur.connection.pgconn
        self.poller = select.poll()
        self.poller.register(self.pgconn.socket, select.POLLIN)

    def usable(self) -> bool:
        """Whether the connection is still open, without a round trip.

        An idle connection has nothing to read; if its socket is readable the
        server closed it (restart, idle timeout) or sent an error.
        """
        pgconn = self.pgconn
        if pgconn.status != _OK or pgconn.transaction_status != _IDLE:
            return False
        try:
            return not self.poller.poll(0)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.cur.connection.close()


class PostgresFastPath(FastPath):
    """Autocommit psycopg connections; every write is one statement (one round trip)."""

    load_json = staticmethod(_load_text)
    load_content = staticmethod(_load_text)
    text_column = True
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
    # A plain message (no run, agent, key, metadata or extra: most of them) with the
    # empty columns as literals: every parameter is dumped by psycopg and bound by
    # the server, one by one.
    _INSERT_PLAIN = (
        "WITH s AS (UPDATE sessions SET last_seq = last_seq + 1, "
        "message_count = message_count + 1, last_activity_at = %(now)s "
        "WHERE tenant_id = %(t)s AND id = %(s)s RETURNING last_seq) "
        f"INSERT INTO messages ({_INSERT_COLS}) "
        "SELECT %(t)s, %(id)s, %(s)s, s.last_seq, %(role)s, %(content)s::jsonb, %(ct)s, "
        "NULL, NULL, NULL, '{}', '{}', %(now)s FROM s RETURNING seq"
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
    _FIND_KEYS = (
        f"SELECT {_PG_SELECT_COLS} FROM messages WHERE tenant_id = %s AND session_id = %s "
        "AND idempotency_key = ANY(%s::text[])"
    )
    _LAST_N = "FROM messages WHERE tenant_id = %s AND session_id = %s ORDER BY seq DESC LIMIT %s"
    _RECENT = f"SELECT {_PG_SELECT_COLS} {_LAST_N}"
    _RECENT_CHAT = (
        f"SELECT role, content->0->>'text', CASE WHEN {_PG_PLAIN} THEN NULL "
        f"ELSE content::text END {_LAST_N}"
    )
    _EXISTS = "SELECT 1 FROM sessions WHERE tenant_id = %s AND id = %s"

    def __init__(self, dialect: PostgresDialect) -> None:
        super().__init__(dialect)
        url = sa.engine.make_url(dialect.url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._synchronous_commit = dialect.synchronous_commit
        keep = max(dialect.pool_size, 1)
        # Each connection is kept with one cursor that runs all its statements:
        # a cursor per statement (``conn.execute``) costs ~15 µs of a ~300 µs read.
        self._idle = _Idle(self._connect, keep=keep)

    def _connect(self) -> _PgConn:
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=10,
            application_name="agentkeep",
        )
        if self._synchronous_commit is not None:
            conn.execute(f"SET synchronous_commit = {self._synchronous_commit}")
        # These connections run only the fixed statements below. Before the first
        # ANALYZE of a fresh table the planner picks the smaller idempotency-key
        # index for recent() and sorts the whole session; without sorts it must
        # read the (tenant_id, session_id, seq) index backwards and stop after n rows.
        conn.execute("SET enable_sort = off")
        return _PgConn(conn.cursor())

    def _run(self, what: str, work: Callable[[Cursor], Any]) -> Any:
        """``work(cur)`` on an idle connection's cursor; a connection left unusable is closed."""
        try:
            kept: _PgConn = self._idle.get(_PgConn.usable)
            try:
                result = work(kept.cur)
            except BaseException:
                if not kept.usable():
                    with contextlib.suppress(Exception):
                        kept.close()
                    raise
                self._idle.put(kept)
                raise
            self._idle.put(kept)
            return result
        except AgentkeepError:
            raise
        except psycopg.Error as exc:
            raise self.translate(exc, what) from exc

    def append(
        self,
        tenant_id: str,
        session_id: str,
        rows: Sequence[DbRow],
        keys: Sequence[str],
        clock: Callable[[], int],
    ) -> Appended:
        def work(cur: Cursor) -> Appended:
            found: list[DbRow] = []
            todo = rows
            if keys:
                # Autocommit: a concurrent writer may store one of these keys between
                # this read and the insert; the unique index then refuses the insert
                # (Conflict) and the caller reads again.
                found = cur.execute(self._FIND_KEYS, (tenant_id, session_id, list(keys))).fetchall()
                todo = _unstored(rows, found, self.load_json)
            now = clock()
            if not todo:
                return found, 0, now
            return found, self._insert(cur, tenant_id, session_id, todo, now), now

        result: Appended = self._run("appending a message", work)
        return result

    def _insert(
        self,
        cur: Cursor,
        tenant_id: str,
        session_id: str,
        rows: Sequence[DbRow],
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
            }
            if _plain(rows):
                sql = self._INSERT_PLAIN
            else:
                sql = self._INSERT_ONE
                params.update(run=r[4], agent=r[5], key=r[6], meta=r[7], extra=r[8])
            found = cur.execute(sql, params).fetchall()
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
            found = cur.execute(self._INSERT_MANY, params).fetchall()
        if not found:
            return None
        return max(int(r[0]) for r in found)

    def recent(
        self, tenant_id: str, session_id: str, n: int, chat: bool = False
    ) -> list[DbRow] | None:
        sql = self._RECENT_CHAT if chat else self._RECENT

        def work(cur: Cursor) -> list[DbRow] | None:
            rows = cur.execute(sql, (tenant_id, session_id, n)).fetchall()
            if not rows and cur.execute(self._EXISTS, (tenant_id, session_id)).fetchone() is None:
                return None
            rows.reverse()
            return rows

        result: list[DbRow] | None = self._run("reading messages", work)
        return result

    def close(self) -> None:
        self._idle.close()


def make_fastpath(dialect: Dialect) -> FastPath | None:
    """The hot paths for ``dialect``; None keeps every operation on ``Core``."""
    if isinstance(dialect, SQLiteDialect):
        return SQLiteFastPath(dialect)
    if isinstance(dialect, PostgresDialect):
        return PostgresFastPath(dialect)
    return None
