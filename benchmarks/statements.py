"""Statements a request issues to the database, counted at the drivers.

``count_statements()`` patches, in this process only, what every statement
goes through: SQLite connections get a trace callback (which sees every
statement SQLite runs, ``BEGIN``/``COMMIT``/``SAVEPOINT``/``PRAGMA``
included), and psycopg cursors (sync and async) and connections count ``execute``,
``executemany`` (one each), plus ``BEGIN`` and ``COMMIT``/``ROLLBACK`` for
each transaction a non-autocommit connection ends. The app is then driven
in-process (Starlette's ``TestClient``, lifespan included) one request at a
time, and the statements counted between two requests belong to the first.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Counter", "count_statements", "per_request"]


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0

    def add(self, k: int = 1) -> None:
        with self._lock:
            self.n += k


@contextlib.contextmanager
def count_statements() -> Iterator[Counter]:
    """Count every statement any SQLite or psycopg connection of this process runs."""
    counter = Counter()
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, new: Any) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    original_connect = sqlite3.connect

    @functools.wraps(original_connect)
    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = original_connect(*args, **kwargs)
        conn.set_trace_callback(lambda _sql: counter.add())
        return conn

    patch(sqlite3, "connect", connect)
    patch(sqlite3.dbapi2, "connect", connect)
    try:
        import psycopg
        from psycopg.pq import TransactionStatus
    except ImportError:  # pragma: no cover - psycopg is a dependency
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None:

        def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                counter.add()
                return fn(*args, **kwargs)

            return wrapper

        def ending(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapper(conn: Any, *args: Any, **kwargs: Any) -> Any:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    counter.add(2)  # the implicit BEGIN, and this COMMIT/ROLLBACK
                return fn(conn, *args, **kwargs)

            return wrapper

        def acounted(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                counter.add()
                return await fn(*args, **kwargs)

            return wrapper

        patch(psycopg.Cursor, "execute", counted(psycopg.Cursor.execute))
        patch(psycopg.Cursor, "executemany", counted(psycopg.Cursor.executemany))
        # The async routes' statements (the store's async path: psycopg's async cursors).
        patch(psycopg.AsyncCursor, "execute", acounted(psycopg.AsyncCursor.execute))
        patch(psycopg.AsyncCursor, "executemany", acounted(psycopg.AsyncCursor.executemany))
        patch(psycopg.Connection, "commit", ending(psycopg.Connection.commit))
        patch(psycopg.Connection, "rollback", ending(psycopg.Connection.rollback))
    try:
        yield counter
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def per_request(counter: Counter, request: Callable[[], Any], n: int = 20) -> float:
    """Mean statements of ``request()`` over ``n`` calls (after two not counted)."""
    for _ in range(2):
        request()
    before = counter.n
    for _ in range(n):
        request()
    return (counter.n - before) / n
