"""Idle driver connections kept by a store outside SQLAlchemy's pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

__all__ = ["Idle", "forks"]

# How many times this process is a forked child: connections made before a fork
# belong to the parent (counted instead of calling getpid on every use).
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def forks() -> int:
    """How many times this process is a forked child (connections belong to one value)."""
    return _forks


class Idle:
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
