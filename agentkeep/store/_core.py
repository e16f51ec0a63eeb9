"""Transactions over one database, shared by every tenant view of a store.

``write()`` opens a write transaction (BEGIN IMMEDIATE on SQLite, behind the
process's one-writer guard); ``read()`` a read. Both nest: inside an open
transaction of this thread, a nested ``write()`` is a savepoint of it, so
``with store.transaction(): ...`` makes several operations one atomic write.
``after_commit(fn)`` registers a side effect (waking readers, ...) that runs
once the outermost write commits, and is dropped when the write (or the
savepoint it was registered in) rolls back, like SQLAlchemy's
``after_commit`` event. Driver errors are translated on the way out.

``run_op()`` runs an operation written once (``_steps``): its statements on a
driver cursor, the current transaction's connection when this thread has one
open (a write in a savepoint of it), else one of the dialect's own kept
connections (``dialects/``) in a transaction of its own. ``arun_op()`` runs
the same operation for the async API on the dialect's async connections.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Connection

from agentkeep.config import RecordLimits
from agentkeep.errors import AgentkeepError, Conflict
from agentkeep.store._errors import translating
from agentkeep.store._steps import Op, Read, Steps, Write, bracketed, run_steps
from agentkeep.store.dialects import Dialect
from agentkeep.store.dialects.base import AsyncConnections
from agentkeep.store.message_sql import MessageSQL
from agentkeep.store.metrics import StoreCounters

if TYPE_CHECKING:
    from agentkeep.store.prices import PriceFile

__all__ = ["Core"]

log = logging.getLogger("agentkeep.store")
T = TypeVar("T")


def _run_new_steps(steps: Callable[[], Steps[T]], cur: Any) -> T:
    return run_steps(cur, steps())


def _cursor(conn: Connection) -> Any:
    """A driver cursor on the connection of a SQLAlchemy transaction."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver.cursor()


class _Local(threading.local):
    """This thread's open transaction, if any.

    Class-level defaults: a thread that never opened one reads them without the
    AttributeError that ``getattr(local, name, default)`` raises and catches
    (measured: most of the cost of a check made on every append and read).
    """

    conn: Connection | None = None
    writing: bool = False
    hooks: list[Callable[[], None]] | None = None
    """What to run once the open write commits (None outside a write)."""
    last: list[Callable[[], None]] | None = None
    """Writes to make at the end of the open write, just before it commits."""
    gathered: dict[Callable[[list[Any]], None], list[Any]] | None = None
    """The items of :meth:`Core.gather_before_commit`, by write, once the open write ends."""
    savepoints: bool = True
    """Whether the calls inside the open write take savepoints of their own."""
    failed: str | None = None
    """What failed inside an open write without savepoints (it can then only roll back)."""
    made: dict[tuple[str, str], None] | None = None
    """The (tenant, id) of the sessions the open write inserted, in order."""
    prices: dict[tuple[str, str, str], Any] | None = None
    """The stored prices the open write read, by (tenant, provider, model): see :meth:`Core.known_prices`."""


class Core:
    """The engine, dialect and transaction state behind a store."""

    def __init__(self, dialect: Dialect, url: str) -> None:
        self.dialect = dialect
        self.url = url
        self.engine = dialect.engine
        self._local = _Local()
        self.closed = False
        self.message_sql: MessageSQL = dialect.message_sql
        self.own = dialect.own_connections()
        """The dialect's own driver connections, for the message statements outside a transaction."""
        self._aio: AsyncConnections | None = None
        self.price_file: PriceFile | None = None
        """The ``AGENTKEEP_PRICES`` file's prices, when set (``store.prices``)."""
        self.counters = StoreCounters()
        """Operation counts and latencies of this store in this process (``store.get_metrics()``)."""
        self.limits = RecordLimits()
        """Size limits of media and session records (``AGENTKEEP_MEDIA_MAX_BYTES``, ...)."""

    def connection(self) -> Connection | None:
        """The connection of this thread's open ``write()`` or ``read()`` block (None: none)."""
        return self._local.conn

    def in_transaction(self) -> bool:
        """Whether this thread is inside a ``write()`` or ``read()`` block."""
        return self._local.conn is not None

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once this thread's open write commits; at once outside a write.

        Dropped if the write, or the savepoint it was registered in, rolls
        back. Hooks run in the order they were registered, in the committing
        thread; one that raises is logged and does not stop the others (the
        data is committed by then).
        """
        hooks = self._local.hooks
        if hooks is None or not self._local.writing:
            fn()
        else:
            hooks.append(fn)

    def note_new_session(self, tenant_id: str, session_id: str) -> None:
        """Note that the open write inserted this session (nothing outside a write)."""
        made = self._local.made
        if made is not None and self._local.writing:
            made[tenant_id, session_id] = None

    def is_new_session(self, tenant_id: str, session_id: str) -> bool:
        """Whether this thread's open write inserted the session (and did not roll it back):
        then it exists until the write ends, and no other can delete it meanwhile, so a
        row that refers to it needs no read of it first."""
        made = self._local.made
        return made is not None and (tenant_id, session_id) in made

    def known_prices(self) -> dict[tuple[str, str, str], Any] | None:
        """The stored prices this thread's open write read, for its other calls to price.

        A round of calls (the settles of many responses, say) reads each
        model's price once instead of once per call. The write sees the table
        as of its first read of a price; ``store.prices`` writes in it forget
        them (:meth:`forget_prices`). None outside a write: read each time.
        """
        local = self._local
        if not local.writing:
            return None
        if local.prices is None:
            local.prices = {}
        return local.prices

    def forget_prices(self) -> None:
        """Forget the prices the open write read: it changes the price table."""
        self._local.prices = None

    def before_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (a write) at the end of this thread's open write, just before it commits.

        For writes to rows many transactions share (a day's usage totals): made
        last, their row locks are held for the commit only, not for the rest
        of the transaction. Outside a write, at once. Dropped with a savepoint
        that rolls back; if ``fn`` raises, the transaction rolls back.
        """
        last = self._local.last
        if last is None or not self._local.writing:
            fn()
        else:
            last.append(fn)

    def gather_before_commit(self, flush: Callable[[list[T]], None], item: T) -> None:
        """:meth:`before_commit` for writes that cost less made together.

        At the end of the open write, ``flush`` is called once with every item
        registered with it in the write, in order (those of savepoints that
        rolled back left out): one upsert per shared row, say, where each
        call would make its own. ``flush`` is the key (a module function, not
        a new partial each time). Outside a write, ``flush([item])`` at once.
        """
        last = self._local.last
        if last is None or not self._local.writing:
            flush([item])
        else:
            last.append(functools.partial(self._gather, last, flush, item))

    def _gather(
        self, last: list[Callable[[], None]], flush: Callable[[list[T]], None], item: T
    ) -> None:
        """At the end of the write: add ``item`` to ``flush``'s; the first one registers the flush."""
        gathered = self._local.gathered
        if gathered is None:
            gathered = self._local.gathered = {}
        items = gathered.get(flush)
        if items is None:
            items = gathered[flush] = []
            last.append(functools.partial(self._flush_gathered, flush))
        items.append(item)

    def _flush_gathered(self, flush: Callable[[list[Any]], None]) -> None:
        gathered = self._local.gathered
        assert gathered is not None
        flush(gathered.pop(flush))

    @contextmanager
    def write(self, what: str = "write", *, savepoints: bool | None = None) -> Iterator[Connection]:
        """A write transaction; committed when the block ends without error.

        Inside an open write it is a savepoint of it, unless the outermost
        write was opened with ``savepoints=False``: then nested writes share
        the transaction without one (two statements fewer each), and one that
        fails fails the whole transaction (see :meth:`_share`). ``savepoints``
        of a nested write: True takes a savepoint whatever the outer mode.
        """
        with self.counters.timing("write", what), self._write(what, savepoints) as conn:
            yield conn

    @contextmanager
    def _write(self, what: str, savepoints: bool | None = None) -> Iterator[Connection]:
        current = self.connection()
        if current is not None:
            if not self._local.writing:
                raise Conflict(
                    f"cannot write ({what}) inside store.reading(): the block is read-only; "
                    "write outside it, or read and write in store.transaction()"
                )
            self._check_not_failed(what)
            if savepoints or (savepoints is None and self._local.savepoints):
                with self._savepoint(current, what):
                    yield current
            else:
                with self._share(what):
                    yield current
            return
        hooks: list[Callable[[], None]] = []
        last: list[Callable[[], None]] = []
        with translating(what), self.dialect.write_guard(), self.engine.connect() as conn:
            conn.execution_options(agentkeep_write=True)
            with conn.begin():
                local = self._local
                local.conn, local.writing, local.hooks, local.last = conn, True, hooks, last
                local.savepoints, local.failed, local.made = savepoints is not False, None, {}
                try:
                    yield conn
                    if local.failed is not None:  # a failure inside was caught: roll back
                        raise Conflict(_failed_message(local.failed, what))
                    while last:  # in order; one may register more
                        last.pop(0)()
                finally:
                    local.conn, local.writing, local.hooks, local.last = None, False, None, None
                    local.savepoints, local.failed, local.gathered = True, None, None
                    local.made = local.prices = None
        _run_hooks(hooks)

    @contextmanager
    def _savepoint(self, current: Connection, what: str) -> Iterator[None]:
        """A nested write in a savepoint: if it fails, the transaction is as it was before it."""
        hooks, last, failed = self._local.hooks, self._local.last, self._local.failed
        made = self._local.made
        mark = len(hooks) if hooks is not None else 0
        last_mark = len(last) if last is not None else 0
        made_mark = len(made) if made is not None else 0
        try:
            with translating(what), current.begin_nested():
                yield
        except BaseException:
            if hooks is not None:
                del hooks[mark:]  # the savepoint's side effects go with it
            if last is not None:
                del last[last_mark:]
            if made is not None:  # and the sessions it inserted
                for key in list(made)[made_mark:]:
                    del made[key]
            self._local.failed = failed  # and so does what failed inside it
            self._local.prices = None  # and the prices read since it began (it may have set one)
            raise

    @contextmanager
    def _share(self, what: str) -> Iterator[None]:
        """A nested write without a savepoint: if it fails, the transaction only rolls back.

        What it wrote before failing cannot be undone alone, so the whole
        transaction is marked failed: later calls in it raise ``Conflict``,
        and it rolls back when its block ends, even if the failure was caught.
        """
        try:
            with translating(what):
                yield
        except BaseException:
            self._local.failed = what
            raise

    def _check_not_failed(self, what: str) -> None:
        failed = self._local.failed
        if failed is not None:
            raise Conflict(_failed_message(failed, what))

    @contextmanager
    def read(self, what: str = "read", *, batches: bool = False) -> Iterator[Connection]:
        """A read; inside an open transaction, that transaction's connection.

        ``batches``: the read fetches a large result in batches (``yield_per``),
        which on PostgreSQL is a server-side cursor and needs a transaction;
        other reads there run in autocommit (``Dialect.plain_read``).
        """
        with self.counters.timing("read", what), self._read(what, batches) as conn:
            yield conn

    @contextmanager
    def _read(self, what: str, batches: bool = False) -> Iterator[Connection]:
        current = self.connection()
        if current is not None:
            self._check_not_failed(what)
            yield current
            return
        with translating(what), self.dialect.read_guard(), self.engine.connect() as conn:
            if not batches:
                self.dialect.plain_read(conn)
            self._local.conn = conn
            self._local.writing = False
            try:
                yield conn
            finally:
                self._local.conn = None
                if conn.in_transaction():
                    conn.rollback()

    def run_write(self, what: str, work: Callable[[Any], T]) -> T:
        """``work(cursor)`` in a write, committed before this returns unless a transaction is open.

        Inside this thread's transaction: on its connection, in a savepoint (a
        failed write leaves the transaction as it was), or with ``savepoints=False``
        sharing it (a failed write fails it).
        """
        if self._local.conn is None:
            started, ok = perf_counter(), False
            try:
                result = self.own.write(what, work)
                ok = True
                return result
            finally:
                self.counters.add("write", what, perf_counter() - started, ok)
        with self.write(what) as conn:
            return work(_cursor(conn))

    def run_read(self, what: str, work: Callable[[Any], T]) -> T:
        """``work(cursor)`` in a read (this thread's transaction, if one is open)."""
        conn = self._local.conn
        started, ok = perf_counter(), False
        try:
            if conn is None:
                result = self.own.read(what, work)
            else:
                self._check_not_failed(what)
                with translating(what):
                    result = work(_cursor(conn))
            ok = True
            return result
        finally:
            self.counters.add("read", what, perf_counter() - started, ok)

    def run_op(self, operation: Op[T]) -> T:
        """Run an operation (``_steps``): each of its reads and writes, in order."""
        value: Any = None
        error: AgentkeepError | None = None
        while True:
            try:
                request = operation.send(value) if error is None else operation.throw(error)
            except StopIteration as done:
                result: T = done.value
                return result
            value, error = None, None
            steps = request.steps
            # (inside a transaction, its statements are in one already)
            own_atomic = type(request) is Write and request.atomic and self._local.conn is None
            if own_atomic and self.own.autocommit:
                steps = bracketed(steps)
            work = functools.partial(_run_new_steps, steps)
            try:
                if type(request) is Read:
                    value = self.run_read(request.what, work)
                elif isinstance(request, Write) and request.cascades and not self.own.cascades:
                    # (inside a transaction, _write runs it on the transaction's connection)
                    with self.counters.timing("write", request.what):
                        value = self._write_cascading(request)
                else:
                    value = self.run_write(request.what, work)
            except AgentkeepError as exc:
                error = exc

    def _write_cascading(self, request: Write) -> Any:
        """A write whose deletes cascade, where the own connections do not enforce foreign
        keys (SQLite's writer): in a transaction of the engine, whose connections do."""
        with self._write(request.what) as conn:
            return _run_new_steps(request.steps, _cursor(conn))

    @property
    def aio(self) -> AsyncConnections:
        """The dialect's async connections (made on first use)."""
        if self._aio is None:
            with self.dialect.write_guard():
                if self._aio is None:
                    self._aio = self.dialect.async_connections(self.own)
        return self._aio

    async def arun_op(self, operation: Op[T]) -> T:
        """``run_op`` for the async API: on the async connections, no thread hop per call.

        Inside a transaction this thread opened (the sync API's), the
        operation joins it, as ``run_op`` would.
        """
        if self._local.conn is not None:
            return self.run_op(operation)
        aio = self.aio
        value: Any = None
        error: AgentkeepError | None = None
        while True:
            try:
                request = operation.send(value) if error is None else operation.throw(error)
            except StopIteration as done:
                result: T = done.value
                return result
            value, error = None, None
            kind = "read" if type(request) is Read else "write"
            started, ok = perf_counter(), False
            try:
                if kind == "read":
                    value = await aio.read(request.what, request.steps)
                elif isinstance(request, Write) and request.cascades and not self.own.cascades:
                    value = await asyncio.to_thread(self._write_cascading, request)
                elif type(request) is Write and request.atomic and aio.autocommit:
                    value = await aio.write(request.what, bracketed(request.steps))
                else:
                    value = await aio.write(request.what, request.steps)
                ok = True
            except AgentkeepError as exc:
                error = exc
            finally:
                self.counters.add(kind, request.what, perf_counter() - started, ok)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._aio is not None:
                self._aio.close()
            self.own.close()
            self.dialect.dispose()


def _failed_message(failed: str, what: str) -> str:
    return (
        f"cannot go on ({what}): {failed} failed earlier in this transaction, which takes no "
        "savepoints (store.transaction(savepoints=False)), so it can only roll back"
    )


def _run_hooks(hooks: list[Callable[[], None]]) -> None:
    for fn in hooks:
        try:
            fn()
        except Exception:  # committed already: report it, run the others
            log.exception("an after-commit hook failed: %r", fn)
