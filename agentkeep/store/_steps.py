"""Operations written once, run by a sync or an async driver (no I/O in between).

An operation that needs a native async twin is written as a generator that
does no I/O itself (the httpcore idea: sync and async over one base):

- it ``yield``s a :class:`Write` or :class:`Read` and gets back what the
  statements returned (or has their ``AgentkeepError`` thrown in);
- the statements themselves are another generator (``Steps``) that yields
  :class:`Stmt` and gets back rows or a row count.

``run_steps`` runs statements on a sync driver cursor, ``arun_steps`` on an
async one; ``Core.run_op`` and ``Core.arun_op`` run the operations. The
``@op`` decorator turns an operation into the sync method callers see and
keeps the generator for the async API (``_aio_util.arun_op``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import Any, NamedTuple, ParamSpec, TypeVar

__all__ = [
    "BEGIN",
    "COMMIT",
    "COUNT",
    "MANY",
    "ROWS",
    "Op",
    "Read",
    "Steps",
    "Stmt",
    "Write",
    "arun_steps",
    "bracketed",
    "op",
    "operation",
    "run_steps",
    "single",
]

T = TypeVar("T")
P = ParamSpec("P")

#: What a statement gives back: its rows, its row count, or nothing (executemany).
ROWS, COUNT, MANY = 0, 1, 2


class Stmt(NamedTuple):
    """One statement to run: compiled SQL, its parameters, and what to give back."""

    sql: str
    params: Any
    result: int = ROWS


#: Statements of one unit of work; returns the unit's result.
Steps = Generator[Stmt, Any, T]


class Write(NamedTuple):
    """Run ``steps()`` in a write, committed before the operation goes on.

    Several statements commit together on SQLite (its writes are one
    transaction) and inside ``store.transaction()``; PostgreSQL's own
    connections are in autocommit, where each statement commits alone unless
    the write is ``atomic`` (then ``BEGIN`` ... ``COMMIT`` around them: two
    round trips more, so a write that can be one statement is written as one).
    """

    what: str
    steps: Callable[[], Steps[Any]]
    #: The statements delete rows that others point to (``ON DELETE CASCADE``): they
    #: run only on connections that enforce foreign keys (``OwnConnections.cascades``).
    cascades: bool = False
    #: The statements commit together on every backend: on autocommit connections
    #: (PostgreSQL's own) they run between BEGIN and COMMIT (:func:`bracketed`), which
    #: also lets a lock taken by one hold for the rest.
    atomic: bool = False


class Read(NamedTuple):
    """Run ``steps()`` in a read."""

    what: str
    steps: Callable[[], Steps[Any]]


#: An operation: yields reads and writes, returns its result.
Op = Generator[Write | Read, Any, T]


BEGIN = Stmt("BEGIN", None, COUNT)
COMMIT = Stmt("COMMIT", None, COUNT)


def bracketed(steps: Callable[[], Steps[T]]) -> Callable[[], Steps[T]]:
    """``steps`` as one transaction on an autocommit connection: BEGIN first, COMMIT
    last. If they fail, the connection is left in the transaction: its holder rolls it
    back (``PostgresConnections``)."""

    def inside() -> Steps[T]:
        yield BEGIN
        result = yield from steps()
        yield COMMIT
        return result

    return inside


def run_steps(cur: Any, steps: Steps[T]) -> T:
    """Run ``steps`` on a sync driver cursor (sqlite3 or psycopg)."""
    value: Any = None
    try:
        while True:
            stmt = steps.send(value)
            if stmt.result == MANY:
                cur.executemany(stmt.sql, stmt.params)
                value = None
            else:
                cur.execute(stmt.sql, stmt.params)
                value = cur.fetchall() if stmt.result == ROWS else cur.rowcount
    except StopIteration as done:
        result: T = done.value
        return result


async def arun_steps(cur: Any, steps: Steps[T]) -> T:
    """Run ``steps`` on an async driver cursor (psycopg's ``AsyncCursor``)."""
    value: Any = None
    try:
        while True:
            stmt = steps.send(value)
            if stmt.result == MANY:
                await cur.executemany(stmt.sql, stmt.params)
                value = None
            else:
                await cur.execute(stmt.sql, stmt.params)
                value = await cur.fetchall() if stmt.result == ROWS else cur.rowcount
    except StopIteration as done:
        result: T = done.value
        return result


def op(fn: Callable[P, Op[T]]) -> Callable[P, T]:
    """The sync method for an operation of a resource (``self._core`` runs it).

    The generator function stays reachable as ``method.op`` for the async API.
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        resource: Any = args[0]
        result: T = resource._core.run_op(fn(*args, **kwargs))
        return result

    run.op = fn  # type: ignore[attr-defined]
    return run


def operation(method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Op[T]:
    """The operation (the generator) a bound method made by :func:`op` runs for these
    arguments: to run in another operation (``yield from``) or on another driver."""
    resource: Any = getattr(method, "__self__")  # noqa: B009 (a bound method's owner)
    found: Op[T] = getattr(method, "op")(resource, *args, **kwargs)  # noqa: B009
    return found


def single(stmt: Stmt) -> Callable[[], Steps[Any]]:
    """The steps of a unit of one statement (for a :class:`Read` or :class:`Write`): what
    it returns."""

    def steps() -> Steps[Any]:
        found = yield stmt
        return found

    return steps
