"""A test's threads: run together, and waited on by condition (never for a fixed time)."""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from agentkeep import Store

WAIT_S = 60.0
"""The longest a test waits for another thread to get somewhere before it fails."""


def server_sessions(store: Store, condition: str) -> int:
    """How many sessions of ``store``'s PostgreSQL database meet ``condition`` (SQL over
    ``pg_stat_activity``): waiting for a lock, left idle in a transaction."""
    with store._core.engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                f"WHERE datname = current_database() AND {condition}"
            )
        ).scalar()
    return int(found or 0)


def waits_for_a_lock(store: Store, thread: threading.Thread) -> bool:
    """Whether ``thread`` is stopped on the store's write lock (or PostgreSQL's row lock)."""
    if store.url.startswith("postgresql"):
        return bool(server_sessions(store, "wait_event_type = 'Lock'"))
    frame = sys._current_frames().get(thread.ident or -1)
    # SQLite: one writer per process; a waiting writer's innermost Python frame is the
    # ``with`` that acquires the write lock (the acquire itself is C).
    if frame is None:
        return False
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    return "with " in line and ("_lock" in line or "write_guard()" in line)


def until_it_waits(
    store: Store, thread: threading.Thread, ended: Callable[[], bool], what: str
) -> None:
    """Return once ``thread`` waits for a lock of the store's database, or ``ended()``;
    fail naming ``what`` if neither comes within :data:`WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while not ended() and not waits_for_a_lock(store, thread):
        assert time.monotonic() < deadline, f"{what} neither waited nor ended"
        time.sleep(0.01)


def in_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(i)`` for ``i`` in ``range(n)``, each in a thread of its own, started together;
    the results in order (a thread's exception fails the test)."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT_S * 2)
    assert errors == []
    return results


def no_worker_threads(monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    """Make ``asyncio.to_thread`` fail for the rest of the test, naming ``what``: the async
    calls made after this must run on the event loop (the store's async API), not hop to
    a worker thread."""

    def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{what} went through asyncio.to_thread")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
