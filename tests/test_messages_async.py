"""The async API's message operations: native (no worker thread per call), same results.

They run the sync API's operations (``store/_steps.py``) on the store's async
connections: psycopg's async connections on PostgreSQL; on SQLite inline, or
through one writer thread that commits queued appends together (group commit).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _postgres import terminate_backends

import agentkeep
from agentkeep import AsyncStore, Store
from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.store._steps import COUNT, Steps, Stmt
from agentkeep.store.dialects import sqlite_async


async def test_async_operations_match_the_sync_ones(store: Store, astore: AsyncStore) -> None:
    s = await astore.sessions.create()
    one = await astore.messages.append(
        s.id, "user", "one", idempotency_key="k", metadata={"a": "b"}
    )
    many = await astore.messages.append_many(
        s.id,
        [
            {"role": "assistant", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": "again", "idempotency_key": "k"},
            {"role": "tool", "content": "three", "run_id": "run_x"},
        ],
    )
    assert many[1] == one
    assert [m.seq for m in (one, many[0], many[2])] == [1, 2, 3]
    assert await astore.messages.append(s.id, "user", "dup", idempotency_key="k") == one
    assert await astore.messages.recent(s.id, 10) == store.messages.recent(s.id, 10)
    assert await astore.messages.history(s.id, 2) == store.messages.history(s.id, 2)
    assert [m.seq for m in await astore.messages.recent(s.id, 10)] == [1, 2, 3]
    with pytest.raises(Conflict):
        await astore.messages.append(s.id, "user", "x", id=one.id)
    with pytest.raises(NotFound):
        await astore.messages.append("sess_missing", "user", "x")
    with pytest.raises(NotFound):
        await astore.tenant(astore.tenant_id + "_other").messages.recent(s.id)
    with pytest.raises(InvalidInput):
        await astore.messages.append(s.id, "nobody", "x")
    assert await astore.messages.append_many(s.id, []) == []
    assert store.sessions.get(s.id).last_seq == 3
    for order in ("asc", "desc"):
        for run_id in (None, "run_x"):
            for cursor in ({}, {"after": one.id}, {"before": many[2].id}):
                args: dict[str, Any] = {"limit": 2, "order": order, "run_id": run_id, **cursor}
                page = await astore.messages.page(s.id, **args)
                assert (
                    page == store.messages.page(s.id, **args) == store.messages.list(s.id, **args)
                )
    assert await astore.sessions.exists(s.id, kind="thread") is False
    with pytest.raises(NotFound):
        await astore.messages.page("sess_missing")
    with pytest.raises(InvalidInput) as bad:
        await astore.messages.page(s.id, after="msg_missing")
    assert bad.value.field == "after"


async def test_a_page_of_a_session_of_another_kind_is_not_found(
    store: Store, astore: AsyncStore
) -> None:
    """``page(kind=...)``: the kind is read with the rows; any page of a session of another
    kind (full, empty, past a cursor) is NotFound naming the kind; nothing else changes."""
    thread = store.sessions.create(kind="thread")
    written = store.messages.append_many(thread.id, [{"role": "user", "content": "x"}] * 3)
    empty = store.sessions.create(kind="thread")
    for args in ({}, {"limit": 1}, {"after": written[0].id}, {"before": written[2].id}):
        page = await astore.messages.page(thread.id, kind="thread", **args)
        assert page == store.messages.page(thread.id, **args), args
        assert store.messages.page(thread.id, kind="thread", **args) == page
        for kind in ("conversation", "session"):
            with pytest.raises(NotFound) as wrong:
                await astore.messages.page(thread.id, kind=kind, **args)
            assert wrong.value.kind == kind, args
            with pytest.raises(NotFound):
                store.messages.page(thread.id, kind=kind, **args)
    assert (await astore.messages.page(empty.id, kind="thread")).items == []
    with pytest.raises(NotFound):
        await astore.messages.page(empty.id, kind="conversation")
    with pytest.raises(NotFound):
        await astore.messages.page("thread_missing", kind="thread")
    with pytest.raises(NotFound):  # another tenant's thread
        await astore.tenant(astore.tenant_id + "_other").messages.page(thread.id, kind="thread")


async def test_append_many_to_a_session_of_another_kind_writes_nothing(
    store: Store, astore: AsyncStore
) -> None:
    """``append_many(kind=...)``: the write itself checks the kind; to a session of another
    kind (or none) it is NotFound naming the kind, and the session is left as it was."""
    conversation = store.sessions.create(kind="conversation")
    thread = store.sessions.create(kind="thread")
    store.messages.append(thread.id, "user", "before")
    full = [{"type": "text", "text": "b"}]  # not one plain block
    rows = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": full, "metadata": {"m": "1"}},
    ]
    one = [{"role": "user", "content": "plain"}]
    keyed = [{"role": "user", "content": "k", "idempotency_key": "k1"}]
    for batch in (rows, one, keyed, []):
        for session_id in (thread.id, "conv_missing"):
            with pytest.raises(NotFound) as refused:
                await astore.messages.append_many(session_id, batch, kind="conversation")
            assert refused.value.kind == "conversation"
            with pytest.raises(NotFound):
                store.messages.append_many(session_id, batch, kind="conversation")
    after = store.sessions.get(thread.id)
    assert (after.last_seq, after.message_count) == (1, 1)  # not bumped by a refused write
    assert [m.text for m in store.messages.list(thread.id).items] == ["before"]
    written = await astore.messages.append_many(conversation.id, rows, kind="conversation")
    assert [m.seq for m in written] == [1, 2]
    assert store.messages.append_many(conversation.id, one, kind="conversation")[0].seq == 3
    first = await astore.messages.append_many(conversation.id, keyed, kind="conversation")
    again = store.messages.append_many(conversation.id, keyed, kind="conversation")
    assert first == again and first[0].seq == 4
    assert await astore.messages.append_many(conversation.id, [], kind="conversation") == []
    assert store.sessions.get(conversation.id).last_seq == 4


async def test_async_message_operations_take_no_worker_thread(
    astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await astore.sessions.create()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a message operation hopped to a worker thread")

    monkeypatch.setattr(asyncio, "to_thread", refuse)
    await astore.messages.append(s.id, "user", "a")
    await astore.messages.append_many(s.id, [{"role": "user", "content": "b"}])
    assert [m.text for m in await astore.messages.recent(s.id)] == ["a", "b"]
    assert len(await astore.messages.history(s.id)) == 2
    assert [m.text for m in (await astore.messages.page(s.id)).items] == ["a", "b"]
    assert await astore.sessions.exists(s.id)


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_concurrent_async_appends_are_gapless_and_committed(
    tmp_path: Path, durability: str
) -> None:
    """32 tasks on 32 sessions and 8 on one: unique, gapless seqs; all durable on return."""
    url = f"sqlite:///{tmp_path}/group.db"
    astore = await agentkeep.aconnect(url, durability=durability)
    try:
        sessions = [await astore.sessions.create() for _ in range(32)]
        shared = await astore.sessions.create()

        async def writer(session_id: str, n: int) -> list[int]:
            return [
                (await astore.messages.append(session_id, "user", f"{i}")).seq for i in range(n)
            ]

        results = await asyncio.gather(
            *(writer(s.id, 5) for s in sessions), *(writer(shared.id, 5) for _ in range(8))
        )
        assert all(r == [1, 2, 3, 4, 5] for r in results[:32])
        assert sorted(seq for r in results[32:] for seq in r) == list(range(1, 41))
        # A failing append among concurrent ones fails alone.
        outcomes = await asyncio.gather(
            astore.messages.append("sess_missing", "user", "x"),
            *(astore.messages.append(s.id, "user", "six") for s in sessions),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], NotFound)
        assert [m.seq for m in outcomes[1:]] == [6] * 32  # type: ignore[union-attr]
    finally:
        await astore.close()
    with agentkeep.connect(url) as reopened:
        assert reopened.sessions.get(shared.id).message_count == 40
        assert [m.seq for m in reopened.messages.recent(shared.id, 100)] == list(range(1, 41))
        assert reopened.messages.recent(sessions[0].id)[-1].text == "six"


def _count_group_rounds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each round the writer thread commits, as it commits them."""
    rounds: list[int] = []
    commit = sqlite_async.GroupCommit._commit

    def counting(self: sqlite_async.GroupCommit, batch: list[Any]) -> None:
        rounds.append(len(batch))
        commit(self, batch)

    monkeypatch.setattr(sqlite_async.GroupCommit, "_commit", counting)
    return rounds


async def test_a_lone_writer_at_full_commits_inline_without_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task appending in a loop at full pays no thread hop: nothing else is waiting."""
    # However slow the disk is while the suite runs: the bound has a test of its own.
    monkeypatch.setattr(sqlite_async, "INLINE_COMMIT_MAX_S", 3600.0)
    rounds = _count_group_rounds(monkeypatch)
    url = f"sqlite:///{tmp_path}/alone.db"
    astore = await agentkeep.aconnect(url, durability="full")
    try:
        s = await astore.sessions.create()
        for i in range(20):
            await astore.messages.append(s.id, "user", str(i))
        await astore.messages.append_many(s.id, [{"role": "user", "content": "last"}])
        assert rounds == []  # nothing went to the writer thread
    finally:
        await astore.close()
    with agentkeep.connect(url) as reopened:
        assert [m.text for m in reopened.messages.recent(s.id, 2)] == ["19", "last"]


async def test_a_lone_writer_at_full_waits_a_turn_of_the_loop_only_when_others_are_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing else ready to run, no other write can arrive in the same turn of the
    loop: the write runs inline at once. With another callback ready, it waits the turn
    out first (that callback might write), and then, still alone, runs inline."""
    monkeypatch.setattr(sqlite_async, "INLINE_COMMIT_MAX_S", 3600.0)
    rounds = _count_group_rounds(monkeypatch)
    astore = await agentkeep.aconnect(f"sqlite:///{tmp_path}/turns.db", durability="full")
    try:
        s = await astore.sessions.create()
        turns: list[float] = []
        sleep = asyncio.sleep

        async def counted(delay: float, result: Any = None) -> Any:
            turns.append(delay)
            return await sleep(delay, result)

        monkeypatch.setattr(asyncio, "sleep", counted)
        for i in range(5):
            await astore.messages.append(s.id, "user", str(i))
        assert turns == []
        ran: list[int] = []
        asyncio.get_running_loop().call_soon(ran.append, 1)
        await astore.messages.append(s.id, "user", "after a callback")
        assert turns == [0] and ran == [1]
        assert rounds == []  # all inline
        assert [m.seq for m in await astore.messages.recent(s.id)] == [1, 2, 3, 4, 5, 6]
    finally:
        await astore.close()


async def test_writers_arriving_together_at_full_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """32 tasks appending at once go to the writer thread, which commits them in groups."""
    rounds = _count_group_rounds(monkeypatch)
    astore = await agentkeep.aconnect(f"sqlite:///{tmp_path}/together.db", durability="full")
    try:
        sessions = [await astore.sessions.create() for _ in range(32)]

        async def writer(session_id: str) -> None:
            for i in range(5):
                await astore.messages.append(session_id, "user", str(i))

        await asyncio.gather(*(writer(s.id) for s in sessions))
        # Every write of the first wave arrived in the same turn of the loop: none ran inline.
        assert sum(rounds) >= 32
        assert len(rounds) < sum(rounds)  # some round committed several writes at once
        assert [m.seq for m in await astore.messages.recent(sessions[-1].id)] == [1, 2, 3, 4, 5]
    finally:
        await astore.close()


async def test_slow_commits_at_full_send_a_lone_writer_to_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits slower than the bound keep writes off the event loop's thread."""
    monkeypatch.setattr(sqlite_async, "INLINE_COMMIT_MAX_S", 0.0)
    rounds = _count_group_rounds(monkeypatch)
    astore = await agentkeep.aconnect(f"sqlite:///{tmp_path}/slow.db", durability="full")
    try:
        s = await astore.sessions.create()
        assert rounds == [1]  # a write of the async path too
        rounds.clear()
        for i in range(3):
            await astore.messages.append(s.id, "user", str(i))
        assert rounds == [1, 1, 1]  # each append alone
    finally:
        await astore.close()


async def test_a_failed_group_commit_fails_every_write_of_its_rounds(tmp_path: Path) -> None:
    """Rounds whose COMMIT fails: each task gets that error, or its own, and none a result."""
    conn = sqlite3.connect(tmp_path / "rounds.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (x INTEGER NOT NULL)")
    gate, rounds = threading.Event(), []

    def write(what: str, work: Callable[[Any], Any]) -> Any:  # the store's, on a dying disk
        gate.wait(30)  # until every task has queued its write
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            work(cur)
            rounds.append(cur.execute("SELECT count(*) FROM t").fetchone()[0])
        finally:
            cur.execute("ROLLBACK")
        raise RuntimeError("disk I/O error at commit")

    def insert(x: int | None) -> Callable[[], Steps[None]]:
        def steps() -> Steps[None]:
            yield Stmt("INSERT INTO t (x) VALUES (?)", (x,), COUNT)  # None: NOT NULL fails

        return steps

    group = sqlite_async.GroupCommit(write)
    try:
        values = (1, 2, None, 4, 5)
        tasks = [asyncio.create_task(group.submit("appending", insert(x))) for x in values]
        await asyncio.sleep(0)  # each task runs to its wait: its write is queued
        gate.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    finally:
        group.close()
    for x, outcome in zip(values, outcomes, strict=True):
        if x is None:  # its own failure, from its savepoint or from a round of its own
            assert isinstance(outcome, InvalidInput | Conflict), outcome
        else:
            assert isinstance(outcome, RuntimeError) and "at commit" in str(outcome), outcome
    assert sum(rounds) == 4  # the four good writes ran, each in the round that failed
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


async def test_postgres_async_connections_keep_their_socket_watched(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket is registered with the loop once per connection, not once per wait,
    survives the connection being lost, and is unregistered in the loop when the store closes."""

    loop = asyncio.get_running_loop()
    opened = await agentkeep.aconnect(postgres_url)
    astore = opened.tenant("async_watched")
    try:
        s = await astore.sessions.create()
        await astore.messages.append(s.id, "user", "first")  # connects: watched from now on
        added: list[int] = []
        add_reader = loop.add_reader

        def counting(fd: Any, callback: Any, *args: Any) -> None:
            added.append(fd)
            add_reader(fd, callback, *args)

        monkeypatch.setattr(loop, "add_reader", counting)
        for i in range(10):
            await astore.messages.append(s.id, "user", str(i))
            assert len(await astore.messages.recent(s.id, 3)) == min(i + 2, 3)
        assert added == []  # psycopg's own wait registers the socket for each of these 20
        kept = opened.sync._core.aio._loops[loop].idle  # type: ignore[attr-defined]
        pids = [k.conn.info.backend_pid for k in kept]
        terminate_backends(postgres_url, "pid = ANY(%s)", (pids,))
        await astore.messages.append(s.id, "user", "after")  # on a new connection
        assert (await astore.messages.recent(s.id, 1))[0].text == "after"
        sockets = [k.pgconn.socket for k in opened.sync._core.aio._loops[loop].idle]  # type: ignore[attr-defined]
        assert set(added) == set(sockets)  # psycopg's connect waits on it too
        registered = len(added)
        for i in range(5):
            await astore.messages.append(s.id, "user", str(i))
        assert len(added) == registered
    finally:
        await opened.close()  # closes the store in a worker thread
    assert not loop.remove_reader(added[0])  # was unregistered, in the loop's thread


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])  # memory: one connection
@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_concurrent_append_if_idle_rolls_back_only_the_busy_ones(
    db_url: str, durability: str
) -> None:
    """Tasks adding to a thread with an active run and to idle ones at once (at
    ``full`` on SQLite, committed as groups): each busy append is rolled back alone."""
    from agentkeep.errors import SessionBusy

    astore = await agentkeep.aconnect(db_url, durability=durability, auto_migrate=True)
    try:
        busy = await astore.sessions.create(kind="thread")
        run = await astore.runs.create("asst_x", session_id=busy.id)
        idle = [await astore.sessions.create(kind="thread") for _ in range(8)]

        async def add(session_id: str, i: int) -> Any:
            message = {"role": "user", "content": f"{i}"}
            return await astore.messages.append_if_idle(session_id, message, kind="thread")

        outcomes = await asyncio.gather(
            *(add(busy.id, i) for i in range(8)),
            *(add(s.id, i) for i in range(3) for s in idle),
            return_exceptions=True,
        )
        assert all(isinstance(o, SessionBusy) and o.run_id == run.id for o in outcomes[:8])
        assert not any(isinstance(o, BaseException) for o in outcomes[8:]), outcomes[8:]
        assert (await astore.sessions.get(busy.id)).last_seq == 0
        for s in idle:
            assert [m.seq for m in await astore.messages.recent(s.id)] == [1, 2, 3]
    finally:
        await astore.close()


async def test_append_if_idle_awaited_writes_nothing_while_a_run_is_active(
    store: Store, astore: AsyncStore
) -> None:
    """The sync conformance test's cases, awaited (on PostgreSQL: the append and the
    check sent together in pipeline mode), and a write the database refuses: rolled
    back, the connection still good for the next."""
    from agentkeep.errors import SessionBusy

    thread = await astore.sessions.create(kind="thread")
    first = await astore.messages.append_if_idle(
        thread.id, {"role": "user", "content": "one", "id": "msg_first"}, kind="thread"
    )
    assert (first.seq, first.text) == (1, "one")
    with pytest.raises(Conflict) as taken:  # the database refuses the id, in the pipeline
        await astore.messages.append_if_idle(
            thread.id, {"role": "user", "content": "dup", "id": "msg_first"}
        )
    assert not isinstance(taken.value, SessionBusy)
    assert (await astore.sessions.get(thread.id)).last_seq == 1
    run = await astore.runs.create("asst_x", session_id=thread.id)
    for extra in ({}, {"idempotency_key": "k"}, {"id": "msg_busy"}):
        with pytest.raises(SessionBusy) as busy:
            await astore.messages.append_if_idle(
                thread.id, {"role": "user", "content": "two", **extra}, kind="thread"
            )
        assert (busy.value.session_id, busy.value.run_id) == (thread.id, run.id)
    after = await astore.sessions.get(thread.id)
    assert (after.last_seq, after.message_count) == (1, 1)
    with pytest.raises(NotFound):
        await astore.messages.get("msg_busy")

    await astore.runs.transition(run.id, "cancelled")
    keyed = await astore.messages.append_if_idle(
        thread.id, {"role": "user", "content": "two", "idempotency_key": "k"}
    )
    again = {"role": "user", "content": "again", "idempotency_key": "k"}
    assert await astore.messages.append_if_idle(thread.id, again) == keyed
    assert [m.seq for m in await astore.messages.recent(thread.id)] == [1, 2]
    assert store.messages.recent(thread.id) == await astore.messages.recent(thread.id)

    other = await astore.sessions.create(kind="conversation")
    with pytest.raises(NotFound) as wrong:
        await astore.messages.append_if_idle(
            other.id, {"role": "user", "content": "x"}, kind="thread"
        )
    assert wrong.value.kind == "thread"
    assert (await astore.sessions.get(other.id)).last_seq == 0
    with pytest.raises(NotFound) as missing:
        await astore.messages.append_if_idle("sess_missing", {"role": "user", "content": "x"})
    assert missing.value.kind == "session"
