"""Events: monotonic bookmarks, filtered reads, and following live, across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from _statements import sent_statements, work
from _threads import no_worker_threads, server_sessions

import agentkeep
from agentkeep import AsyncStore, InvalidInput, NotFound, Store
from agentkeep.models import Event
from agentkeep.store.dialects import Listener

APPENDER = """
import sys, time, agentkeep
url, tenant, n, tag, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
store = agentkeep.connect(url).tenant(tenant)
print("ready", flush=True)
sys.stdin.readline()
for i in range(n):
    store.events.append("custom", data={"tag": tag, "i": i})
    if pause:
        time.sleep(pause)
store.close()
"""


def spawn_appender(store: Store, n: int, tag: str, pause: float = 0.0) -> subprocess.Popen[str]:
    """A separate process that appends ``n`` events once it gets a line on stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", APPENDER, store.url, store.tenant_id, str(n), tag, str(pause)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def start(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> int:
    """Wait for the process and close its pipes; its exit code."""
    proc.communicate(timeout=60)
    return proc.returncode


def test_append_and_read_back(store: Store) -> None:
    first = store.events.append("run_started", data={"n": 1})
    second = store.events.append("custom", channel="monitor")
    assert (first.bookmark, second.bookmark) == (1, 2)
    assert first.tenant_id == store.tenant_id and first.channel == "progress"
    assert first.data == {"n": 1} and second.data == {}
    assert store.events.list() == [first, second]
    assert store.events.list(after_bookmark=1) == [second]
    assert store.events.latest_bookmark() == 2
    # Bookmarks are per tenant.
    other = store.tenant(store.tenant_id + "_x")
    assert other.events.latest_bookmark() == 0
    assert other.events.append("custom").bookmark == 1
    assert other.events.list() != store.events.list()


def test_type_vocabulary(store: Store) -> None:
    seeds = (
        # curio's types beyond the vocabulary, and KODE's
        ("run_error", "object_stored", "critique_completed", "synthesis_completed"),
        ("tool_registered", "object_not_found", "think_chunk", "tool:start"),
        ("permission_required",),
    )
    for good in ("critique_result", "custom", "thread.run.created", "acme.deploy.finished"):
        assert store.events.append(good).type == good
    for good in (t for group in seeds for t in group):
        assert store.events.append(good, data={"x": 1}).type == good  # stored as given
    assert store.events.list(types=["tool:start"], after_bookmark=0)[0].data == {"x": 1}
    for bad in ("", "x" * 129, "two words", "1st", "tab\there", "ünïcode"):
        with pytest.raises(InvalidInput) as err:
            store.events.append(bad)
        assert err.value.field == "type"
    with pytest.raises(InvalidInput) as err:
        store.events.append("custom", channel="debug")
    assert err.value.field == "channel"
    with pytest.raises(InvalidInput) as err:
        store.events.append("custom", data={"x": object()})
    assert err.value.field == "data"
    assert store.events.latest_bookmark() == 13


def test_filters(store: Store) -> None:
    s1 = store.sessions.create()
    s2 = store.sessions.create()
    run = store.runs.create("agent_a", session_id=s1.id)
    e1 = store.events.append("run_started", run_id=run.id)
    e2 = store.events.append("planning_started", session_id=s2.id, agent_id="agent_b")
    e3 = store.events.append("approval_required", run_id=run.id, channel="control")
    e4 = store.events.append("custom", channel="monitor")
    # A run's session and agent are copied onto its events.
    assert (e1.session_id, e1.agent_id) == (s1.id, "agent_a")

    def ids(**kw: Any) -> list[int]:
        return [e.bookmark for e in store.events.list(**kw)]

    assert ids(run_id=run.id) == [e1.bookmark, e3.bookmark]
    assert ids(session_id=s1.id) == [e1.bookmark, e3.bookmark]
    assert ids(session_id=s2.id) == [e2.bookmark]
    assert ids(agent_id="agent_b") == [e2.bookmark]
    assert ids(types="custom") == [e4.bookmark]
    assert ids(types=["run_started", "planning_started"]) == [e1.bookmark, e2.bookmark]
    assert ids(channel="control") == [e3.bookmark]
    assert ids(run_id=run.id, channel="progress") == [e1.bookmark]
    assert ids(after_bookmark=e2.bookmark, limit=1) == [e3.bookmark]
    for bad, field in (
        ({"after_bookmark": -1}, "after_bookmark"),
        ({"limit": 0}, "limit"),
        ({"channel": "x"}, "channel"),
        ({"types": []}, "types"),
    ):
        with pytest.raises(InvalidInput) as err:
            store.events.list(**bad)
        assert err.value.field == field


def test_missing_run_or_session_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as err:
        store.events.append("custom", run_id="run_missing")
    assert err.value.kind == "run"
    with pytest.raises(NotFound) as err:
        store.events.append("custom", session_id="sess_missing")
    assert err.value.kind == "session"
    # A run's own session is not looked up again; a session other than the run's is.
    thread = store.sessions.create()
    run = store.runs.create(store.agents.create(name="a", model="m").id, session_id=thread.id)
    assert store.events.append("custom", run_id=run.id, session_id=thread.id).run_id == run.id
    with pytest.raises(NotFound) as err:
        store.events.append("custom", run_id=run.id, session_id="sess_missing")
    assert err.value.kind == "session"
    # Another tenant's session does not count.
    s = store.tenant(store.tenant_id + "_x").sessions.create()
    with pytest.raises(NotFound):
        store.events.append("custom", session_id=s.id)
    assert store.events.latest_bookmark() == 1


def test_append_many_is_ordered_and_atomic(store: Store) -> None:
    s = store.sessions.create()
    made = store.events.append_many(
        [
            {"type": "iteration_started", "session_id": s.id},
            {"type": "custom", "data": {"k": 1}, "channel": "monitor"},
        ]
    )
    assert [e.bookmark for e in made] == [1, 2]
    assert store.events.list() == made
    with pytest.raises(InvalidInput) as err:
        store.events.append_many([{"type": "custom"}, {"type": "not a type"}])
    assert err.value.field == "events[1].type"
    with pytest.raises(InvalidInput) as err:
        store.events.append_many([{"type": "custom", "colour": "red"}])
    assert err.value.field == "events[0].colour"
    with pytest.raises(NotFound):
        store.events.append_many([{"type": "custom"}, {"type": "custom", "run_id": "run_x"}])
    assert store.events.latest_bookmark() == 2
    assert store.events.append_many([]) == []


@pytest.mark.parametrize(
    "bad",
    [{"x": float("nan")}, {"x": float("inf")}, {"x": "a\x00b"}, {"x": {1, 2}}, {"x": [{1: 2}]}],
    ids=["nan", "infinity", "nul", "set", "int key"],
)
def test_data_both_backends_cannot_store_alike_is_refused_naming_the_field(
    store: Store, bad: dict[Any, Any]
) -> None:
    """NaN and NUL used to be stored on SQLite and refused by PostgreSQL with no field."""
    with pytest.raises(InvalidInput) as err:
        store.events.append("custom", data=bad)
    assert err.value.field == "data"
    with pytest.raises(InvalidInput) as err:
        store.events.append_many([{"type": "custom"}, {"type": "custom", "data": bad}])
    assert err.value.field == "events[1].data"
    assert store.events.list() == []


def test_concurrent_appends_get_unique_gapless_bookmarks(store: Store) -> None:
    errors: list[Exception] = []

    def worker(tag: int) -> None:
        try:
            for i in range(15):
                store.events.append("custom", data={"t": tag, "i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    events = store.events.list(limit=1000)
    assert [e.bookmark for e in events] == list(range(1, 61))
    for tag in range(4):  # each writer's events in its own order
        assert [e.data["i"] for e in events if e.data["t"] == tag] == list(range(15))


def test_deleting_a_session_deletes_its_events(store: Store) -> None:
    s = store.sessions.create()
    store.events.append("message_added", session_id=s.id)
    kept = store.events.append("custom")
    store.sessions.delete(s.id)
    assert store.events.list() == [kept]


def test_bookmarks_are_never_reused_after_deletes(store: Store) -> None:
    s = store.sessions.create()
    store.events.append("custom")
    store.events.append_many([{"type": "message_added", "session_id": s.id} for _ in range(3)])
    seen = store.events.latest_bookmark()
    assert seen == 4
    store.sessions.delete(s.id)  # deletes the newest events
    assert store.events.latest_bookmark() == 4
    new = store.events.append("custom")
    assert new.bookmark == 5
    # A follower that had seen bookmark 4 still gets the new event.
    assert list(store.events.follow(after_bookmark=seen, timeout=0.1)) == [new]


def test_follow_yields_backlog_then_live_events(store: Store) -> None:
    store.events.append("custom", data={"i": 0})

    def writer() -> None:
        for i in range(1, 4):
            time.sleep(0.05)
            store.events.append("custom", data={"i": i})
        store.events.append("run_completed")

    th = threading.Thread(target=writer)
    th.start()
    seen = [
        e.data.get("i", "end")
        for e in store.events.follow(
            poll_interval=0.02, timeout=10, stop=lambda e: e.type == "run_completed"
        )
    ]
    th.join()
    assert seen == [0, 1, 2, 3, "end"]


def test_follow_filters_and_resumes_from_a_bookmark(store: Store) -> None:
    s = store.sessions.create()
    for i in range(3):
        store.events.append("custom", session_id=s.id, data={"i": i})
        store.events.append("custom", data={"other": i})
    got = list(store.events.follow(session_id=s.id, after_bookmark=2, timeout=0.2))
    assert [e.data["i"] for e in got] == [1, 2]
    assert list(store.events.follow(channel="control", timeout=0.1)) == []


def test_follow_ends_after_idle_timeout(store: Store) -> None:
    started = time.monotonic()
    assert list(store.events.follow(timeout=0.3, poll_interval=0.05)) == []
    # It waited its timeout (one that never ended would hang the test until pytest's timeout).
    assert time.monotonic() - started >= 0.25
    with pytest.raises(InvalidInput) as err:
        next(store.events.follow(poll_interval=0))
    assert err.value.field == "poll_interval"


def test_closing_follow_frees_its_listener(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    dialect = store._core.dialect
    made: list[Listener] = []
    closed: list[Listener] = []
    original = dialect.listen

    def listen(channel: str) -> Listener:
        listener = original(channel)
        made.append(listener)
        real_close = listener.close

        def close() -> None:
            closed.append(listener)
            real_close()

        listener.close = close  # type: ignore[method-assign]
        return listener

    monkeypatch.setattr(dialect, "listen", listen)
    store.events.append("custom")
    follower = store.events.follow(poll_interval=0.02)
    assert next(follower).bookmark == 1
    assert len(made) == 1 and closed == []
    backend_pid = None
    if dialect.supports_listen:
        conn = made[0]._conn  # type: ignore[attr-defined]
        assert conn is not None, "the PostgreSQL follower must LISTEN"
        backend_pid = conn.info.backend_pid
    follower.close()
    assert closed == made
    if backend_pid is not None:  # the server ends the LISTEN backend soon after
        deadline = time.monotonic() + 10
        while True:
            with store._core.read() as conn:
                alive = conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                    {"p": backend_pid},
                ).scalar()
            if alive == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert alive == 0


def _watch_waits(
    store: Store, monkeypatch: pytest.MonkeyPatch, on_wait: Callable[[], None] | None = None
) -> threading.Event:
    """Set once a follower's listener starts waiting; ``wakes`` records what each wait returned."""
    dialect = store._core.dialect
    real_listen = dialect.listen
    waiting = threading.Event()
    wakes: list[bool] = []

    def listen(channel: str) -> Any:
        listener = real_listen(channel)
        real_wait = listener.wait

        def wait(timeout: float) -> bool:
            if not waiting.is_set():
                waiting.set()
                if on_wait is not None:
                    on_wait()
            woken = real_wait(timeout)
            wakes.append(woken)
            return woken

        listener.wait = wait  # type: ignore[method-assign]
        return listener

    monkeypatch.setattr(dialect, "listen", listen)
    waiting.wakes = wakes  # type: ignore[attr-defined]
    return waiting


def test_cancel_ends_a_follower_waiting_in_another_thread(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancel = threading.Event()
    seen: list[int] = []
    ended = threading.Event()

    def follower() -> None:
        for event in store.events.follow(poll_interval=30, cancel=cancel):
            seen.append(event.bookmark)
        ended.set()

    waiting = _watch_waits(store, monkeypatch)
    store.events.append("custom")
    th = threading.Thread(target=follower)
    th.start()
    # Cancel once the follower waits (its next poll is 30 s away), not before.
    assert waiting.wait(10), "the follower never waited"
    cancel.set()
    assert ended.wait(5)
    th.join()
    assert seen == [1]


def test_follow_in_a_for_loop_that_breaks(store: Store) -> None:
    store.events.append_many([{"type": "custom"} for _ in range(3)])
    for event in store.events.follow(timeout=5):
        if event.bookmark == 2:
            break
    assert store.events.append("custom").bookmark == 4


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_follow_sees_events_of_other_processes(store: Store) -> None:
    """Two processes append concurrently; the follower gets every event, in bookmark order."""
    procs = [spawn_appender(store, 40, tag) for tag in ("a", "b")]
    got: list[Event] = []
    for proc in procs:
        start(proc)
    for event in store.events.follow(timeout=30, poll_interval=0.02):
        got.append(event)
        if len(got) == 80:
            break
    for proc in procs:
        assert finish(proc) == 0
    assert [e.bookmark for e in got] == list(range(1, 81))
    for tag in ("a", "b"):
        assert [e.data["i"] for e in got if e.data["tag"] == tag] == list(range(40))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_followers_are_woken_by_notify(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 30 s poll interval, every wait of the follower ends by a NOTIFY.

    The other process starts appending only once the follower has read (nothing)
    and waits, so polling alone cannot deliver its events: each wait would end
    by its timeout and return False.
    """
    proc = spawn_appender(store, 3, "n", pause=0.2)
    waiting = _watch_waits(store, monkeypatch, on_wait=lambda: start(proc))
    follower = store.events.follow(poll_interval=30, timeout=60)
    got = []
    for event in follower:
        got.append(event.data["i"])
        if len(got) == 3:
            break
    follower.close()
    assert finish(proc) == 0
    assert got == [0, 1, 2]
    wakes: list[bool] = waiting.wakes  # type: ignore[attr-defined]
    assert wakes and all(wakes), f"a wait ended without a notification: {wakes}"


async def test_async_append_list_and_follow(astore: AsyncStore) -> None:
    e = await astore.events.append("custom", data={"a": 1})
    assert await astore.events.list() == [e]
    assert await astore.events.latest_bookmark() == 1

    async def later() -> None:
        await astore.events.append("run_completed")

    task = asyncio.create_task(later())
    seen = [
        ev.type
        async for ev in astore.events.follow(
            poll_interval=0.02, timeout=10, stop=lambda ev: ev.type == "run_completed"
        )
    ]
    await task
    assert seen == ["custom", "run_completed"]


async def test_cancelling_an_async_follower_ends_it_promptly(astore: AsyncStore) -> None:
    """A task consuming ``follow`` can be cancelled; its worker thread stops too."""
    seen: list[int] = []
    stopped = threading.Event()  # what the follower's worker thread watches

    async def consume() -> None:
        async for event in astore.events.follow(poll_interval=0.05, cancel=stopped):
            seen.append(event.bookmark)

    task = asyncio.create_task(consume())
    first = await astore.events.append("custom", data={"n": 1})
    deadline = time.monotonic() + 60
    while not seen:
        assert time.monotonic() < deadline, "the follower never saw the event"
        await asyncio.sleep(0.02)
    assert seen == [first.bookmark]
    task.cancel()
    # The task ends only once the follower's pending read in its worker thread has
    # returned (the follow has no timeout: a thread that missed the cancel never would).
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=60)
    assert stopped.is_set()
    assert task.cancelled()


def test_list_by_time_range(store: Store) -> None:
    events = [store.events.append("custom", data={"n": n}) for n in range(3)]
    start, end = events[1].created_at, events[2].created_at
    window = store.events.list(created_after=start, created_before=end)
    # the database's filter is the Python comparison: at or after the one, before the other
    assert [e.bookmark for e in window] == [
        e.bookmark for e in events if start <= e.created_at < end
    ]
    assert events[0].created_at < end  # two appends apart: the window leaves one out
    assert events[2].bookmark not in [e.bookmark for e in window]
    everything = store.events.list(created_after=events[0].created_at)
    assert [e.bookmark for e in everything] == [e.bookmark for e in events]


def test_one_write_of_several_runs_events_looks_every_run_up_once(
    store: Store, backend: str
) -> None:
    """Each run's session and agent are copied onto its events and its last event read,
    by one lookup of every run named (its statement compiled once per count of runs); a
    run that does not exist is named, and nothing is written."""
    threads = [store.sessions.create(kind="thread") for _ in range(3)]
    runs = [store.runs.create(f"asst_{i}", session_id=t.id) for i, t in enumerate(threads)]
    first = store.events.append("thread.run.created", run_id=runs[1].id)
    rows = [{"type": "thread.run.queued", "run_id": r.id} for r in (*runs, runs[0])]
    last_of_run = first.bookmark
    for _ in range(2):  # the second with the statement already compiled
        with sent_statements(store) as statements:
            linked = store.events.append_many_linked(rows, [r.id for r in runs])
        lookups = [s for s in statements if s.startswith("SELECT runs.id")]
        assert len(lookups) == 1, statements
        assert [(e.run_id, e.session_id, e.agent_id) for e in linked.events] == [
            (r.id, r.session_id, r.agent_id) for r in (*runs, runs[0])
        ]
        assert linked.before[runs[1].id] == last_of_run
        last_of_run = linked.events[1].bookmark
    count = len(store.events.list(limit=100))
    with pytest.raises(NotFound) as err:
        store.events.append_many_linked(
            [{"type": "x", "run_id": runs[0].id}, {"type": "x", "run_id": "run_missing"}], []
        )
    assert err.value.ident == "run_missing"
    assert len(store.events.list(limit=100)) == count


def test_a_linked_write_reads_its_runs_last_events_where_it_looks_its_runs_up(
    store: Store, backend: str
) -> None:
    """Where a write transaction is the only writer from its start (SQLite), the lookup
    of the events' runs also reads each run's last event; on PostgreSQL that read
    comes after the tenant's event lock, in a statement of its own."""
    run = store.runs.create("asst_x")
    first = store.events.append("thread.run.created", run_id=run.id)
    with sent_statements(store) as statements:
        linked = store.events.append_many_linked(
            [{"type": "thread.run.queued", "run_id": run.id}], [run.id]
        )
    assert linked.before == {run.id: first.bookmark}
    apart = [s for s in statements if "GROUP BY events.run_id" in s]
    assert len(apart) == (1 if backend == "postgres" else 0)


def test_concurrent_linked_writes_each_know_the_runs_last_event_before_them(store: Store) -> None:
    """``append_many_linked``'s ``before[run]`` is read while the write is the tenant's only
    event writer: with writers racing on two runs, each write's ``before`` is exactly the
    bookmark of the run's last event written before it (what a live reader relies on
    to take handed-over events without reading them back)."""
    thread = store.sessions.create(kind="thread")
    runs = [store.runs.create("asst_x", session_id=thread.id, model="m").id for _ in range(2)]
    store.events.append("x")  # the tenant's bookmark row exists: only ``before`` is raced
    writes: list[tuple[dict[str, int], list[Event]]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def writer(w: int) -> None:
        start.wait()
        for i in range(25):
            rows = [{"type": "x", "run_id": run, "data": {"w": w, "i": i}} for run in runs]
            linked = store.events.append_many_linked(rows, runs)
            with lock:
                writes.append((linked.before, linked.events))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(writes) == 200
    last = dict.fromkeys(runs, 0)
    for before, events in sorted(writes, key=lambda w: w[1][0].bookmark):
        for run in runs:
            assert before[run] == last[run]
            last[run] = max(e.bookmark for e in events if e.run_id == run)


async def test_events_are_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing (every filter, a run's own stream read too) and the latest bookmark are
    one statement each, the same events as the sync API's, no worker thread."""
    s = store.sessions.create()
    run = store.runs.create("a", session_id=s.id)
    store.events.append_many(
        [
            {"type": "message.delta", "run_id": run.id, "data": {"i": i}, "channel": "monitor"}
            for i in range(3)
        ]
        + [{"type": "run.completed", "session_id": s.id, "agent_id": "b", "data": {"ok": True}}]
    )
    no_worker_threads(monkeypatch, "events")
    queries: list[dict[str, Any]] = [
        {},
        {"run_id": run.id},
        {"run_id": run.id, "after_bookmark": 1, "limit": 1},
        {"session_id": s.id, "types": ["run.completed", "message.delta"]},
        {"agent_id": "b"},
        {"channel": "monitor", "types": "message.delta"},
        {"run_id": run.id, "created_before": datetime.now(UTC) + timedelta(hours=1)},
        {"run_id": "run_missing"},
    ]
    for query in queries:
        with sent_statements(store) as sent:
            got = await astore.events.list(**query)
        assert len(work(sent)) == 1, (query, work(sent))
        assert got == store.events.list(**query), query
    assert [e.data for e in await astore.events.list(run_id=run.id)] == [{"i": i} for i in range(3)]
    assert await astore.events.latest_bookmark() == 4 == store.events.latest_bookmark()
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    assert await other.events.latest_bookmark() == 0 and await other.events.list() == []
    with pytest.raises(InvalidInput) as bad:
        await astore.events.list(channel="nope")
    assert bad.value.field == "channel"


async def test_appends_are_one_transaction_on_the_async_connections(
    store: Store, astore: AsyncStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``append``, ``append_many`` and ``append_many_linked`` run on the event loop: one
    transaction (BEGIN ... COMMIT around the statements on PostgreSQL's autocommit
    connections), the events as the sync API would write them, no worker thread."""
    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id)
    first = store.events.append("thread.run.created", run_id=run.id)
    no_worker_threads(monkeypatch, "events.append")
    with sent_statements(store) as sent:
        one = await astore.events.append("custom", run_id=run.id, data={"k": 1})
    verbs = [v for s in sent if (v := s.split(None, 1)[0].upper()) != "SET"]  # (a new connection)
    if backend == "postgres":  # the run looked up with the tenant's event lock taken
        assert verbs == ["BEGIN", "SELECT", "UPDATE", "INSERT", "COMMIT"], sent
    assert (one.bookmark, one.session_id, one.agent_id) == (first.bookmark + 1, thread.id, "asst_x")
    many = await astore.events.append_many(
        [{"type": "a", "session_id": thread.id}, {"type": "b", "channel": "monitor"}]
    )
    linked = await astore.events.append_many_linked(
        [{"type": "c", "run_id": run.id}, {"type": "d", "run_id": run.id}], [run.id]
    )
    assert linked.before == {run.id: one.bookmark}
    assert [e.bookmark for e in [*many, *linked.events]] == list(
        range(one.bookmark + 1, one.bookmark + 5)
    )
    assert store.events.list(limit=100) == [first, one, *many, *linked.events]
    assert await astore.events.append_many([]) == []
    fresh = astore.tenant(store.tenant_id + "_fresh")  # a tenant's first events
    assert [e.bookmark for e in await fresh.events.append_many([{"type": "x"}] * 3)] == [1, 2, 3]


async def test_a_failed_async_append_writes_nothing_and_holds_no_lock(
    store: Store, astore: AsyncStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that is missing is found after the run's lookup took the tenant's event
    lock: the transaction rolls back (nothing written, the lock released, no connection
    left idle in it), and the next appends of this process and of another go on."""
    run = store.runs.create("asst_x")
    store.events.append("x")
    no_worker_threads(monkeypatch, "events.append")
    for _ in range(3):  # more than once: the connection that failed is used again
        with pytest.raises(NotFound) as err:
            await astore.events.append("custom", run_id=run.id, session_id="sess_missing")
        assert err.value.kind == "session"
        with pytest.raises(InvalidInput):
            await astore.events.append("not a type")
    if backend == "postgres":
        assert server_sessions(store, "state LIKE 'idle in transaction%'") == 0
    done = threading.Event()
    other = threading.Thread(
        target=lambda: (store.events.append("y", run_id=run.id), done.set()), daemon=True
    )
    other.start()
    other.join(timeout=60)
    assert done.is_set(), "an append of another connection waited on the failed one's lock"
    ours = await astore.events.append("z", run_id=run.id)
    assert [e.type for e in store.events.list(limit=10)] == ["x", "y", "z"]
    assert ours.bookmark == 3


async def test_concurrent_async_appends_get_unique_gapless_bookmarks(
    store: Store, astore: AsyncStore
) -> None:
    """32 tasks appending at once (grouped into shared commits on SQLite, one connection
    each on PostgreSQL): every bookmark once, each task's events in its own order."""
    store.events.append("x")

    async def task(tag: int) -> None:
        for i in range(10):
            await astore.events.append("custom", data={"t": tag, "i": i})

    await asyncio.gather(*(task(n) for n in range(32)))
    events = store.events.list(limit=1000)
    assert [e.bookmark for e in events] == list(range(1, 322))
    for tag in range(32):
        assert [e.data["i"] for e in events if e.data.get("t") == tag] == list(range(10))


def test_a_failed_atomic_write_rolls_its_connection_back_and_keeps_it(postgres_url: str) -> None:
    """On PostgreSQL's autocommit connections a bracketed write that fails midway (a
    session found missing after the event lock was taken) is rolled back on the
    connection, which is kept: the next statement runs on the same server process,
    outside any transaction. (SQLite's writes are transactions of the driver's own.)"""
    root = agentkeep.connect(postgres_url)
    store = root.tenant(f"t_{uuid.uuid4().hex[:12]}")
    run = store.runs.create("asst_x")

    def backend_pid() -> tuple[int, str]:
        return store._core.run_read(
            "pid",
            lambda cur: cur.execute(
                "SELECT pg_backend_pid(), "
                "(SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid())"
            ).fetchone(),
        )

    before = backend_pid()
    for _ in range(3):
        with pytest.raises(NotFound):
            store.events.append("custom", run_id=run.id, session_id="sess_missing")
        assert backend_pid() == before
    assert store.events.append("custom", run_id=run.id).bookmark == 1
    root.close()
