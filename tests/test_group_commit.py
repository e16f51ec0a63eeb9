"""Group commit of streamed responses' events: one transaction per round, each writer its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from agentkeep import NotFound, Store
from agentkeep.runner.group_commit import GroupCommit, one_transaction
from agentkeep.runner.responses import EventBatch, store_response_events


def _events(start: int, n: int) -> list[dict[str, Any]]:
    return [{"type": "response.output_text.delta", "sequence_number": start + i} for i in range(n)]


async def _db(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_batches_queued_together_are_one_round_and_stored(store: Store) -> None:
    rounds: list[int] = []

    def write_all(batches: Sequence[EventBatch]) -> None:
        rounds.append(len(batches))
        store_response_events(batches)

    group: GroupCommit[EventBatch, None] = GroupCommit(_db, write_all)
    other = store.tenant("other")
    responses = [store.responses.create(model="m", input_items=[]) for _ in range(3)]
    theirs = other.responses.create(model="m", input_items=[])
    writes = [group.write((store, r.id, _events(0, 2))) for r in responses]
    await asyncio.gather(*writes, group.write((other, theirs.id, _events(0, 1))))
    assert rounds == [4]  # one transaction for all four responses, of two tenants
    for r in responses:
        assert [e.sequence_number for e in store.responses.events(r.id)] == [0, 1]
    assert len(other.responses.events(theirs.id)) == 1
    # The next batches of the same responses come after, in order.
    await asyncio.gather(*(group.write((store, r.id, _events(2, 1))) for r in responses))
    assert rounds == [4, 3]
    assert [e.sequence_number for e in store.responses.events(responses[0].id)] == [0, 1, 2]


async def test_a_deleted_response_fails_alone(store: Store) -> None:
    group: GroupCommit[EventBatch, None] = GroupCommit(_db, store_response_events)
    kept = store.responses.create(model="m", input_items=[])
    gone = store.responses.create(model="m", input_items=[])
    store.responses.delete(gone.id)
    results = await asyncio.gather(
        group.write((store, kept.id, _events(0, 2))),
        group.write((store, gone.id, _events(0, 2))),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], NotFound)
    assert len(store.responses.events(kept.id)) == 2


async def test_batches_queued_while_a_round_commits_wait_for_the_next(store: Store) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    rounds: list[list[str]] = []

    def write_all(batches: Sequence[EventBatch]) -> None:
        rounds.append([rid for _, rid, _ in batches])
        if len(rounds) == 1:  # hold the first round until the others are queued
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)
        store_response_events(batches)

    group: GroupCommit[EventBatch, None] = GroupCommit(_db, write_all)
    a, b, c = (store.responses.create(model="m", input_items=[]) for _ in range(3))
    first = asyncio.ensure_future(group.write((store, a.id, _events(0, 1))))
    await started.wait()
    later = [asyncio.ensure_future(group.write((store, r.id, _events(0, 1)))) for r in (b, c)]
    await asyncio.sleep(0)
    assert not any(f.done() for f in later)
    release.set()
    await asyncio.gather(first, *later)
    assert rounds == [[a.id], [b.id, c.id]]


async def test_each_writer_gets_its_own_result_or_error() -> None:
    """A round's results go to their writers; a round that fails is written item by item."""
    rounds: list[list[int]] = []

    def write_all(items: Sequence[int]) -> list[str]:
        rounds.append(list(items))
        if 13 in items:
            raise ValueError(f"{13} is not written")
        return [f"stored {i}" for i in items]

    group: GroupCommit[int, str] = GroupCommit(_db, write_all)
    assert await asyncio.gather(*(group.write(i) for i in (1, 2, 3))) == [
        "stored 1",
        "stored 2",
        "stored 3",
    ]
    results = await asyncio.gather(*(group.write(i) for i in (4, 13, 5)), return_exceptions=True)
    assert results[0] == "stored 4" and results[2] == "stored 5"
    assert isinstance(results[1], ValueError)
    assert rounds == [[1, 2, 3], [4, 13, 5], [4], [13], [5]]
    rounds.clear()
    with pytest.raises(ValueError, match="13 is not written"):
        await group.write(13)
    assert rounds == [[13]]  # a round of one was its own write already: not made twice


def test_an_ordered_round_writes_in_the_keys_order_and_answers_in_the_items(store: Store) -> None:
    """``one_transaction(write, order=...)``: the writes of a round are made in the key's
    order (rounds that lock threads in one order cannot deadlock one another), in one
    transaction, and each item still gets its own result."""
    made: list[str] = []

    def write(s: Store, name: str) -> str:
        made.append(name)
        s.sessions.create(title=name)
        return f"result of {name}"

    write_all = one_transaction(write, order=lambda item: item[1])
    names = ["c", "a", "d", "b"]
    assert write_all([(store, n) for n in names]) == [f"result of {n}" for n in names]
    assert made == ["a", "b", "c", "d"]
    assert sorted(s.title for s in store.sessions.list(limit=10).items) == ["a", "b", "c", "d"]
    with pytest.raises(NotFound):  # all or nothing: a failing write rolls the round back
        one_transaction(
            lambda s, name: s.sessions.get(name) if name == "z" else write(s, name),
            order=lambda item: item[1],
        )([(store, "z"), (store, "m")])
    assert made[-1] == "m"  # written first, then rolled back with the round
    assert len(store.sessions.list(limit=10).items) == 4
