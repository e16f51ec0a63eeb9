"""The async API's reads and deletes of one row by id: on the async connections, and a
delete takes with it what points to the row, on every backend."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from _statements import sent_statements, work
from _threads import no_worker_threads

from agentkeep import AsyncStore, Store
from agentkeep.errors import NotFound
from agentkeep.store.schema import agent_versions


def _sqlite_file(store: Store) -> bool:
    """SQLite's own writer does not check foreign keys: its cascading deletes run in a
    worker thread, on a connection of the engine (``Write.cascades``)."""
    return store.url.startswith("sqlite") and not store._core.dialect.memory


async def test_get_by_id_gives_what_the_sync_api_gives(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run, a tool call (``is_error`` a bool, its approval), a snapshot and a usage row
    read by the async API equal the sync API's, read without a worker thread; a missing
    id and another tenant's are NotFound."""
    agent = store.agents.create(model="m")
    s = store.sessions.create()
    store.messages.append(s.id, "user", "hi")
    run = store.runs.create(agent.id, session_id=s.id, metadata={"k": "v"})
    call = store.tool_calls.create("lookup", {"q": 1}, run_id=run.id)
    call = store.tool_calls.complete(call.id, {"error": "x"}, is_error=True)
    held = store.tool_calls.create("pay", {"amount": 2}, run_id=run.id)
    held = store.tool_calls.require_approval(held.id, by="ops", note="check")
    snapshot = store.snapshots.create(s.id)
    usage = store.usage.record(
        provider="openai",
        model="m",
        input_tokens=5,
        output_tokens=7,
        run_id=run.id,
        cost_usd=Decimal("0.000123"),
    )
    no_worker_threads(monkeypatch, "a read by id")
    pairs = [
        (run, await astore.runs.get(run.id)),
        (call, await astore.tool_calls.get(call.id)),
        (held, await astore.tool_calls.get(held.id)),
        (snapshot, await astore.snapshots.get(snapshot.id)),
        (usage, await astore.usage.get(usage.id)),
    ]
    for expected, got in pairs:
        assert got == expected
        assert got.model_dump(mode="json") == expected.model_dump(mode="json")
    assert (await astore.tool_calls.get(call.id)).is_error is True
    assert (await astore.tool_calls.get(held.id)).is_error is False
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    for resource, ident in (
        ("runs", run.id),
        ("tool_calls", call.id),
        ("snapshots", snapshot.id),
        ("usage", usage.id),
    ):
        with pytest.raises(NotFound):
            await getattr(astore, resource).get(ident + "x")
        with pytest.raises(NotFound):
            await getattr(other, resource).get(ident)


async def test_delete_takes_what_points_to_the_row(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting a session takes its messages, runs, tool calls and snapshots; a run its
    tool calls; an agent its versions. Another tenant's delete and a second delete are
    NotFound and change nothing. No worker thread but for SQLite's file (see above)."""
    agent = store.agents.create(model="m")
    store.agents.update(agent.id, model="m2")
    keep, gone = store.sessions.create(), store.sessions.create()
    msgs = {s.id: store.messages.append(s.id, "user", "hi") for s in (keep, gone)}
    runs = {s.id: store.runs.create(agent.id, session_id=s.id) for s in (keep, gone)}
    calls = {s.id: store.tool_calls.create("f", run_id=runs[s.id].id) for s in (keep, gone)}
    snaps = {s.id: store.snapshots.create(s.id) for s in (keep, gone)}
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    if not _sqlite_file(store):
        no_worker_threads(monkeypatch, "a delete by id")

    with pytest.raises(NotFound):
        await other.sessions.delete(gone.id)
    await astore.sessions.delete(gone.id)
    with pytest.raises(NotFound):
        await astore.sessions.delete(gone.id)
    for read, ident in (
        (store.sessions.get, gone.id),
        (store.messages.get, msgs[gone.id].id),
        (store.runs.get, runs[gone.id].id),
        (store.tool_calls.get, calls[gone.id].id),
        (store.snapshots.get, snaps[gone.id].id),
    ):
        with pytest.raises(NotFound):
            read(ident)
    assert store.messages.get(msgs[keep.id].id) == msgs[keep.id]
    assert store.snapshots.get(snaps[keep.id].id) == snaps[keep.id]

    await astore.runs.delete(runs[keep.id].id)
    with pytest.raises(NotFound):
        store.tool_calls.get(calls[keep.id].id)
    assert store.sessions.get(keep.id).id == keep.id

    await astore.snapshots.delete(snaps[keep.id].id)
    with pytest.raises(NotFound):
        await astore.snapshots.delete(snaps[keep.id].id)
    call = store.tool_calls.create("g", session_id=keep.id)
    await astore.tool_calls.delete(call.id)
    with pytest.raises(NotFound):
        await astore.tool_calls.delete(call.id)

    def versions() -> int:
        with store._core.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        agent_versions.c.tenant_id == store.tenant_id,
                        agent_versions.c.id == agent.id,
                    )
                ).scalar_one()
            )

    assert versions() >= 1
    with pytest.raises(NotFound):
        await other.agents.delete(agent.id)
    await astore.agents.delete(agent.id)
    assert versions() == 0
    with pytest.raises(NotFound):
        store.agents.get(agent.id)


def test_sync_delete_inside_a_transaction_rolls_back_with_it(store: Store) -> None:
    """Inside ``store.transaction()`` a delete runs on its connection: undone with it."""
    s = store.sessions.create()
    m = store.messages.append(s.id, "user", "hi")

    class Undo(Exception):
        pass

    with pytest.raises(Undo), store.transaction():
        store.sessions.delete(s.id)
        with pytest.raises(NotFound):
            store.sessions.get(s.id)
        raise Undo
    assert store.messages.get(m.id) == m


async def test_a_message_delete_is_one_write_that_snapshots_keep(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``messages.delete`` of the async API: the snapshots covering the message keep it,
    the session's count goes down, the others keep their ``seq``; one statement on
    PostgreSQL (three on SQLite, one write), no worker thread. A missing id, or another
    tenant's, is NotFound and changes nothing."""
    s = store.sessions.create()
    made = store.messages.append_many(
        s.id, [{"role": "user", "content": f"m{i}"} for i in range(4)]
    )
    snapshot = store.snapshots.create(s.id)
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    no_worker_threads(monkeypatch, "messages.delete")

    with pytest.raises(NotFound):
        await other.messages.delete(made[1].id)
    with sent_statements(store) as sent:
        await astore.messages.delete(made[1].id)
    assert len(work(sent)) == (1 if store.url.startswith("postgresql") else 3), work(sent)
    with pytest.raises(NotFound):
        await astore.messages.delete(made[1].id)
    assert [m.seq for m in await astore.messages.recent(s.id, 10)] == [1, 3, 4]
    assert (await astore.sessions.get(s.id)).message_count == 3
    kept = store.snapshots.messages(snapshot.id)
    assert [(m.id, m.text) for m in kept] == [(m.id, m.text) for m in made]
