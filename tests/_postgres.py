"""Ending PostgreSQL backends from outside, as a crashed server or a network cut would."""

from __future__ import annotations

import threading
from typing import Any

import psycopg


def terminate_backends(url: str, where: str, args: tuple[Any, ...] = ()) -> list[tuple[int, bool]]:
    """``pg_terminate_backend`` each backend of ``url``'s database matching ``where``.

    Returns ``(pid, ended)`` per backend matched, once every ended one is gone
    from ``pg_stat_activity`` (so the next use of a client meets a dead socket).
    """
    with psycopg.connect(url, autocommit=True) as admin:
        rows: list[tuple[int, bool]] = admin.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}",
            args,
        ).fetchall()
        pids = [pid for pid, ended in rows if ended]
        for _ in range(1000):
            left = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()
            if left == (0,):
                return rows
            threading.Event().wait(0.01)
    raise AssertionError(f"backends {pids} still running")
