"""A run's stream takes the events its process commits as they are handed over,
and reads the database only for what it cannot prove it has (``runner.notify``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentkeep.models import Run
from agentkeep.runner import notify, ops
from agentkeep.server import streaming
from agentkeep.store import Store


def _queued_run(store: Store) -> Run:
    thread = store.sessions.create(kind="thread")
    return store.runs.create("asst_x", session_id=thread.id, model="m")


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bookmark each database read of a stream starts after."""
    reads: list[int] = []
    read = streaming._read

    async def counting(store: Store, run_id: str, after: int) -> Any:
        reads.append(after)
        return await read(store, run_id, after)

    monkeypatch.setattr(streaming, "_read", counting)
    return reads


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.005)


def _ids_and_types(chunks: list[bytes]) -> list[tuple[int, str]]:
    out = []
    for block in b"".join(chunks).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "id" in fields:
            out.append((int(fields["id"]), fields["event"]))
    return out


async def _stream(store: Store, run: Run) -> tuple[asyncio.Task[None], list[bytes]]:
    chunks: list[bytes] = []

    async def follow() -> None:
        async for chunk in streaming._follow(store, run.id, 0, streaming.Follow(60)):
            chunks.append(chunk)

    task = asyncio.create_task(follow())
    await _until(lambda: notify.watched(run.id))
    return task, chunks


async def _sent_all(
    store: Store, run: Run, task: asyncio.Task[None], chunks: list[bytes]
) -> list[tuple[int, str]]:
    """Once the stream ends: the run's stored events, which it must have sent, in order."""
    async with asyncio.timeout(30):
        await task
    stored = [(e.bookmark, e.type) for e in store.events.list(run_id=run.id, limit=100)]
    assert _ids_and_types(chunks) == stored
    return stored


async def test_a_stream_takes_the_events_its_process_commits_without_reading_them_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_reads(monkeypatch)
    run = _queued_run(store)
    task, chunks = await _stream(store, run)
    for i in range(5):
        ops.emit(store, run, ("thread.run.step.delta", {"i": i}), ("thread.message.delta", {}))
    ops.emit(store, run, ("thread.run.completed", {"id": run.id}))
    stored = await _sent_all(store, run, task, chunks)
    assert len(stored) == 11
    assert reads == [0]  # the first look only: every later event was handed over


async def test_a_stream_reads_what_another_writer_committed_between_two_hand_overs(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_reads(monkeypatch)
    run = _queued_run(store)
    task, chunks = await _stream(store, run)
    first = ops.emit(store, run, ("thread.run.in_progress", {"id": run.id}))
    await _until(lambda: _ids_and_types(chunks) == [(first[0].bookmark, first[0].type)])
    # Another process's write: committed, never handed over nor announced here.
    other = store.events.append("thread.run.step.created", run_id=run.id, data={"by": "other"})
    after = ops.emit(store, run, ("thread.message.delta", {}))
    ops.emit(store, run, ("thread.run.completed", {"id": run.id}))
    stored = await _sent_all(store, run, task, chunks)
    assert len(stored) == 4
    assert [b for b, _ in stored[:3]] == [first[0].bookmark, other.bookmark, after[0].bookmark]
    # The hand-over after the other write follows an event this stream had not seen: it read.
    assert reads == [0, first[0].bookmark]


async def test_events_of_another_tenants_run_are_not_handed_to_this_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hand-overs go to the run's own readers; a run's events in one transaction arrive once."""
    reads = _count_reads(monkeypatch)
    run = _queued_run(store)
    other_store = store.tenant(store.tenant_id + "_other")
    other = _queued_run(other_store)
    task, chunks = await _stream(store, run)
    with store.transaction():
        ops.emit(store, run, ("thread.run.in_progress", {"id": run.id}))
        ops.emit(store, run, ("thread.message.delta", {}))
    ops.emit(other_store, other, ("thread.run.in_progress", {"id": other.id}))
    ops.emit(store, run, ("thread.run.completed", {"id": run.id}))
    stored = await _sent_all(store, run, task, chunks)
    assert [t for _, t in stored] == [
        "thread.run.in_progress",
        "thread.message.delta",
        "thread.run.completed",
    ]
    assert reads == [0]


async def test_a_reader_that_does_not_look_keeps_a_bounded_number_of_hand_overs(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound, the kept hand-overs are dropped and the reader reads instead."""
    monkeypatch.setattr(notify, "MAX_HANDED", 3)
    run = _queued_run(store)
    with notify.subscribe(run.id) as reader:
        for _ in range(3):
            ops.emit(store, run, ("thread.message.delta", {}))
        await _until(lambda: len(reader._handed) == 3)
        assert [e.type for e in reader.take(0) or []] == ["thread.message.delta"] * 3
        for _ in range(4):
            ops.emit(store, run, ("thread.message.delta", {}))
        await _until(lambda: reader._unknown)
        assert reader._handed == []
        assert reader.take(0) is None  # read instead


async def test_a_stream_started_with_its_routes_events_wakes_the_worker_once_subscribed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route that queued a run hands its stream the events it committed
    (``streaming.Start``): the stream sends them, wakes the worker only once it
    is subscribed, and reads nothing from the database."""
    reads = _count_reads(monkeypatch)
    monkeypatch.setattr(streaming, "POLL_S", 60.0)  # a missed hand-over reads, not a slow test
    run = _queued_run(store)
    written = ops.emit(
        store, run, ("thread.run.created", {"id": run.id}), ("thread.run.queued", {"id": run.id})
    )
    subscribed_at_wake: list[bool] = []
    start = streaming.Start(written, lambda: subscribed_at_wake.append(notify.watched(run.id)))
    chunks: list[bytes] = []

    async def follow() -> None:
        after = written[0].bookmark - 1
        async for chunk in streaming._follow(
            store, run.id, after, streaming.Follow(60), start=start
        ):
            chunks.append(chunk)

    task = asyncio.create_task(follow())
    await _until(lambda: bool(subscribed_at_wake))
    assert _ids_and_types(chunks) == [(e.bookmark, e.type) for e in written]
    ops.emit(store, run, ("thread.run.in_progress", {"id": run.id}))  # the worker, once woken
    ops.emit(store, run, ("thread.run.completed", {"id": run.id}))
    stored = await _sent_all(store, run, task, chunks)
    assert [t for _, t in stored] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.completed",
    ]
    assert subscribed_at_wake == [True]
    assert reads == []
