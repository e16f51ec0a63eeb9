"""Named locks: mutual exclusion across threads and processes, timeouts, expiry, dead holders."""

from __future__ import annotations

import linecache
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from _multiproc import kill9

from agentkeep import AsyncStore, InvalidInput, LockTimeout, Store
from agentkeep.models.common import utcnow_micros
from agentkeep.store.schema import locks

HOLDER = """
import sys, time, agentkeep
url, tenant, name, ttl, hold, log = sys.argv[1:7]
store = agentkeep.connect(url).tenant(tenant)
print("ready", flush=True)
sys.stdin.readline()
with store.lock(name, ttl=float(ttl), wait=60):
    with open(log, "a") as f:
        f.write("enter\\n")
    print("locked", flush=True)
    time.sleep(float(hold))
    with open(log, "a") as f:
        f.write("leave\\n")
store.close()
"""


LOCK_FREED_WAIT_S = 120.0
"""How long a test waits for a dead holder's lock to be freed before it fails."""


def spawn_holder(
    store: Store, name: str, *, ttl: float, hold: float, log: Path
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            store.url,
            store.tenant_id,
            name,
            str(ttl),
            str(hold),
            str(log),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> int:
    proc.communicate(timeout=120)
    return proc.returncode


def test_lock_is_released_after_the_block(store: Store) -> None:
    with store.lock("job", ttl=5, wait=1):
        pass
    with store.lock("job", ttl=5, wait=0):
        pass
    with pytest.raises(RuntimeError), store.lock("job", wait=1):
        raise RuntimeError("boom")
    with store.lock("job", wait=0):  # released despite the error
        pass


def test_mutual_exclusion_across_threads(store: Store) -> None:
    inside = 0
    most = 0
    total = 0
    errors: list[Exception] = []
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, most, total
        try:
            for _ in range(3):
                with store.lock("counter", ttl=10, wait=30):
                    with guard:
                        inside += 1
                        most = max(most, inside)
                    time.sleep(0.01)
                    with guard:
                        inside -= 1
                        total += 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert (most, total) == (1, 12)


def test_timeout_raises_lock_timeout(store: Store) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with store.lock("busy", ttl=10, wait=5):
            held.set()
            release.wait(10)

    th = threading.Thread(target=holder)
    th.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with pytest.raises(LockTimeout), store.lock("busy", wait=0.3):
            pass  # pragma: no cover
        # It waited its 0.3 s (the holder keeps the lock for 10 s: a wait that ignored
        # its bound would get the lock then and raise nothing).
        assert time.monotonic() - started >= 0.25
        with pytest.raises(LockTimeout), store.lock("busy", wait=0):
            pass  # pragma: no cover
        # Other names and other tenants are not blocked.
        with store.lock("other", wait=0):
            pass
        with store.tenant(store.tenant_id + "_x").lock("busy", wait=0):
            pass
    finally:
        release.set()
        th.join()
    with store.lock("busy", wait=1):
        pass


def _waits_for_a_lock(store: Store, thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked taking a lock: it tried, found it held, and waits."""
    if store._core.dialect.session_locks:  # blocked in the server on pg_advisory_lock
        with store._core.read() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar()
        return bool(waiting)
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:  # sleeping between two attempts to take the lease
        if frame.f_code.co_filename.endswith(os.path.join("store", "locks.py")):
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if "sleep(" in line:
                return True
        frame = frame.f_back
    return False


def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"never: {what}")


def test_a_waiter_gets_the_lock_when_it_is_released(store: Store) -> None:
    held = threading.Event()
    release = threading.Event()
    released = threading.Event()
    got: list[bool] = []

    def holder() -> None:
        with store.lock("handover", ttl=10, wait=5):
            held.set()
            release.wait(30)
            released.set()  # last thing before the lock is given back

    def waiter() -> None:
        with store.lock("handover", wait=60):
            got.append(released.is_set())

    first = threading.Thread(target=holder)
    first.start()
    assert held.wait(10)
    second = threading.Thread(target=waiter)
    second.start()
    try:
        _until(lambda: _waits_for_a_lock(store, second), "the waiter waits for the lock")
        assert not got, "the waiter took a lock that is held"
    finally:
        release.set()
        first.join()
    second.join(60)
    assert got == [True]


def test_a_live_holder_keeps_its_lease_past_ttl(store: Store) -> None:
    """The lease is renewed while the block runs, so ttl only bounds a dead holder."""
    held = threading.Event()
    release = threading.Event()
    ttl = 0.3

    def holder() -> None:
        with store.lock("long", ttl=ttl, wait=5):
            held.set()
            release.wait(30)

    th = threading.Thread(target=holder)
    th.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        if not store._core.dialect.session_locks:
            first = _lease_expiry(store, "long")
            # Wait until the first lease has expired by the clock and was renewed since.
            _until(
                lambda: utcnow_micros() > first and (_lease_expiry(store, "long") or 0) > first,
                "the lease is renewed past its first expiry",
            )
        else:  # a session lock has no lease: ttl does not apply at all
            _until(lambda: time.monotonic() > started + ttl, "ttl has passed")
        with pytest.raises(LockTimeout), store.lock("long", wait=0.2):
            pass  # pragma: no cover
    finally:
        release.set()
        th.join()


def _lease_expiry(store: Store, name: str) -> int | None:
    with store._core.read() as conn:
        value = conn.execute(
            sa.select(locks.c.expires_at).where(
                locks.c.tenant_id == store.tenant_id, locks.c.name == name
            )
        ).scalar()
    return int(value) if value is not None else None


@pytest.mark.parametrize("backend", ["memory", "sqlite"])  # PostgreSQL locks have no lease
def test_an_expired_lease_may_be_taken(store: Store) -> None:
    assert not store._core.dialect.session_locks
    with store._core.write() as conn:
        conn.execute(
            sa.insert(locks).values(
                tenant_id=store.tenant_id,
                name="stale",
                holder="gone-host:1:dead",
                acquired_at=utcnow_micros() - 60_000_000,
                expires_at=utcnow_micros() - 1,
            )
        )
        conn.execute(
            sa.insert(locks).values(
                tenant_id=store.tenant_id,
                name="fresh",
                holder="live-host:1:alive",
                acquired_at=utcnow_micros(),
                expires_at=utcnow_micros() + 60_000_000,
            )
        )
    with store.lock("stale", wait=0):
        with store._core.read() as conn:
            holder = conn.execute(
                sa.select(locks.c.holder).where(
                    locks.c.tenant_id == store.tenant_id, locks.c.name == "stale"
                )
            ).scalar()
        assert holder is not None and holder != "gone-host:1:dead"
    with pytest.raises(LockTimeout), store.lock("fresh", wait=0.1):
        pass  # pragma: no cover


def test_invalid_arguments_name_the_field(store: Store) -> None:
    for kwargs, field in (
        ({"name": ""}, "name"),
        ({"name": "x" * 257}, "name"),
        ({"name": "x", "ttl": 0}, "ttl"),
        ({"name": "x", "wait": -1}, "wait"),
    ):
        with pytest.raises(InvalidInput) as err, store.lock(**kwargs):
            pass  # pragma: no cover
        assert err.value.field == field


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_mutual_exclusion_across_processes(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "critical.log"
    procs = [spawn_holder(store, "deploy", ttl=10, hold=0.2, log=log) for _ in range(3)]
    for proc in procs:
        go(proc)
    with store.lock("deploy", ttl=10, wait=60):
        with log.open("a") as f:
            f.write("enter\n")
        time.sleep(0.2)
        with log.open("a") as f:
            f.write("leave\n")
    for proc in procs:
        assert finish(proc) == 0
    assert log.read_text().split() == ["enter", "leave"] * 4


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_killing_the_holder_frees_the_lock(store: Store, tmp_path: Path) -> None:
    """PostgreSQL frees it when the connection drops; a lease frees it after ttl."""
    proc = spawn_holder(store, "singleton", ttl=1.0, hold=600, log=tmp_path / "log")
    go(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    with pytest.raises(LockTimeout), store.lock("singleton", wait=0.2):
        pass  # pragma: no cover
    kill9(proc)
    finish(proc)
    # The holder never lets go: only its death frees the lock (PostgreSQL when its
    # connection closes, a lease when its 1 s ttl runs out). ``wait`` is a bound for
    # a lock that is never freed (LockTimeout), not a measure of how soon it is.
    with (
        store.lock("singleton", ttl=5, wait=LOCK_FREED_WAIT_S),
        pytest.raises(LockTimeout),  # the waiter holds it now
        store.lock("singleton", wait=0),
    ):
        pass  # pragma: no cover


async def test_async_lock(astore: AsyncStore) -> None:
    async with astore.lock("a", ttl=5, wait=1):
        with pytest.raises(LockTimeout):
            async with astore.lock("a", wait=0.1):
                pass  # pragma: no cover
    async with astore.lock("a", wait=0):
        pass
