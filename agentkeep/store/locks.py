"""Named locks across threads and processes: ``with store.lock("name", ttl=30, wait=10):``.

With ``dialect.session_locks`` (PostgreSQL) the lock is a session advisory
lock on a connection held for the duration of the block; when the holder
dies its connection closes and the lock is free at once (``ttl`` is not
needed). Otherwise (SQLite, memory) it is a lease row in the ``locks`` table:
a holder id and an expiry ``ttl`` seconds ahead, renewed by a heartbeat
thread while the block runs; a lease past its expiry may be taken, so a
holder that dies frees the lock after ``ttl`` seconds at the latest.
Locks are not re-entrant. ``LockTimeout`` after ``wait`` seconds.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import AgentkeepError, InvalidInput, LockTimeout
from agentkeep.models.common import utcnow_micros
from agentkeep.store._core import Core
from agentkeep.store._errors import translating
from agentkeep.store._validate import require_str
from agentkeep.store.dialects import lock_key
from agentkeep.store.schema import locks as t

__all__ = ["hold_lock"]

_MAX_POLL_S = 0.2


def _seconds(value: Any, field: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput("must be a number of seconds", field=field)
    if value < 0 or (positive and value == 0):
        raise InvalidInput("must be positive" if positive else "must not be negative", field=field)
    return float(value)


@contextmanager
def hold_lock(
    core: Core, tenant_id: str, name: str, *, ttl: float = 30.0, wait: float = 10.0
) -> Iterator[None]:
    """Hold the tenant's lock ``name`` for the block; ``LockTimeout`` after ``wait`` seconds."""
    name = require_str(name, "name", max_len=256)
    ttl = _seconds(ttl, "ttl", positive=True)
    wait = _seconds(wait, "wait", positive=False)
    if core.dialect.session_locks:
        with _session_lock(core, tenant_id, name, wait):
            yield
    else:
        with _lease(core, tenant_id, name, ttl, wait):
            yield


def _timeout(name: str, wait: float) -> LockTimeout:
    return LockTimeout(f"lock {name!r} is held by another holder; gave up after {wait:g}s")


@contextmanager
def _session_lock(core: Core, tenant_id: str, name: str, wait: float) -> Iterator[None]:
    key = lock_key(tenant_id, "lock", name)  # "lock" keeps names apart from append scopes
    dialect = core.dialect
    with translating("taking a lock"):
        conn = core.engine.connect()
        try:
            got = dialect.acquire_session_lock(conn, key, wait)
        except BaseException:
            conn.invalidate()  # never give a connection that may hold the lock back to the pool
            conn.close()
            raise
    if not got:
        conn.close()
        raise _timeout(name, wait)
    try:
        yield
    finally:
        try:
            if not dialect.release_session_lock(conn, key):
                conn.invalidate()
        except Exception:
            conn.invalidate()  # closing the connection frees the lock
        finally:
            conn.close()


def _holder() -> str:
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


@contextmanager
def _lease(core: Core, tenant_id: str, name: str, ttl: float, wait: float) -> Iterator[None]:
    holder = _holder()
    ttl_us = int(ttl * 1_000_000)
    deadline = time.monotonic() + wait
    delay = 0.005
    while not _take(core, tenant_id, name, holder, ttl_us):
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout(name, wait)
        time.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_POLL_S)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(core, tenant_id, name, holder, ttl_us, stop),
        name=f"agentkeep-lock-{name[:32]}",
        daemon=True,
    )
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with core.write("releasing a lock") as conn:
            conn.execute(
                sa.delete(t).where(
                    t.c.tenant_id == tenant_id, t.c.name == name, t.c.holder == holder
                )
            )


def _take(core: Core, tenant_id: str, name: str, holder: str, ttl_us: int) -> bool:
    """Take the lease if it is free or expired (one write transaction)."""
    with core.write("taking a lock") as conn:
        now = utcnow_micros()
        row = conn.execute(
            sa.select(t.c.holder, t.c.expires_at).where(
                t.c.tenant_id == tenant_id, t.c.name == name
            )
        ).first()
        values = {"holder": holder, "acquired_at": now, "expires_at": now + ttl_us}
        if row is None:
            conn.execute(sa.insert(t).values(tenant_id=tenant_id, name=name, **values))
            return True
        if row.expires_at > now:
            return False
        taken = conn.execute(
            sa.update(t)
            .where(t.c.tenant_id == tenant_id, t.c.name == name, t.c.holder == row.holder)
            .values(values)
        )
        return bool(taken.rowcount)


def _heartbeat(
    core: Core, tenant_id: str, name: str, holder: str, ttl_us: int, stop: threading.Event
) -> None:
    """Push the lease's expiry ahead every third of its ttl while the block runs."""
    while not stop.wait(ttl_us / 3_000_000):
        try:
            with core.write("renewing a lock") as conn:
                conn.execute(
                    sa.update(t)
                    .where(t.c.tenant_id == tenant_id, t.c.name == name, t.c.holder == holder)
                    .values(expires_at=utcnow_micros() + ttl_us)
                )
        except AgentkeepError:
            continue  # busy or unreachable: try again at the next beat
