"""Snapshots: create at a session's seq, list, get, delete; fork from one, end to end."""

from __future__ import annotations

import pytest

from agentkeep import AsyncStore, InvalidInput, NotFound, Store


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
