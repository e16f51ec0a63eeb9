"""The async API's connections on PostgreSQL: psycopg's ``AsyncConnection``, no thread hop.

Kept like the sync API's (``PostgresConnections``): autocommit, one cursor
each, checked before use without a round trip. An async connection belongs
to the event loop it was made on, so they are kept per loop; connections of
a loop that has closed are closed with it. At most ``pool_size +
max_overflow`` run at once per loop (more tasks wait for one), so many
concurrent tasks reuse connections instead of opening and closing them.
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

from agentkeep.errors import AgentkeepError
from agentkeep.store._errors import translate
from agentkeep.store._steps import Steps, arun_steps

__all__ = ["PostgresAsyncConnections"]

_IDLE = pq.TransactionStatus.IDLE
_OK = pq.ConnStatus.OK


class _Kept:
    """An async connection with its one cursor and a poller on its socket."""

    __slots__ = ("cur", "pgconn", "poller")

    def __init__(self, cur: psycopg.AsyncCursor[Any]) -> None:
        self.cur = cur
        self.pgconn = cur.connection.pgconn
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

    def close(self) -> None:
        """Close without awaiting (the socket goes; the loop may be gone)."""
        with contextlib.suppress(Exception):
            self.pgconn.finish()


class _LoopConnections:
    __slots__ = ("idle", "slots")

    def __init__(self, size: int) -> None:
        self.idle: list[_Kept] = []
        self.slots = asyncio.Semaphore(size)


class PostgresAsyncConnections:
    """Async autocommit connections per event loop (see the module)."""

    def __init__(self, conninfo: str, *, synchronous_commit: str | None, size: int) -> None:
        self._conninfo = conninfo
        self._synchronous_commit = synchronous_commit
        self._size = max(size, 1)
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
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=10, application_name="agentkeep"
        )
        if self._synchronous_commit is not None:
            await conn.execute(f"SET synchronous_commit = {self._synchronous_commit}")
        # As the sync connections: no sorts, so recent() reads the seq index backwards.
        await conn.execute("SET enable_sort = off")
        return _Kept(conn.cursor())

    async def run(self, what: str, steps: Callable[[], Steps[Any]]) -> Any:
        mine = self._for_loop()
        try:
            async with mine.slots:
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
        except AgentkeepError:
            raise
        except psycopg.Error as exc:
            raise translate(exc, what) from exc

    write = run
    read = run

    def close(self) -> None:
        self._closed = True
        with self._guard:
            for mine in self._loops.values():
                for kept in mine.idle:
                    kept.close()
                mine.idle.clear()
            self._loops.clear()
