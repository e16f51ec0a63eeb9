"""PostgreSQL through psycopg 3: pooled, advisory locks, SKIP LOCKED, LISTEN/NOTIFY.

Every message write is one statement (``WITH s AS (UPDATE sessions ...)
INSERT ... SELECT ... FROM s``): one round trip, and the row lock of the
session serializes appends to it. The store's own connections are kept in
autocommit mode, each with one cursor, and checked before use with a poller
on their socket instead of a round trip.
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from psycopg import pq, sql
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from agentkeep.errors import AgentkeepError, InvalidInput, StoreUnavailable
from agentkeep.store._errors import translate
from agentkeep.store._idle import Idle
from agentkeep.store._steps import Steps, Stmt
from agentkeep.store.dialects.base import Dialect, Listener, OwnConnections, lock_key
from agentkeep.store.dialects.postgresql_async import PostgresAsyncConnections
from agentkeep.store.message_sql import (
    INSERT_COLUMNS,
    MessageSQL,
    NewRow,
    StoredRow,
    WhileIdle,
    as_loaded,
    b,
    bump_session,
    const,
    full_params,
)
from agentkeep.store.schema import messages as t
from agentkeep.store.schema import sessions as st

__all__ = ["PostgresDialect"]

T = TypeVar("T")
Cursor = psycopg.Cursor[Any]
_IDLE = pq.TransactionStatus.IDLE
#: Inside a transaction, between statements (a failed bracketed write leaves it so).
_IN_TRANSACTION = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
_OK = pq.ConnStatus.OK
_TEXT_ARRAY = ARRAY(sa.Text)
ERASURE_LOCK_TIMEOUT_S = 30  # how long an erasure's VACUUM FULL waits for each table's lock
# The arrays of a batch, by the name of the unnested column they become.
_BATCH = ("id", "role", "content", "ct", "run", "agent", "key", "meta", "extra")


def _typed(name: str, column: str) -> sa.BindParameter[Any]:
    """A parameter bound with the type of a messages column (JSON as text, cast)."""
    return b(name, type_=t.c[column].type)


def _json_param(name: str) -> sa.ColumnElement[Any]:
    return sa.cast(b(name, type_=sa.Text), JSONB)


def insert_message_after(
    s: Any, *, plain: bool = False, where: sa.ColumnElement[bool] | None = None
) -> sa.Insert:
    """One message INSERT whose ``seq`` is the ``last_seq`` that CTE ``s`` returned
    (``where``: a condition on its row).

    Its values are bound parameters (``t``, ``s``, ``v_id``, ``v_role``,
    ``v_content``, ``v_content_types``, ``now``, and unless ``plain``
    ``v_run_id``, ``v_agent_id``, ``v_idempotency_key``, ``v_metadata``,
    ``v_extra``): every append statement of this dialect, and the ADK
    integration's (which bumps the session in its own CTE), share it.
    """
    values: list[Any] = [
        _typed("t", "tenant_id"),
        _typed("v_id", "id"),
        _typed("s", "session_id"),
        s.c.last_seq,
        _typed("v_role", "role"),
        _json_param("v_content"),
        _typed("v_content_types", "content_types"),
    ]
    if plain:
        values += [sa.null(), sa.null(), sa.null(), const("{}"), const("{}")]
    else:
        values += [
            _typed("v_run_id", "run_id"),
            _typed("v_agent_id", "agent_id"),
            _typed("v_idempotency_key", "idempotency_key"),
            _json_param("v_metadata"),
            _json_param("v_extra"),
        ]
    values.append(_typed("now", "created_at"))
    select_ = sa.select(*values).select_from(s)
    if where is not None:
        select_ = select_.where(where)
    return sa.insert(t).from_select(INSERT_COLUMNS, select_).returning(t.c.seq)


def _no_active_run(s: Any) -> sa.ColumnElement[bool]:
    """The active-run check of ``append_if_idle`` on the session row CTE ``s`` took (it raises:
    migration 0014). An argument from that row: called for the row, after the UPDATE took it."""
    fn = sa.func.agentkeep_session_idle(b("t"), b("s"), s.c.kind, b("kind"), type_=sa.Boolean)
    return fn.is_(sa.true())


# The guards an INSERT can carry: none, ``append_if_idle``'s check (raising), or the
# session's kind alone (``append_many(kind=)``: the UPDATE takes no row of another kind,
# so nothing is written and no row is returned).
_GUARD_NONE, _GUARD_IDLE, _GUARD_KIND = 0, 1, 2


def _guard(idle: WhileIdle | None) -> int:
    return _GUARD_NONE if idle is None else _GUARD_IDLE if idle.runs else _GUARD_KIND


def _bumped(n: sa.ColumnElement[Any], guard: int) -> Any:
    """CTE ``s``: the session row taken, with its new ``last_seq`` (and ``kind``, for ``idle``)."""
    returned = ["last_seq", "kind"] if guard == _GUARD_IDLE else ["last_seq"]
    update = bump_session(n)
    if guard == _GUARD_KIND:
        update = update.where(st.c.kind == b("kind"))
    return update.returning(*(sa.literal_column(c) for c in returned)).cte("s")


class PostgresMessageSQL(MessageSQL):
    """The message statements on PostgreSQL (``%(name)s`` parameters)."""

    text_column = True
    load_any = staticmethod(as_loaded)

    def json_param(self, name: str) -> sa.ColumnElement[Any]:
        return _json_param(name)

    def __init__(self, dialect: Any, insert: Callable[[sa.Table], Any]) -> None:
        super().__init__(dialect, insert)
        first_block = t.c.content.op("->")(const(0))
        f = sa.func
        # Content of one plain text block (most messages: ``[{"type": "text", "text":
        # <string>}]`` and no other key): read as its text alone.
        self._plain = sa.and_(
            f.jsonb_array_length(t.c.content) == const(1),
            first_block.op("-")(const("text")) == sa.cast(const('{"type": "text"}'), JSONB),
            f.jsonb_typeof(first_block.op("->")(const("text"))) == const("string"),
        )
        self._text = first_block.op("->>")(const("text"))
        of_session = (t.c.tenant_id == b("t"), t.c.session_id == b("s"))

        def last_n(q: sa.Select[Any]) -> sa.Select[Any]:
            n = b("n", type_=sa.Integer)
            return q.where(*of_session).order_by(t.c.seq.desc()).limit(n)

        self.recent_rows = self.compile(last_n(self.select_stored()))
        chat = sa.select(
            t.c.role,
            self._text,
            sa.case((self._plain, sa.null()), else_=sa.cast(t.c.content, sa.Text)),
        )
        self.recent_chat = self.compile(last_n(chat))
        self.find = self.compile(
            self.select_stored().where(
                *of_session, t.c.idempotency_key == sa.any_(b("keys", type_=_TEXT_ARRAY))
            )
        )
        # By guard (``_guard``: none, ``append_if_idle``'s check, the kind): the INSERTs.
        self.insert_one: dict[int, str] = {}
        self.insert_plain: dict[int, str] = {}
        self.insert_many: dict[int, str] = {}
        for guard in (_GUARD_NONE, _GUARD_IDLE, _GUARD_KIND):
            self.insert_one[guard] = self.compile(self._insert_one(plain=False, guard=guard))
            # A plain message (most of them) with the empty columns as literals: every
            # parameter is dumped by psycopg and bound by the server, one by one.
            self.insert_plain[guard] = self.compile(self._insert_one(plain=True, guard=guard))
            many = self.compile(self._insert_many(guard))
            for name in _BATCH:
                # The arrays go in binary (%b): no quoting of every element by psycopg and no
                # text-array parsing by the server (about 3x faster for 100 JSON texts).
                many = many.replace(f"%({name}s)s", f"%({name}s)b")
            self.insert_many[guard] = many

    def select_stored(self) -> sa.Select[Any]:
        return sa.select(t.c.id, t.c.seq, t.c.role, self._text, t.c.created_at, self.rest())

    def rest(self) -> sa.ColumnElement[Any]:
        # A JSON array of run, agent, key, metadata, extra and content; NULL for a
        # plain message without them.
        empty = sa.and_(
            t.c.run_id.is_(None),
            t.c.agent_id.is_(None),
            t.c.idempotency_key.is_(None),
            t.c.metadata == sa.cast(const("{}"), JSONB),
            t.c.extra == sa.cast(const("{}"), JSONB),
            self._plain,
        )
        array = sa.func.jsonb_build_array(
            t.c.run_id, t.c.agent_id, t.c.idempotency_key, t.c.metadata, t.c.extra, t.c.content
        )
        return sa.case((empty, sa.null()), else_=sa.cast(array, sa.Text))

    def _insert_one(self, *, plain: bool, guard: int) -> sa.Insert:
        s = _bumped(const(1), guard)
        where = _no_active_run(s) if guard == _GUARD_IDLE else None
        return insert_message_after(s, plain=plain, where=where)

    def _insert_many(self, guard: int) -> sa.Insert:
        n = b("n", type_=sa.BigInteger)
        s = _bumped(n, guard)
        u = (
            sa.func.unnest(*(b(f"{name}s", type_=_TEXT_ARRAY) for name in _BATCH))
            .table_valued(*_BATCH, with_ordinality="ord")
            .render_derived(name="u")
        )
        select_ = sa.select(
            _typed("t", "tenant_id"),
            u.c.id,
            _typed("s", "session_id"),
            s.c.last_seq - n + u.c.ord,
            u.c.role,
            sa.cast(u.c.content, JSONB),
            u.c.ct,
            u.c.run,
            u.c.agent,
            u.c.key,
            sa.cast(u.c.meta, JSONB),
            sa.cast(u.c.extra, JSONB),
            _typed("now", "created_at"),
        ).select_from(s, u)
        if guard == _GUARD_IDLE:
            select_ = select_.where(_no_active_run(s))
        return sa.insert(t).from_select(INSERT_COLUMNS, select_).returning(t.c.seq)

    def find_keys(
        self, tenant_id: str, session_id: str, keys: Sequence[str]
    ) -> Steps[list[StoredRow]]:
        # Outside a transaction a concurrent writer may store one of these keys
        # between this read and the insert; the unique index then refuses the
        # insert (Conflict) and the caller reads again.
        found = yield Stmt(self.find, {"t": tenant_id, "s": session_id, "keys": list(keys)})
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
        # ``idle``: the check is in the statement, and raises (translated by _errors); a
        # kind alone makes it write nothing (None: as for no session).
        guard = _guard(idle)
        n = len(rows)
        if n == 1:
            row = rows[0]
            if row.plain:
                params: dict[str, Any] = {
                    "now": now,
                    "t": tenant_id,
                    "s": session_id,
                    "v_id": ids[0],
                    "v_role": row.role,
                    "v_content": row.content_json(),
                    "v_content_types": row.content_types,
                }
                sql_ = self.insert_plain[guard]
            else:
                params = full_params(row, ids[0], 0)
                params.update(now=now, t=tenant_id, s=session_id)
                sql_ = self.insert_one[guard]
        else:
            written = [full_params(r, i, 0) for i, r in zip(ids, rows, strict=True)]
            params = {"n": n, "now": now, "t": tenant_id, "s": session_id}
            for name, column in zip(_BATCH, _FULL_NAMES, strict=True):
                params[f"{name}s"] = [w[column] for w in written]
            sql_ = self.insert_many[guard]
        if idle is not None:
            params["kind"] = idle.kind
        found = yield Stmt(sql_, params)
        if not found:
            return None
        return max(int(r[0]) for r in found)

    def recent(
        self, tenant_id: str, session_id: str, n: int, chat: bool = False
    ) -> Steps[list[Any] | None]:
        sql_ = self.recent_chat if chat else self.recent_rows
        rows: list[Any] = yield Stmt(sql_, {"t": tenant_id, "s": session_id, "n": n})
        if not rows and not (yield from self.exists(tenant_id, session_id)):
            return None
        rows.reverse()
        return rows


# full_params() names, in the order of _BATCH.
_FULL_NAMES = (
    "v_id",
    "v_role",
    "v_content",
    "v_content_types",
    "v_run_id",
    "v_agent_id",
    "v_idempotency_key",
    "v_metadata",
    "v_extra",
)


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

    def roll_back(self) -> None:
        """End the transaction a failed bracketed write (``_steps.bracketed``) left open,
        so the connection can be kept; one that cannot is closed by its holder."""
        if self.pgconn.status == _OK and self.pgconn.transaction_status in _IN_TRANSACTION:
            with contextlib.suppress(psycopg.Error):
                self.cur.execute("ROLLBACK")

    def close(self) -> None:
        self.cur.connection.close()


def _idle_and_open(pgconn: Any) -> bool:
    """Whether a connection is open with nothing to read (``_PgConn.usable``, unkept poller)."""
    if pgconn.status != _OK or pgconn.transaction_status != _IDLE:
        return False
    poller = select.poll()
    try:
        poller.register(pgconn.socket, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.OperationalError):
        return False


class PostgresConnections(OwnConnections):
    """Autocommit psycopg connections, each kept with one cursor.

    Every message write is one statement, so autocommit makes it its own
    transaction, committed (``synchronous_commit`` as the dialect sets it)
    when it returns. A cursor per statement (``conn.execute``) costs ~15 µs of
    a ~300 µs read.
    """

    autocommit = True

    def __init__(self, dialect: PostgresDialect) -> None:
        self._conninfo = dialect.conninfo()
        self._synchronous_commit = dialect.synchronous_commit
        self._idle = Idle(self._connect, keep=max(dialect.pool_size, 1))
        # At most ``pool_size + max_overflow`` in use at once, as SQLAlchemy's pool: a
        # process's connections to the server stay within a budget (README, "Connections").
        self.limit = max(dialect.pool_size + dialect.max_overflow, 1)
        self._slots = threading.BoundedSemaphore(self.limit)
        self._timeout = dialect.pool_timeout_s

    def _connect(self) -> _PgConn:
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=10,
            application_name="agentkeep",
        )
        if self._synchronous_commit is not None:
            conn.execute(f"SET synchronous_commit = {self._synchronous_commit}")
        # These connections run only the message statements. Before the first
        # ANALYZE of a fresh table the planner picks the smaller idempotency-key
        # index for recent() and sorts the whole session; without sorts it must
        # read the (tenant_id, session_id, seq) index backwards and stop after n rows.
        conn.execute("SET enable_sort = off")
        # A statement that must sort all the same (a LangGraph store search by update time)
        # is then costed above ``jit_above_cost``, and JIT compiled its plan on every run:
        # 70-110 ms for a read of 200 rows.
        conn.execute("SET jit = off")
        return _PgConn(conn.cursor())

    def _run(self, what: str, work: Callable[[Cursor], T]) -> T:
        """``work(cur)`` on an idle connection's cursor; a connection left unusable is closed.

        When all ``limit`` connections are in use it waits for one, for the pool's
        timeout (``AGENTKEEP_POOL_TIMEOUT``), then raises ``StoreUnavailable``.
        """
        if not self._slots.acquire(timeout=self._timeout):
            raise StoreUnavailable(
                f"{what}: all {self.limit} message connections of this process stayed in use "
                f"for {self._timeout:g} s (AGENTKEEP_POOL_SIZE + AGENTKEEP_POOL_MAX_OVERFLOW)"
            )
        try:
            return self._run_held(what, work)
        finally:
            self._slots.release()

    def _run_held(self, what: str, work: Callable[[Cursor], T]) -> T:
        try:
            kept: _PgConn = self._idle.get(_PgConn.usable)
            try:
                result = work(kept.cur)
            except BaseException:
                kept.roll_back()
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
            raise translate(exc, what) from exc

    write = _run
    read = _run

    def close(self) -> None:
        self._idle.close()


class _PostgresListener(Listener):
    """LISTEN on a dedicated autocommit connection (outside the pool).

    If the connection cannot be made or is lost, it sleeps instead (the
    follower polls) and tries to listen again a few seconds later.
    """

    RETRY_S = 5.0

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conninfo = conninfo
        self._channels = [channel]
        self._listening = 0  # how many of _channels the connection listens to
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._closed = False
        self._connect()

    @property
    def notifying(self) -> bool:  # type: ignore[override]
        return self._conn is not None and self._listening == len(self._channels)

    def add(self, channel: str) -> None:
        if channel not in self._channels:
            self._channels.append(channel)

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
        self._conn, self._listening = conn, 0
        self._listen()

    def _listen(self) -> bool:
        """LISTEN to the channels added since the last time; False if the connection broke."""
        assert self._conn is not None
        try:
            for channel in self._channels[self._listening :]:
                self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listening += 1
        except psycopg.Error:
            self._drop()
            return False
        return True

    def _ready(self) -> bool:
        """Connected and listening to every channel (reconnecting when it is time)."""
        if self._conn is None and time.monotonic() >= self._retry_at:
            self._connect()
        return self._conn is not None and self._listen()

    def wait(self, timeout: float) -> bool:
        if self._closed:
            return False
        if not self._ready():
            return super().wait(timeout)
        received = self._notifies(timeout)
        return received is None or bool(received)  # lost connection: notifications may be lost

    def receive(self, timeout: float) -> list[tuple[str, str]] | None:
        if self._closed or not self._ready():
            super().wait(timeout)
            return None
        return self._notifies(timeout)

    def _notifies(self, timeout: float) -> list[tuple[str, str]] | None:
        """What arrives within ``timeout`` s, and what else is queued then; None if the
        connection broke."""
        assert self._conn is not None
        try:
            out = [
                (n.channel, n.payload)
                for n in self._conn.notifies(timeout=max(timeout, 0.0), stop_after=1)
            ]
            if out:  # drain what else is queued: one poll answers them all
                out += [(n.channel, n.payload) for n in self._conn.notifies(timeout=0.0)]
            return out
        except psycopg.Error:
            self._drop()
            return None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._listening = 0
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
        if self.schema is not None:
            check_schema_name(self.schema)
            # Every connection (the message statements' and the async ones too, through
            # conninfo()) opens in the schema.
            url = url.update_query_dict({"options": f"-csearch_path={self.schema}"})
        engine = sa.create_engine(
            url,
            connect_args={"connect_timeout": 10, "application_name": "agentkeep"},
            **self.pool_options(),
        )

        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            # What pool_pre_ping is for, without its round trip per checkout (a
            # LangGraph turn checks out six connections): a pooled connection the
            # server closed (restart, terminated backend, idle timeout) has its
            # socket readable; the pool then discards it and connects again.
            if not _idle_and_open(dbapi_conn.pgconn):
                raise sa_exc.DisconnectionError("the server closed the pooled connection")

        synchronous_commit = self.synchronous_commit
        if synchronous_commit is not None:

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute(f"SET synchronous_commit = {synchronous_commit}")
                # Commit the SET: a pool's reset-on-return rollback would undo it.
                dbapi_conn.commit()

        return engine

    def create_message_sql(self) -> MessageSQL:
        return PostgresMessageSQL(self.engine.dialect, self.insert)

    def own_connections(self) -> PostgresConnections:
        return PostgresConnections(self)

    def async_connections(self, own: OwnConnections) -> PostgresAsyncConnections:
        return PostgresAsyncConnections(
            self.conninfo(),
            synchronous_commit=self.synchronous_commit,
            size=self.pool_size + self.max_overflow,
            timeout=self.pool_timeout_s,
        )

    def conninfo(self) -> str:
        """The URL as libpq takes it (for connections outside the pool)."""
        url = self.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def create_schema(self) -> None:
        """Create the PostgreSQL schema the tables live in, when one is set and missing."""
        if self.schema is None:
            return
        with self.engine.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            conn.commit()

    def size_bytes(self, conn: Connection) -> int:
        return int(
            conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar() or 0
        )

    def writable(self, conn: Connection) -> tuple[bool, str | None]:
        recovery, read_only = conn.execute(
            sa.text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
        ).one()
        if recovery:
            return False, "the server is a read-only standby (in recovery)"
        if read_only == "on":
            return False, "the session is read-only (default_transaction_read_only)"
        return True, None

    def plain_read(self, conn: Connection) -> None:
        """Autocommit: no BEGIN and ROLLBACK around the read (two round trips fewer).

        At READ COMMITTED each statement of a transaction sees what was
        committed before it started, so the statements of a ``reading()`` block
        see the same with or without the transaction around them.
        """
        conn.execution_options(isolation_level="AUTOCOMMIT")

    def consistent_read(self, conn: Connection) -> None:
        conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)

    def flush_deleted(self, tables: list[str]) -> None:
        """``VACUUM (FULL)`` the touched tables: each is rewritten with its live rows only.

        A plain VACUUM only marks dead row versions reusable; their bytes stay
        in the table's pages until overwritten. VACUUM FULL writes new files
        for the table, its TOAST table and its indexes and unlinks the old
        ones, so no page of the database holds the erased rows. It takes an
        ACCESS EXCLUSIVE lock per table for the rewrite (readers and writers
        of that table wait); waiting for that lock is bounded by
        ``lock_timeout`` below. What stays outside the tables (WAL segments,
        archives, replicas' history, backups) is the operator's: see README.
        """
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"SET lock_timeout = '{ERASURE_LOCK_TIMEOUT_S}s'")
            for name in tables:
                try:
                    # A plain VACUUM first: it removes the dead rows by this database's
                    # oldest snapshot. VACUUM FULL alone would judge by its own
                    # transaction's snapshot, which any long transaction of another
                    # database on the server holds back, and copy the erased rows
                    # into the new files as "recently dead".
                    conn.exec_driver_sql(f'VACUUM "{name}"')
                    conn.exec_driver_sql(f'VACUUM (FULL, ANALYZE) "{name}"')
                except sa_exc.OperationalError as exc:
                    raise StoreUnavailable(
                        f"the erasure is committed, but {name} could not be rewritten "
                        f"(VACUUM FULL waited {ERASURE_LOCK_TIMEOUT_S} s for its lock): its "
                        "deleted rows may still be in its pages; run the erasure again when "
                        "the database is quieter"
                    ) from exc

    def serialize_appends(self, conn: Connection, tenant_id: str, scope: str) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(tenant_id, scope)})

    @staticmethod
    def serializing(key: sa.ColumnElement[int]) -> sa.ColumnElement[Any] | None:
        return sa.func.pg_advisory_xact_lock(key)

    def notify(self, conn: Connection, channel: str, payload: str) -> None:
        conn.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})

    @staticmethod
    def notifying(
        channel: sa.ColumnElement[str], payload: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[Any] | None:
        # Sent at commit like NOTIFY (a transaction that rolls back sends nothing).
        return sa.func.pg_notify(channel, sa.cast(payload, sa.Text))

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


_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> None:
    """``InvalidInput`` unless ``schema`` is a plain lower-case identifier."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise InvalidInput(
            "must be a plain lower-case identifier (letters, digits, underscores; at most 63)",
            field="schema",
        )
