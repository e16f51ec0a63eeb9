"""Snapshots: create at a session's seq, list, get, delete; fork from one, end to end."""

from __future__ import annotations

import pytest
from _statements import sent_statements, work
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, Message, NotFound, Store


def test_create_at_last_seq_with_session_state(store: Store) -> None:
    s = store.sessions.create(state={"step": 2})
    store.messages.append_many(s.id, [{"role": "user", "content": f"m{i}"} for i in range(3)])
    snap = store.snapshots.create(s.id, label="before tool", metadata={"k": "v"})
    assert snap.id.startswith("snap_")
    assert (snap.session_id, snap.seq, snap.label) == (s.id, 3, "before tool")
    assert snap.state == {"step": 2}
    assert snap.metadata == {"k": "v"}
    assert store.snapshots.get(snap.id) == snap


def test_create_at_given_seq_with_given_state(store: Store) -> None:
    s = store.sessions.create()
    store.messages.append_many(s.id, [{"role": "user", "content": f"m{i}"} for i in range(3)])
    snap = store.snapshots.create(s.id, seq=1, state={"plan": ["a"]})
    assert (snap.seq, snap.state) == (1, {"plan": ["a"]})
    assert store.snapshots.create(s.id, seq=0).seq == 0
    with pytest.raises(InvalidInput) as err:
        store.snapshots.create(s.id, seq=4)
    assert err.value.field == "seq"
    with pytest.raises(InvalidInput) as err:
        store.snapshots.create(s.id, seq=-1)
    assert err.value.field == "seq"
    with pytest.raises(InvalidInput) as err:
        store.snapshots.create(s.id, metadata={"k": 1})  # type: ignore[dict-item]
    assert err.value.field == "metadata.k"
    with pytest.raises(NotFound):
        store.snapshots.create("sess_missing")


def test_list_get_delete(store: Store) -> None:
    s = store.sessions.create()
    other = store.sessions.create()
    made = [store.snapshots.create(s.id, label=f"s{i}") for i in range(5)]
    store.snapshots.create(other.id)
    page = store.snapshots.list(s.id, limit=2)
    assert [x.id for x in page] == [made[4].id, made[3].id] and page.has_more
    rest = store.snapshots.list(s.id, limit=10, after=page.last_id)
    assert [x.id for x in rest] == [m.id for m in reversed(made[:3])] and not rest.has_more
    assert [x.id for x in store.snapshots.list(s.id, order="asc")] == [m.id for m in made]
    store.snapshots.delete(made[0].id)
    with pytest.raises(NotFound):
        store.snapshots.get(made[0].id)
    with pytest.raises(NotFound):
        store.snapshots.delete(made[0].id)
    assert len(store.snapshots.list(s.id)) == 4
    with pytest.raises(NotFound):
        store.snapshots.list("sess_missing")


def test_deleting_the_session_deletes_its_snapshots(store: Store) -> None:
    s = store.sessions.create()
    snap = store.snapshots.create(s.id)
    store.sessions.delete(s.id)
    with pytest.raises(NotFound):
        store.snapshots.get(snap.id)


def test_snapshots_belong_to_their_tenant(store: Store) -> None:
    s = store.sessions.create()
    snap = store.snapshots.create(s.id)
    other = store.tenant(store.tenant_id + "_x")
    with pytest.raises(NotFound):
        other.snapshots.get(snap.id)
    with pytest.raises(NotFound):
        other.snapshots.create(s.id)
    with pytest.raises(NotFound):
        other.snapshots.delete(snap.id)


def test_fork_from_snapshot_end_to_end(store: Store) -> None:
    s = store.sessions.create(title="main", state={"mode": "draft"})
    store.messages.append_many(
        s.id,
        [{"role": "user", "content": "plan a trip"}, {"role": "assistant", "content": "where?"}],
    )
    snap = store.snapshots.create(s.id, label="asked destination", state={"mode": "asking"})
    # The parent goes on after the snapshot.
    store.messages.append(s.id, "user", "Lisbon")
    store.sessions.update(s.id, state={"mode": "booking"})

    fork = store.sessions.fork(s.id, snapshot_id=snap.id, title="alternative")
    assert (fork.parent_id, fork.fork_seq, fork.last_seq) == (s.id, 2, 2)
    assert fork.state == {"mode": "asking"}
    assert [m.content[0]["text"] for m in store.messages.list(fork.id)] == [
        "plan a trip",
        "where?",
    ]

    # Appends to either side do not reach the other.
    forked_msg = store.messages.append(fork.id, "user", "Porto")
    assert forked_msg.seq == 3
    store.messages.append(s.id, "assistant", "booking Lisbon")
    parent_texts = [m.content[0]["text"] for m in store.messages.list(s.id)]
    assert parent_texts == ["plan a trip", "where?", "Lisbon", "booking Lisbon"]
    fork_texts = [m.content[0]["text"] for m in store.messages.list(fork.id)]
    assert fork_texts == ["plan a trip", "where?", "Porto"]
    assert store.sessions.get(s.id).state == {"mode": "booking"}
    assert store.snapshots.get(snap.id).seq == 2  # the snapshot itself is unchanged

    # A snapshot of another session cannot be used.
    other = store.sessions.create()
    with pytest.raises(NotFound):
        store.sessions.fork(other.id, snapshot_id=snap.id)


async def test_async_snapshots(astore: AsyncStore) -> None:
    s = await astore.sessions.create()
    await astore.messages.append(s.id, "user", "hi")
    snap = await astore.snapshots.create(s.id)
    assert snap.seq == 1
    assert [x.id for x in await astore.snapshots.list(s.id)] == [snap.id]
    fork = await astore.sessions.fork(s.id, snapshot_id=snap.id)
    assert fork.message_count == 1
    await astore.snapshots.delete(snap.id)


def _texts(messages: list[Message]) -> list[str]:
    return [m.content[0]["text"] for m in messages]


def test_a_snapshot_does_not_move_when_earlier_messages_are_edited_or_deleted(
    store: Store,
) -> None:
    s = store.sessions.create(state={"step": 1})
    made = store.messages.append_many(
        s.id, [{"role": "user", "content": f"m{i}"} for i in range(1, 6)]
    )
    store.messages.delete(made[4].id)  # deleted before the snapshot: not in it
    store.messages.update(made[1].id, content="m2 edited before")  # edited before: as edited
    snap = store.snapshots.create(s.id, seq=4, label="at 4")
    captured = store.snapshots.messages(snap.id)
    assert _texts(captured) == ["m1", "m2 edited before", "m3", "m4"]
    assert [m.id for m in captured] == [m.id for m in made[:4]]

    # Afterwards: edits, deletes, metadata changes, appends and a second snapshot.
    store.messages.update(made[0].id, content="m1 edited after", metadata={"k": "v"})
    store.messages.update(made[0].id, content="m1 edited twice")
    store.messages.delete(made[2].id)
    store.messages.update(made[3].id, extra={"x": 1})
    store.messages.append(s.id, "assistant", "m6")
    later = store.snapshots.create(s.id)
    store.messages.delete(made[0].id)
    store.messages.update(made[1].id, content="m2 edited after both")

    assert store.snapshots.messages(snap.id) == captured  # identical, field for field
    fork = store.sessions.fork(s.id, snapshot_id=snap.id)
    forked = store.messages.list(fork.id, order="asc").items
    assert _texts(forked) == _texts(captured) and [m.seq for m in forked] == [1, 2, 3, 4]
    assert [(m.metadata, m.extra) for m in forked] == [(m.metadata, m.extra) for m in captured]
    assert (fork.message_count, fork.last_seq, fork.state) == (4, 4, {"step": 1})

    assert _texts(store.snapshots.messages(later.id)) == [
        "m1 edited twice",
        "m2 edited before",
        "m4",
        "m6",
    ]
    assert _texts(store.messages.list(s.id, order="asc").items) == [
        "m2 edited after both",
        "m4",
        "m6",
    ]
    # A fork at a seq (no snapshot) takes the session as it is now.
    assert _texts(
        store.messages.list(store.sessions.fork(s.id, at_seq=4).id, order="asc").items
    ) == [
        "m2 edited after both",
        "m4",
    ]


def test_kept_rows_go_with_their_snapshot_and_their_session(store: Store) -> None:
    s = store.sessions.create()
    (m,) = store.messages.append_many(s.id, [{"role": "user", "content": "original"}])
    snap = store.snapshots.create(s.id)
    store.messages.update(m.id, content="changed")
    store.snapshots.delete(snap.id)  # its kept row goes with it
    again = store.snapshots.create(s.id)
    assert _texts(store.snapshots.messages(again.id)) == ["changed"]
    store.messages.delete(m.id)
    assert _texts(store.snapshots.messages(again.id)) == ["changed"]
    store.sessions.delete(s.id)
    with pytest.raises(NotFound):
        store.snapshots.messages(again.id)


async def test_async_snapshot_messages(astore: AsyncStore) -> None:
    s = await astore.sessions.create()
    m = await astore.messages.append(s.id, "user", "hi")
    snap = await astore.snapshots.create(s.id)
    await astore.messages.update(m.id, content="bye")
    assert _texts(await astore.snapshots.messages(snap.id)) == ["hi"]


async def test_a_sessions_snapshots_are_listed_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync API's pages, one statement each (and one that the session exists under an
    empty first page), no worker thread; a session that does not exist is NotFound."""
    s = store.sessions.create()
    empty = store.sessions.create()
    store.messages.append(s.id, "user", "hi")
    made = [store.snapshots.create(s.id, label=f"l{i}") for i in range(3)]
    no_worker_threads(monkeypatch, "snapshots.list")
    with sent_statements(store) as sent:
        first = await astore.snapshots.list(s.id, limit=2)
    assert len(work(sent)) == 1, work(sent)
    assert [x.id for x in first.items] == [made[2].id, made[1].id] and first.has_more
    rest = await astore.snapshots.list(s.id, after=first.last_id)
    assert [x.id for x in rest.items] == [made[0].id] and not rest.has_more
    oldest = await astore.snapshots.list(s.id, order="asc", limit=1)
    assert oldest.items == store.snapshots.list(s.id, order="asc", limit=1).items
    with sent_statements(store) as sent:
        none = await astore.snapshots.list(empty.id)
    assert none.items == [] and len(work(sent)) == 2, work(sent)
    with pytest.raises(NotFound):
        await astore.snapshots.list("sess_missing")
    with pytest.raises(InvalidInput) as bad:
        await astore.snapshots.list(s.id, order="sideways")  # type: ignore[arg-type]
    assert bad.value.field == "order"


async def test_a_snapshot_is_taken_and_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking a snapshot is one write of two statements (the session's point, the insert);
    reading its messages one read of three (the snapshot, the live messages up to its
    seq, the rows it kept), the sync API's answers, no worker thread."""
    s = store.sessions.create()
    store.sessions.update(s.id, state={"step": 1})
    first = store.messages.append(s.id, "user", "one")
    store.messages.append(s.id, "assistant", "two")
    no_worker_threads(monkeypatch, "snapshots")
    with sent_statements(store) as sent:
        snap = await astore.snapshots.create(s.id, label="l", metadata={"k": "v"})
    assert [v.split(None, 1)[0].upper() for v in work(sent)] == ["SELECT", "INSERT"], sent
    assert (snap.seq, snap.state, snap.label, snap.metadata) == (2, {"step": 1}, "l", {"k": "v"})
    assert await astore.snapshots.get(snap.id) == snap == store.snapshots.get(snap.id)
    at_one = await astore.snapshots.create(s.id, seq=1, state={"mine": True})
    assert (at_one.seq, at_one.state) == (1, {"mine": True})
    store.messages.update(first.id, content="edited")
    store.messages.append(s.id, "user", "three")
    with sent_statements(store) as sent:
        kept = await astore.snapshots.messages(snap.id)
    assert len(work(sent)) == 3, work(sent)
    assert _texts(kept) == ["one", "two"] and kept == store.snapshots.messages(snap.id)
    assert _texts(await astore.snapshots.messages(at_one.id)) == ["one"]
    with pytest.raises(InvalidInput) as bad:
        await astore.snapshots.create(s.id, seq=9)
    assert bad.value.field == "seq"
    with pytest.raises(NotFound) as missing:
        await astore.snapshots.create("sess_missing")
    assert missing.value.kind == "session"
    with pytest.raises(NotFound) as missing:
        await astore.snapshots.messages("snap_missing")
    assert missing.value.kind == "snapshot"
    assert [x.id for x in store.snapshots.list(s.id).items] == [at_one.id, snap.id]
