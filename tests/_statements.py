"""Every SQL statement sent to the database while a block runs, whichever layer sends it.

The store sends statements through SQLAlchemy and, on its message path
(``store/message_sql.py``) and the async path, on the driver's own cursors. A
listener on the engine sees only the first, so a test that counts the
statements of an operation there would pass whatever the driver-level path
sent. They are seen where both end instead:

- **SQLite**: a trace callback on every connection of the process (and on those
  opened during the block) sees every statement SQLite runs, ``BEGIN``,
  ``COMMIT``, ``SAVEPOINT`` and ``RELEASE`` included, with the parameters'
  values inlined;
- **PostgreSQL**: psycopg's cursors, sync and async, record each ``execute`` and
  ``executemany`` (the text as sent, placeholders kept). psycopg's implicit
  ``BEGIN`` and a connection's ``commit()`` send no statement of their own there.

So the transaction control differs between the backends: compare
:func:`work` (the statements without it) across backends. An ``executemany``
is one statement per row on SQLite (what SQLite runs) and one on PostgreSQL;
:func:`engine_calls` counts SQLAlchemy's calls instead, one per ``execute`` or
``executemany``, for a test about how a write is batched.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import sqlalchemy as sa

from agentkeep import Store

__all__ = ["BACKGROUND", "engine_calls", "rendered_per_call", "sent_statements", "verbs", "work"]

# The names of the library's background threads: a service's run worker (polling for
# queued runs and responses beside a request), a LangGraph store's TTL sweep, scheduled
# backups, a lock's heartbeat, the remote events' listener.
BACKGROUND = (
    "agentkeep-run",
    "agentkeep-ttl-sweeper",
    "agentkeep-backups",
    "agentkeep-lock-",
    "agentkeep-remote-events",
)

# Transaction control, and the settings a connection is opened with (a new reader's PRAGMAs).
_CONTROL = ("BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "SET")


def work(statements: list[str]) -> list[str]:
    """The statements but the transaction control (BEGIN, COMMIT, SAVEPOINT, ...) and the
    connection settings (PRAGMA, SET)."""
    return [s for s in statements if s.split(None, 1)[0].upper() not in _CONTROL]


def verbs(statements: list[str]) -> list[str]:
    """The first word of each of :func:`work`'s statements, upper case: ``["SELECT", ...]``."""
    return [s.split(None, 1)[0].upper() for s in work(statements)]


def _text(query: Any, cursor: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode()
    return str(query.as_string(cursor.connection))  # psycopg.sql.Composable


@contextlib.contextmanager
def sent_statements(store: Store) -> Iterator[list[str]]:
    """The statements sent to ``store``'s database (by any connection of this process), in
    the order they start, as the block sends them; not those of the library's background
    threads (:data:`BACKGROUND`), which run on their own schedule. Statements that are
    not SQL text (SQLite's ``-- TRIGGER`` lines) are left out."""
    del store  # every connection is watched: the store's own and its engine's alike
    statements: list[str] = []
    lock = threading.Lock()

    def seen(sql: str) -> None:
        if sql.startswith("--"):
            return
        if threading.current_thread().name.startswith(BACKGROUND):
            return
        with lock:
            statements.append(sql.strip())

    traced: list[sqlite3.Connection] = []

    def trace(conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed
            conn.set_trace_callback(seen)
            traced.append(conn)

    for obj in gc.get_objects():
        if isinstance(obj, sqlite3.Connection):
            trace(obj)

    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, new: Any) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    connect = sqlite3.connect

    @functools.wraps(connect)
    def connect_traced(*args: Any, **kwargs: Any) -> Any:
        conn = connect(*args, **kwargs)
        trace(conn)
        return conn

    def recorded(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen(_text(query, cursor))
            return fn(cursor, query, *args, **kwargs)

        return execute

    def arecorded(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen(_text(query, cursor))
            return await fn(cursor, query, *args, **kwargs)

        return execute

    patch(sqlite3, "connect", connect_traced)
    patch(sqlite3.dbapi2, "connect", connect_traced)
    for cls, wrap in ((psycopg.Cursor, recorded), (psycopg.AsyncCursor, arecorded)):
        for name in ("execute", "executemany"):
            patch(cls, name, wrap(getattr(cls, name)))
    try:
        yield statements
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
        for conn in traced:
            with contextlib.suppress(sqlite3.ProgrammingError):
                conn.set_trace_callback(None)


def engine_calls(store: Store) -> contextlib.AbstractContextManager[list[str]]:
    """The statements of ``store``'s SQLAlchemy engine, one per ``execute`` or
    ``executemany`` call, in order: not those sent on the driver's own cursors."""
    return _on_engine(store, lambda context: True)


def rendered_per_call(store: Store) -> contextlib.AbstractContextManager[list[str]]:
    """The statements of ``store``'s engine that SQLAlchemy rendered again at the call (a
    list bound as one expanding parameter), where a statement compiled once is sent as
    it is."""
    return _on_engine(
        store,
        lambda context: bool(
            getattr(getattr(context, "compiled", None), "post_compile_params", ())
        ),
    )


@contextlib.contextmanager
def _on_engine(store: Store, keep: Callable[[Any], bool]) -> Iterator[list[str]]:
    """The statements of ``store``'s engine whose execution context ``keep`` keeps."""
    calls: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any) -> None:
        if keep(context):
            calls.append(statement)

    engine = store._core.engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        yield calls
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
