"""Transactions over one database, shared by every tenant view of a store.

``write()`` opens a write transaction (BEGIN IMMEDIATE on SQLite, behind the
process's one-writer guard); ``read()`` a read. Both nest: inside an open
transaction of this thread, a nested ``write()`` is a savepoint of it, so
``with store.transaction(): ...`` makes several operations one atomic write.
Driver errors are translated on the way out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from agentkeep.store._dialects import Dialect
from agentkeep.store._errors import translating
from agentkeep.store._fastpath import FastPath, make_fastpath

__all__ = ["Core"]


class _Local(threading.local):
    """This thread's open transaction, if any.

    Class-level defaults: a thread that never opened one reads them without the
    AttributeError that ``getattr(local, name, default)`` raises and catches
    (measured: most of the cost of a check made on every append and read).
    """

    conn: Connection | None = None
    writing: bool = False


class Core:
    """The engine, dialect and transaction state behind a store."""

    def __init__(self, dialect: Dialect, url: str) -> None:
        self.dialect = dialect
        self.url = url
        self.engine = dialect.engine
        self._local = _Local()
        self.closed = False
        self.fast: FastPath | None = make_fastpath(dialect)
        """Driver-level hot paths (messages); usable when ``in_transaction()`` is False."""

    def _current(self) -> Connection | None:
        return self._local.conn

    def in_transaction(self) -> bool:
        """Whether this thread is inside a ``write()`` or ``read()`` block."""
        return self._local.conn is not None

    @contextmanager
    def write(self, what: str = "write") -> Iterator[Connection]:
        """A write transaction; committed when the block ends without error."""
        current = self._current()
        if current is not None:
            if not self._local.writing:
                raise RuntimeError("cannot write inside a read-only transaction")
            with translating(what), current.begin_nested():
                yield current
            return
        with translating(what), self.dialect.write_guard(), self.engine.connect() as conn:
            conn.execution_options(agentkeep_write=True)
            with conn.begin():
                self._local.conn = conn
                self._local.writing = True
                try:
                    yield conn
                finally:
                    self._local.conn = None
                    self._local.writing = False

    @contextmanager
    def read(self, what: str = "read") -> Iterator[Connection]:
        """A read; inside an open transaction, that transaction's connection."""
        current = self._current()
        if current is not None:
            yield current
            return
        with translating(what), self.dialect.read_guard(), self.engine.connect() as conn:
            self._local.conn = conn
            self._local.writing = False
            try:
                yield conn
            finally:
                self._local.conn = None
                if conn.in_transaction():
                    conn.rollback()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.fast is not None:
                self.fast.close()
            self.dialect.dispose()
