"""The async API's connections on PostgreSQL: psycopg's ``AsyncConnection``, no thread hop.

Kept like the sync API's (``PostgresConnections``): autocommit, one cursor
each, checked before use without a round trip. An async connection belongs
to the event loop it was made on, so they are kept per loop; connections of
a loop that has closed are closed with it. At most ``pool_size +
max_overflow`` run at once per loop (more tasks wait for one), so many
concurrent tasks reuse connections instead of opening and closing them.

Waiting for an answer costs the event loop more than the query costs psycopg:
psycopg's ``wait_async`` registers the socket with the loop's selector for each
wait and removes it after (two ``epoll_ctl`` calls, a handle, a timer). Our
connections (:class:`_Connection`) keep the socket registered while they live
and only swap the future a wait resolves: measured, an async round trip costs
about half the client CPU it did (about 20 µs against 50, the sync driver 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import PQGen
from psycopg.waiting import READY_R, READY_W, WAIT_R, WAIT_W

from agentkeep.errors import AgentkeepError, StoreUnavailable
from agentkeep.store._errors import translate
from agentkeep.store._steps import Steps, arun_steps

__all__ = ["PostgresAsyncConnections"]

_IDLE = pq.TransactionStatus.IDLE
#: Inside a transaction, between statements (a failed bracketed write leaves it so).
_IN_TRANSACTION = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
_OK = pq.ConnStatus.OK


class _Connection(psycopg.AsyncConnection[Any]):
    """An async connection whose socket stays registered with its loop for reading.

    ``wait`` resolves one future per wait from the registered reader instead
    of registering the socket again. Readable with no wait pending (a notice,
    the server going away) unregisters it; the next wait registers it again.
    Waits with a timeout (psycopg's own, cancelling) go to psycopg's ``wait``
    with the socket unregistered first, as it registers it itself.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _fileno = -1
    _waiter: asyncio.Future[int] | None = None

    async def wait(
        self, gen: PQGen[Any], interval: float = 0.1, timeout: float | None = None
    ) -> Any:
        if timeout is not None:
            self.stop_reading()
            return await super().wait(gen, interval, timeout)
        try:
            state = next(gen)
            while True:
                state = gen.send(await self._ready(state))
        except StopIteration as done:
            return done.value
        except OSError as exc:
            raise psycopg.OperationalError("connection socket closed") from exc

    async def _ready(self, state: int) -> int:
        """Wait until the socket is ready as ``state`` asks; what it is ready for."""
        fileno = self.pgconn.socket
        if state & WAIT_W:  # a socket asked for writing is nearly always writable at once
            readable, writable, _ = select.select(
                [fileno] if state & WAIT_R else [], [fileno], [], 0
            )
            if readable or writable:
                return (READY_R if readable else 0) | (READY_W if writable else 0)
        loop = asyncio.get_running_loop()
        if state & WAIT_R and self._loop is not loop:
            self.stop_reading()
            loop.add_reader(fileno, self._readable)
            self._loop, self._fileno = loop, fileno
        waiter: asyncio.Future[int] = loop.create_future()
        self._waiter = waiter
        if state & WAIT_W:
            loop.add_writer(fileno, _wake, waiter, READY_W)
        try:
            return await waiter
        finally:
            self._waiter = None
            if state & WAIT_W:
                loop.remove_writer(fileno)

    def _readable(self) -> None:
        waiter = self._waiter
        if waiter is None:  # nobody waits: stop watching until somebody does
            self.stop_reading()
        else:
            _wake(waiter, READY_R)

    def stop_reading(self) -> None:
        """Unregister the socket from its loop (in the loop's thread, or with the loop stopped)."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            # The socket as registered: psycopg may have closed the connection already.
            loop.remove_reader(self._fileno)


def _wake(waiter: asyncio.Future[int], ready: int) -> None:
    if not waiter.done():
        waiter.set_result(ready)


class _Kept:
    """An async connection with its one cursor and a poller on its socket."""

    __slots__ = ("conn", "cur", "pgconn", "poller")

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.pgconn = conn.pgconn
        self.poller = select.poll()
        self.poller.register(self.pgconn.socket, select.POLLIN)

    def usable(self) -> bool:
        pgconn = self.pgconn
        if pgconn.status != _OK or pgconn.transaction_status != _IDLE:
            return False
        try:
            return not self.poller.poll(0)
        except (OSError, ValueError):
            return False

    async def roll_back(self) -> None:
        """End the transaction a failed bracketed write (``_steps.bracketed``) left open,
        so the connection can be kept; one that cannot is closed."""
        if self.pgconn.status == _OK and self.pgconn.transaction_status in _IN_TRANSACTION:
            with contextlib.suppress(psycopg.Error):
                await self.cur.execute("ROLLBACK")

    def close(self) -> None:
        """Close without awaiting (the socket goes; the loop may be gone).

        In the loop's thread, or with the loop stopped: the socket is unregistered
        from the loop first (:func:`_close_all` sees to that).
        """
        self.conn.stop_reading()
        with contextlib.suppress(Exception):
            self.pgconn.finish()


class _LoopConnections:
    __slots__ = ("idle", "slots")

    def __init__(self, size: int) -> None:
        self.idle: list[_Kept] = []
        self.slots = asyncio.Semaphore(size)


class PostgresAsyncConnections:
    """Async autocommit connections per event loop (see the module)."""

    autocommit = True

    def __init__(
        self, conninfo: str, *, synchronous_commit: str | None, size: int, timeout: float = 30.0
    ) -> None:
        self._conninfo = conninfo
        self._synchronous_commit = synchronous_commit
        self._size = max(size, 1)
        self.timeout = timeout  # how long a task waits for a connection of its loop
        self._loops: dict[asyncio.AbstractEventLoop, _LoopConnections] = {}
        self._guard = threading.Lock()
        self._closed = False

    def _for_loop(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        mine = self._loops.get(loop)
        if mine is None:
            with self._guard:
                for other in [lp for lp in self._loops if lp.is_closed()]:
                    for kept in self._loops.pop(other).idle:
                        kept.close()
                mine = self._loops[loop] = _LoopConnections(self._size)
        return mine

    async def _connect(self) -> _Kept:
        conn = await _Connection.connect(
            self._conninfo, autocommit=True, connect_timeout=10, application_name="agentkeep"
        )
        if self._synchronous_commit is not None:
            await conn.execute(f"SET synchronous_commit = {self._synchronous_commit}")
        # As the sync connections: no sorts, so recent() reads the seq index backwards.
        await conn.execute("SET enable_sort = off")
        await conn.execute("SET jit = off")  # as the sync connections (a sort would JIT)
        return _Kept(conn)

    async def _slot(self, mine: _LoopConnections, what: str) -> None:
        """Take one of the loop's ``size`` places; wait ``timeout`` seconds at most for one
        (as SQLAlchemy's pool and the sync connections), then ``StoreUnavailable``."""
        if not mine.slots.locked():
            await mine.slots.acquire()  # free: taken at once
            return
        try:
            await asyncio.wait_for(mine.slots.acquire(), self.timeout)
        except TimeoutError:
            raise StoreUnavailable(
                f"{what}: all {self._size} async connections of this event loop stayed in use "
                f"for {self.timeout:g} s (AGENTKEEP_POOL_SIZE + AGENTKEEP_POOL_MAX_OVERFLOW)"
            ) from None

    async def run(self, what: str, steps: Callable[[], Steps[Any]]) -> Any:
        """A write (autocommit: one statement) or a read."""
        mine = self._for_loop()
        try:
            await self._slot(mine, what)
            try:
                kept = None
                while mine.idle:
                    candidate = mine.idle.pop()
                    if candidate.usable():
                        kept = candidate
                        break
                    candidate.close()
                if kept is None:
                    kept = await self._connect()
                try:
                    result = await arun_steps(kept.cur, steps())
                except BaseException:
                    await kept.roll_back()
                    if kept.usable() and not self._closed:
                        mine.idle.append(kept)
                    else:
                        kept.close()
                    raise
                if self._closed:
                    kept.close()
                else:
                    mine.idle.append(kept)
                return result
            finally:
                mine.slots.release()
        except AgentkeepError:
            raise
        except psycopg.Error as exc:
            raise translate(exc, what) from exc

    write = run
    read = run

    def close(self) -> None:
        self._closed = True
        with self._guard:
            for loop, mine in self._loops.items():
                _close_all(loop, mine.idle)
                mine.idle = []
            self._loops.clear()


def _close_all(loop: asyncio.AbstractEventLoop, kept: list[_Kept]) -> None:
    """Close ``loop``'s connections: in its thread when it runs in another (``AsyncStore.close``
    closes the store in a worker thread), since its selector is only the loop's to change."""
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if not here and loop.is_running():
        with contextlib.suppress(RuntimeError):  # closed meanwhile: close them here
            loop.call_soon_threadsafe(_close_each, kept)
            return
    _close_each(kept)


def _close_each(kept: list[_Kept]) -> None:
    for one in kept:
        one.close()
