"""Sessions: create, read, update with versions, list with filters, delete, fork."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _statements import sent_statements, work
from _threads import WAIT_S, no_worker_threads, until_it_waits

from agentkeep import AsyncStore, Conflict, InvalidInput, NotFound, Store


def test_create_and_get_round_trip(store: Store) -> None:
    s = store.sessions.create(
        user_id="u1", title="Trip", metadata={"k": "v"}, traits={"tier": 2}, state={"a": [1]}
    )
    got = store.sessions.get(s.id)
    assert got == s
    assert got.id.startswith("sess_")
    assert (got.message_count, got.last_seq, got.version) == (0, 0, 1)


def test_kinds_have_their_prefixes(store: Store) -> None:
    assert store.sessions.create(kind="thread").id.startswith("thread_")
    assert store.sessions.create(kind="conversation").id.startswith("conv_")
    with pytest.raises(InvalidInput) as err:
        store.sessions.create(kind="bogus")
    assert err.value.field == "kind"


def test_update_with_stale_version_conflicts(store: Store) -> None:
    s = store.sessions.create()
    updated = store.sessions.update(s.id, title="new", expected_version=1)
    assert updated.version == 2 and updated.title == "new"
    with pytest.raises(Conflict):
        store.sessions.update(s.id, title="lost", expected_version=1)
    assert store.sessions.get(s.id).title == "new"


def test_metadata_limits_name_the_field(store: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        store.sessions.create(metadata={f"k{i}": "v" for i in range(17)})
    assert err.value.field == "metadata"
    with pytest.raises(InvalidInput) as err:
        store.sessions.create(metadata={"k": "x" * 513})
    assert err.value.field == "metadata.k"
    assert store.sessions.list().items == []


def test_list_filters_and_cursor_pagination(store: Store) -> None:
    made = [
        store.sessions.create(user_id="a" if i % 2 else "b", metadata={"n": str(i)})
        for i in range(7)
    ]
    page = store.sessions.list(limit=3)
    assert [s.id for s in page] == [s.id for s in reversed(made)][:3]
    assert page.has_more
    seen = [s.id for s in page]
    while page.has_more:
        page = store.sessions.list(limit=3, after=page.last_id)
        seen += [s.id for s in page]
    assert seen == [s.id for s in reversed(made)]
    assert {s.id for s in store.sessions.list(user_id="a")} == {
        s.id for s in made if s.user_id == "a"
    }
    assert [s.id for s in store.sessions.list(metadata={"n": "3"})] == [made[3].id]
    back = store.sessions.list(limit=2, before=made[2].id, order="asc")
    assert [s.id for s in back] == [made[0].id, made[1].id]


def test_list_by_time_range(store: Store) -> None:
    s = store.sessions.create()
    now = datetime.now(UTC)
    assert [x.id for x in store.sessions.list(created_after=now - timedelta(minutes=1))] == [s.id]
    assert store.sessions.list(created_before=now - timedelta(minutes=1)).items == []


def test_delete_cascades_and_missing_is_not_found(store: Store) -> None:
    s = store.sessions.create()
    m = store.messages.append(s.id, "user", "hi")
    store.sessions.delete(s.id)
    with pytest.raises(NotFound):
        store.sessions.get(s.id)
    with pytest.raises(NotFound):
        store.messages.get(m.id)
    with pytest.raises(NotFound):
        store.sessions.delete(s.id)


def test_fork_copies_history_and_isolates(store: Store) -> None:
    s = store.sessions.create(title="root")
    for i in range(5):
        store.messages.append(s.id, "user", f"m{i}")
    child = store.sessions.fork(s.id, at_seq=3)
    assert (child.parent_id, child.fork_seq, child.message_count) == (s.id, 3, 3)
    assert [m.text for m in store.messages.recent(child.id, 10)] == ["m0", "m1", "m2"]
    store.messages.append(child.id, "assistant", "child only")
    store.messages.append(s.id, "assistant", "parent only")
    assert [m.text for m in store.messages.recent(child.id, 10)][-1] == "child only"
    assert store.messages.recent(child.id, 10)[-1].seq == 4
    assert [m.text for m in store.messages.recent(s.id, 10)][-1] == "parent only"
    with pytest.raises(InvalidInput) as err:
        store.sessions.fork(s.id, at_seq=99)
    assert err.value.field == "at_seq"


def test_tenants_do_not_see_each_other(store: Store) -> None:
    s = store.sessions.create()
    other = store.tenant(store.tenant_id + "_other")
    with pytest.raises(NotFound):
        other.sessions.get(s.id)
    assert other.sessions.list().items == []


def test_locked_session_holds_appends_until_commit(store: Store) -> None:
    """``get(lock=True)`` in a transaction makes appends to the session wait for its commit."""
    s = store.sessions.create()
    locked = threading.Event()
    appending = threading.Event()
    done = threading.Event()
    order: list[str] = []

    def appender() -> None:
        locked.wait(WAIT_S)
        appending.set()
        store.messages.append(s.id, "user", "waits")
        order.append("append done")
        done.set()

    other = threading.Thread(target=appender)
    other.start()
    try:
        with store.transaction():
            store.sessions.get(s.id, lock=True)
            locked.set()
            assert appending.wait(WAIT_S)
            # Commit once the append is seen waiting; an append that does not wait ends
            # first and the order below fails.
            until_it_waits(store, other, done.is_set, "the append")
            order.append("holder commits")
    finally:
        locked.set()
        other.join(WAIT_S)
    assert order == ["holder commits", "append done"]
    with pytest.raises(NotFound), store.transaction():
        store.sessions.get("sess_missing", lock=True)


def test_append_if_idle_sees_a_run_committed_while_it_waited(store: Store) -> None:
    """A run committed while ``append_if_idle`` waited for the session's row stops it.

    On PostgreSQL the check is in the append's statement, whose snapshot is
    older than that run: the check must read with one of its own, taken once
    the row is held (an ``EXISTS`` on ``runs`` in the statement fails here).
    """
    from agentkeep.errors import SessionBusy

    s = store.sessions.create(kind="thread")
    outcome: list[object] = []

    def adder() -> None:
        try:
            outcome.append(store.messages.append_if_idle(s.id, {"role": "user", "content": "late"}))
        except SessionBusy as exc:
            outcome.append(exc)

    other = threading.Thread(target=adder)
    with store.transaction():
        store.messages.append(s.id, "user", "first")  # takes the session's row
        run = store.runs.create("asst_x", session_id=s.id)
        other.start()
        until_it_waits(store, other, lambda: bool(outcome), "the append")
        assert not outcome, "the append did not wait for the session's row"
    other.join(WAIT_S)
    assert len(outcome) == 1 and isinstance(outcome[0], SessionBusy), outcome
    assert outcome[0].run_id == run.id
    assert [m.text for m in store.messages.recent(s.id)] == ["first"]
    assert store.sessions.get(s.id).last_seq == 1


def test_title_search_and_count_share_the_filters(store: Store) -> None:
    store.sessions.create(title="Refund for order A17", user_id="ann")
    store.sessions.create(title="refund 100%_off", user_id="bob")
    store.sessions.create(title="Shipping", user_id="ann")
    store.sessions.create(user_id="ann")  # no title: never matches a search
    titles = {s.title for s in store.sessions.list(title_contains="REFUND")}
    assert titles == {"Refund for order A17", "refund 100%_off"}
    assert store.sessions.count(title_contains="refund") == 2
    # LIKE wildcards in the text are matched literally
    assert [s.title for s in store.sessions.list(title_contains="%_")] == ["refund 100%_off"]
    assert store.sessions.count(title_contains="%") == 1
    assert store.sessions.count(user_id="ann") == 3
    assert store.sessions.count(user_id="ann", title_contains="ship") == 1
    assert store.sessions.count() == 4
    assert store.tenant("other-tenant-x").sessions.count() == 0
    with pytest.raises(InvalidInput) as err:
        store.sessions.count(title_contains="")
    assert err.value.field == "title_contains"


def test_list_by_creation_time_across_kinds(store: Store) -> None:
    made = [store.sessions.create(kind=k) for k in ("thread", "session", "conversation", "session")]
    newest_first = [s.id for s in reversed(made)]
    page = store.sessions.list(sort="created_at", limit=3)
    assert [s.id for s in page] == newest_first[:3] and page.has_more
    rest = store.sessions.list(sort="created_at", after=page.last_id)
    assert [s.id for s in rest] == newest_first[3:]
    back = store.sessions.list(sort="created_at", before=rest.first_id)
    assert [s.id for s in back] == newest_first[:3]
    with pytest.raises(InvalidInput) as err:
        store.sessions.list(sort="title")  # type: ignore[arg-type]
    assert err.value.field == "sort"


def test_exists_and_listing_by_id_prefix(store: Store) -> None:
    made = [store.sessions.create(id=f"kode_{name}") for name in ("a1", "a2", "b1")]
    store.sessions.create(id="kode%_odd")
    assert store.sessions.exists(made[0].id)
    assert not store.sessions.exists("kode_nope")
    assert not store.tenant("elsewhere").sessions.exists(made[0].id)
    assert store.sessions.exists(made[0].id, kind=made[0].kind)
    assert not store.sessions.exists(made[0].id, kind="not-its-kind")
    assert not store.sessions.exists("kode_nope", kind=made[0].kind)
    listed = store.sessions.list(id_prefix="kode_a", order="asc")
    assert [s.id for s in listed.items] == ["kode_a1", "kode_a2"]
    # the prefix is literal: % and _ are no wildcards
    assert [s.id for s in store.sessions.list(id_prefix="kode%").items] == ["kode%_odd"]
    assert len(store.sessions.list(id_prefix="kode_").items) == 3
    # count takes the same prefix, as literally
    assert store.sessions.count(id_prefix="kode_a") == 2
    assert store.sessions.count(id_prefix="kode_") == 3
    assert store.sessions.count(id_prefix="kode%") == 1
    assert store.sessions.count(id_prefix="kode_b", kind="thread") == 0
    assert store.tenant("elsewhere").sessions.count(id_prefix="kode") == 0
    with pytest.raises(InvalidInput) as err:
        store.sessions.count(id_prefix="")
    assert err.value.field == "id_prefix"


def test_fork_many_is_all_or_nothing(store: Store) -> None:
    a = store.sessions.create(title="a")
    b = store.sessions.create(kind="thread", title="b")
    for i in range(3):
        store.messages.append(a.id, "user", f"a{i}")
        store.messages.append(b.id, "user", f"b{i}")
    snap = store.snapshots.create(b.id, label="at 2", state={"step": 2})
    store.messages.append(b.id, "user", "b3")
    forks = store.sessions.fork_many(
        [
            {"session_id": a.id, "at_seq": 1},
            {"session_id": b.id, "snapshot_id": snap.id, "title": "from snap"},
            {"session_id": a.id, "metadata": {"copy": "2"}},
        ]
    )
    assert [(f.parent_id, f.fork_seq, f.message_count) for f in forks] == [
        (a.id, 1, 1),
        (b.id, 3, 3),
        (a.id, 3, 3),
    ]
    assert forks[1].id.startswith("thread_") and forks[1].title == "from snap"
    assert forks[1].state == {"step": 2} and forks[2].metadata == {"copy": "2"}
    assert [m.text for m in store.messages.recent(forks[0].id)] == ["a0"]
    assert store.sessions.count(parent_id=a.id) == 2
    assert store.sessions.fork_many([]) == []

    before = store.sessions.count()
    for bad, field in (
        ([{"session_id": a.id}, {"session_id": a.id, "at_seq": 99}], "forks[1].at_seq"),
        ([{"session_id": a.id}, {"session_id": a.id, "at_seq": -1}], "forks[1].at_seq"),
        ([{"at_seq": 1}], "forks[0].session_id"),
        ([{"session_id": a.id, "at_seq": 1, "snapshot_id": snap.id}], "forks[0].at_seq"),
        ([{"session_id": a.id, "atseq": 1}], "forks[0].atseq"),
        ([{"session_id": a.id}, {"session_id": b.id, "metadata": {"k": 1}}], "forks[1].metadata.k"),
        (["not a fork"], "forks[0]"),
        ("a string", "forks"),
    ):
        with pytest.raises(InvalidInput) as err:
            store.sessions.fork_many(bad)  # type: ignore[arg-type]
        assert err.value.field == field, bad
    with pytest.raises(NotFound):
        store.sessions.fork_many([{"session_id": a.id}, {"session_id": "sess_missing"}])
    with pytest.raises(NotFound):
        store.sessions.fork_many([{"session_id": a.id, "snapshot_id": snap.id}])  # b's snapshot
    assert store.sessions.count() == before  # nothing half-written


async def test_fork_many_async(astore: AsyncStore) -> None:
    s = await astore.sessions.create()
    await astore.messages.append(s.id, "user", "hi")
    forks = await astore.sessions.fork_many(
        [{"session_id": s.id}, {"session_id": s.id, "at_seq": 0}]
    )
    assert [f.message_count for f in forks] == [1, 0]


async def test_forks_are_one_transaction_on_the_async_connections(
    store: Store, astore: AsyncStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fork`` and ``fork_many`` on the event loop: one transaction (BEGIN ... COMMIT on
    PostgreSQL's autocommit connections, the parent read FOR NO KEY UPDATE), the copies
    whole (content blocks, metadata, extra, run and agent) under ids of their own; a
    failing fork of many leaves nothing written."""
    parent = store.sessions.create(title="p", metadata={"k": "v"})
    store.sessions.update(parent.id, state={"step": 1})
    store.messages.append(parent.id, "user", "plain")
    store.messages.append(
        parent.id,
        "assistant",
        [{"type": "text", "text": "rich"}, {"type": "image_url", "image_url": {"url": "u"}}],
        metadata={"m": "1"},
        extra={"e": [1, 2]},
        agent_id="asst_x",
    )
    store.messages.append(parent.id, "user", "third")
    snap = store.snapshots.create(parent.id, seq=2, state={"snap": True})
    no_worker_threads(monkeypatch, "sessions.fork")
    with sent_statements(store) as sent:
        fork = await astore.sessions.fork(parent.id, at_seq=2, title="f")
    if backend == "postgres":
        verbs = [v for s in sent if (v := s.split(None, 1)[0].upper()) != "SET"]
        assert (verbs[0], verbs[-1]) == ("BEGIN", "COMMIT"), sent
        assert any("FOR NO KEY UPDATE" in s for s in sent), sent
    assert (fork.parent_id, fork.fork_seq, fork.message_count, fork.title) == (parent.id, 2, 2, "f")
    assert (fork.metadata, fork.state, fork.last_seq) == ({"k": "v"}, {"step": 1}, 2)
    assert await astore.sessions.get(fork.id) == fork
    theirs, ours = store.messages.recent(parent.id, 2 + 1)[:2], store.messages.recent(fork.id)
    fields = ("seq", "role", "content", "metadata", "extra", "agent_id", "created_at")
    assert [[getattr(m, f) for f in fields] for m in ours] == [
        [getattr(m, f) for f in fields] for m in theirs
    ]
    assert {m.id for m in ours}.isdisjoint(m.id for m in theirs)
    from_snap = await astore.sessions.fork(parent.id, snapshot_id=snap.id)
    assert (from_snap.fork_seq, from_snap.state, from_snap.message_count) == (2, {"snap": True}, 2)
    before = store.sessions.count()
    with pytest.raises(NotFound):
        await astore.sessions.fork_many([{"session_id": parent.id}, {"session_id": "sess_x"}])
    with pytest.raises(InvalidInput) as bad:
        await astore.sessions.fork_many(
            [{"session_id": parent.id}, {"session_id": parent.id, "at_seq": 9}]
        )
    assert bad.value.field == "forks[1].at_seq"
    assert store.sessions.count() == before  # nothing of the first forks written
    both = await astore.sessions.fork_many([{"session_id": parent.id}, {"session_id": fork.id}])
    assert [f.message_count for f in both] == [3, 2]


async def test_a_created_session_reads_back_as_returned_sync_and_async(store: Store) -> None:
    """``sessions.create`` binds its row itself (one INSERT, on the async path too): what
    it returns is what is stored, JSON columns included; a taken id is a Conflict that
    leaves the first; a rolled-back transaction leaves no session."""
    fields: dict[str, Any] = {
        "kind": "thread",
        "agent_id": "asst_1",
        "user_id": "user-1",
        "title": "Trip",
        "metadata": {"k": "v", "é": "ü"},
        "traits": {"a": [1, 2, {"b": None}], "on": True},
        "state": {"x": 'é\n"', "n": 1.5},
        "extra": {"tool_resources": {"code_interpreter": {"file_ids": []}}},
    }
    made = store.sessions.create(**fields)
    assert store.sessions.get(made.id) == made
    assert (made.kind, made.metadata, made.state) == ("thread", fields["metadata"], fields["state"])
    amade = await AsyncStore(store).sessions.create(**fields)
    assert amade.id != made.id and store.sessions.get(amade.id) == amade
    with pytest.raises(Conflict):
        store.sessions.create(id=made.id, title="other")
    assert store.sessions.get(made.id) == made
    with pytest.raises(RuntimeError), store.transaction():
        store.sessions.create(id="sess_rolled_back")
        raise RuntimeError("rolled back")
    with pytest.raises(NotFound):
        store.sessions.get("sess_rolled_back")


async def test_get_reads_a_session_as_its_writes_returned_sync_and_async(store: Store) -> None:
    """``sessions.get`` is one compiled read on the driver (the async API's without a
    thread): what an update and a fork returned reads back the same, every column's type
    kept; NotFound for a missing session and another tenant's, locked or not."""
    s = store.sessions.create(kind="conversation", title="t", metadata={"k": "v"})
    store.messages.append_many(s.id, [{"role": "user", "content": "a"}] * 3)
    updated = store.sessions.update(
        s.id,
        state={"nested": {"é": ['"q"', None, 1.5, "\\n"]}, "s": "42"},
        traits={"on": True, "list": [[], {}]},
        extra={"x": {"y": "z"}},
        user_id="user-1",
    )
    fork = store.sessions.fork(s.id, at_seq=2, title=None)
    assert (updated.message_count, updated.last_seq, updated.version) == (3, 3, 2)
    assert (fork.parent_id, fork.fork_seq, fork.title) == (s.id, 2, None)
    astore = AsyncStore(store)
    for expected in (updated, fork):
        for got in (
            store.sessions.get(expected.id),
            await astore.sessions.get(expected.id),
            await astore.sessions.get(expected.id, lock=True),
        ):
            assert got == expected
            assert got.model_dump() == expected.model_dump()
            assert got.created_at.tzinfo is not None and type(got.message_count) is int
    with store.transaction():
        assert store.sessions.get(s.id, lock=True) == updated
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    for missing in ("sess_missing", ""):
        with pytest.raises(NotFound):
            store.sessions.get(missing)
        with pytest.raises(NotFound):
            await astore.sessions.get(missing)
    with pytest.raises(NotFound):
        await other.sessions.get(s.id)
    with pytest.raises(NotFound):
        other.sync.sessions.get(s.id, lock=True)


async def test_list_and_count_on_the_async_connections_compiled_once_per_shape(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``list`` and ``count`` of the async API give what the sync API gives, without a
    worker thread; every filter's value is a parameter, so a second call of the same
    shape with other values compiles nothing (and keeps a key with a quote exact)."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    made = [
        store.sessions.create(
            kind="thread" if i % 2 else "session",
            user_id=f"u{i % 3}",
            title=f"trip {i} 50%_off" if i % 4 == 0 else f"trip {i}",
            metadata={'a"b': str(i % 2), "n": str(i)},
            id=f"sess_pre_{i:02d}" if i < 6 else None,
        )
        for i in range(12)
    ]
    queries: list[dict[str, Any]] = [
        {},
        {"kind": "thread", "limit": 3},
        {"user_id": "u1", "order": "asc"},
        {"metadata": {'a"b': "1"}},
        {"metadata": {'a"b': "0", "n": "4"}},
        {"title_contains": "%_OFF"},
        {"id_prefix": "sess_pre_0", "order": "asc", "limit": 2},
        {"created_after": start, "active_before": datetime.now(UTC) + timedelta(hours=1)},
        {"sort": "created_at", "limit": 5},
        {"sort": "created_at", "after": made[7].id, "order": "asc"},
        {"sort": "created_at", "before": made[3].id},
        {"after": made[9].id, "before": made[2].id},
    ]
    sync_pages = [store.sessions.list(**q) for q in queries]
    counted = [{k: v for k, v in q.items() if k not in _PAGING} for q in queries]
    sync_counts = [store.sessions.count(**q) for q in counted]
    no_worker_threads(monkeypatch, "sessions.list")
    for q, c, page, n in zip(queries, counted, sync_pages, sync_counts, strict=True):
        got = await astore.sessions.list(**q)
        assert (got.items, got.has_more, got.first_id) == (page.items, page.has_more, page.first_id)
        assert await astore.sessions.count(**c) == n
    assert [s.id for s in sync_pages[3]] == [
        s.id for s in reversed(made) if int(s.metadata["n"]) % 2
    ]
    assert [s.id for s in sync_pages[4]] == [made[4].id]
    assert {s.title for s in sync_pages[5]} == {f"trip {i} 50%_off" for i in (0, 4, 8)}
    assert [s.id for s in sync_pages[6]] == ["sess_pre_00", "sess_pre_01"]
    assert sync_counts[0] == 12 and sync_counts[3] == 6

    shaped = store._core.message_sql._shaped
    compiled = len(shaped)
    await astore.sessions.list(kind="session", limit=4)
    await astore.sessions.list(metadata={"x": "y", "n": "1"}, title_contains="a_b")
    await astore.sessions.count(metadata={"other": "z"})
    store.sessions.list(kind="thread", limit=2)
    assert len(shaped) == compiled + 1  # only two metadata keys with a title was a new shape
    with pytest.raises(InvalidInput) as err:
        await astore.sessions.list(sort="created_at", after="sess_missing")
    assert err.value.field == "after"


_PAGING = {"limit", "order", "sort", "after", "before"}


def test_a_delete_of_one_kind_leaves_a_session_of_another(store: Store) -> None:
    """``delete(kind=...)`` deletes only a session of that kind: NotFound of that kind for
    another kind's (which stays, with its messages) and for a missing id."""
    thread = store.sessions.create(kind="thread")
    message = store.messages.append(thread.id, "user", "hi")
    with pytest.raises(NotFound) as err:
        store.sessions.delete(thread.id, kind="conversation")
    assert err.value.kind == "conversation"
    assert store.messages.get(message.id) == message
    store.sessions.delete(thread.id, kind="thread")
    with pytest.raises(NotFound):
        store.messages.get(message.id)
    with pytest.raises(NotFound) as err:
        store.sessions.delete(thread.id, kind="thread")
    assert err.value.kind == "thread"


async def test_an_update_is_one_statement_of_its_kind_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sessions.update`` sets the fields, bumps the version and stamps the time in one
    statement (sync and async alike, no worker thread); with ``kind``, a session of another
    kind is NotFound of that kind and unchanged; a stale ``expected_version`` is a Conflict
    naming the current one (a second statement reads it), and changes nothing."""
    s = store.sessions.create(kind="conversation", metadata={"a": "1"}, state={"n": 1})
    no_worker_threads(monkeypatch, "sessions.update")
    with sent_statements(store) as sent:
        got = await astore.sessions.update(
            s.id, kind="conversation", expected_version=1, metadata={"b": "2"}, title="t"
        )
    assert len(work(sent)) == 1, work(sent)
    assert (got.version, got.metadata, got.title, got.state) == (2, {"b": "2"}, "t", {"n": 1})
    assert got.updated_at >= s.updated_at
    assert store.sessions.get(s.id) == got

    with pytest.raises(NotFound) as missing:
        await astore.sessions.update(s.id, kind="thread", title="no")
    assert missing.value.kind == "thread"
    with pytest.raises(NotFound):
        await astore.sessions.update("conv_missing", title="no")
    with sent_statements(store) as sent, pytest.raises(Conflict) as stale:
        await astore.sessions.update(s.id, expected_version=1, title="lost")
    assert stale.value.current_version == 2 and len(work(sent)) == 2
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    with pytest.raises(NotFound):
        await other.sessions.update(s.id, title="theirs")
    assert store.sessions.get(s.id) == got
    again = store.sessions.update(s.id, user_id=None, state={"n": 2})  # the sync API: the same
    assert (again.version, again.user_id, again.state, again.title) == (3, None, {"n": 2}, "t")
