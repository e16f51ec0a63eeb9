"""Waiting on another thread's database lock, by condition (never for a fixed time)."""

from __future__ import annotations

import linecache
import sys
import threading

import sqlalchemy as sa

from agentkeep import Store

WAIT_S = 60.0
"""The longest a test waits for another thread to get somewhere before it fails."""


def waits_for_a_lock(store: Store, thread: threading.Thread) -> bool:
    """Whether ``thread`` is stopped on the store's write lock (or PostgreSQL's row lock)."""
    if store.url.startswith("postgresql"):
        with store._core.engine.connect() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar()
        return bool(waiting)
    frame = sys._current_frames().get(thread.ident or -1)
    # SQLite: one writer per process; a waiting writer's innermost Python frame is the
    # ``with`` that acquires the write lock (the acquire itself is C).
    if frame is None:
        return False
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    return "with " in line and ("_lock" in line or "write_guard()" in line)
