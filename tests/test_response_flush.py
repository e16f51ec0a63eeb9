"""A streamed response whose batch of deltas could not be stored: the batch is kept for the
next write, the call goes on to its end, and what it cost is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from agentkeep import NotFound, Store
from agentkeep.runner.group_commit import GroupCommit, one_transaction
from agentkeep.runner.response_run import ResponseRun, ResponseWrites
from agentkeep.runner.responses import (
    EventBatch,
    create_row,
    prepare,
    settle,
    store_response_events,
)
from agentkeep.runner.upstream import Completion
from agentkeep.wire.responses import CreateResponse


class _Gated:
    """An upstream that sends one delta, waits for ``gate``, sends another, waits for
    ``end``, then ends its answer."""

    provider = "scripted"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.end = asyncio.Event()

    async def complete(
        self,
        body: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        stream: bool,
        retry_errors: bool = True,
    ) -> Completion:
        await on_delta("one")
        await self.gate.wait()
        await on_delta(" two")
        await self.end.wait()
        return Completion(
            text="one two", finish_reason="stop", input_tokens=9, output_tokens=4, model="m"
        )


async def _db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(lambda: fn(*args, **kwargs))


def _writes(before_events: Callable[[], None]) -> tuple[ResponseWrites, asyncio.Event]:
    """The real writes, with ``before_events`` run before each batch of deltas is stored;
    the event is set once a batch's write has been tried and failed."""
    failed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def events(batches: Sequence[EventBatch]) -> None:
        try:
            before_events()
            store_response_events(batches)
        except Exception:
            loop.call_soon_threadsafe(failed.set)
            raise

    return (
        ResponseWrites(
            GroupCommit(_db, one_transaction(create_row)),
            GroupCommit(_db, events),
            GroupCommit(_db, one_transaction(settle)),
        ),
        failed,
    )


async def test_a_response_deleted_before_its_deltas_are_stored_still_records_its_tokens(
    store: Store,
) -> None:
    """The failed batch does not end the call: its end finds the response gone (NotFound),
    and the usage row holds what the upstream reported, not an abandoned call's zeros."""
    prepared = prepare(store, CreateResponse(model="m", input="hi", stream=True), ttl_seconds=60)
    upstream = _Gated()
    writes, failed = _writes(lambda: None)
    run = ResponseRun(store, upstream, prepared, _db, persist=True, writes=writes)  # type: ignore[arg-type]
    seen: list[dict[str, Any]] = []
    with pytest.raises(NotFound):
        async for event in run.events():
            seen.append(event)
            if event["type"] != "response.output_text.delta":
                continue
            if event["delta"] == "one":
                store.responses.delete(prepared.response.id)
                upstream.gate.set()
            else:  # the last delta: its batch finds the response gone, then the call ends
                await asyncio.wait_for(failed.wait(), 60)
                upstream.end.set()
    assert [e["delta"] for e in seen if e["type"] == "response.output_text.delta"] == [
        "one",
        " two",
    ]
    [usage] = store.usage.list(limit=10).items
    assert (usage.status, usage.input_tokens, usage.output_tokens) == ("success", 9, 4)
    assert usage.metadata["response_id"] == prepared.response.id


async def test_a_batch_that_failed_to_store_goes_with_the_next_write_in_order(
    store: Store,
) -> None:
    """A database error on one batch loses nothing: replay gives every event, numbered
    without a gap, and the response completes."""
    prepared = prepare(store, CreateResponse(model="m", input="hi", stream=True), ttl_seconds=60)
    upstream = _Gated()
    tries: list[int] = []

    def fail_once() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("the database went away for a moment")

    writes, failed = _writes(fail_once)
    run = ResponseRun(store, upstream, prepared, _db, persist=True, writes=writes)  # type: ignore[arg-type]
    seen: list[dict[str, Any]] = []
    async for event in run.events():
        seen.append(event)
        if event["type"] != "response.output_text.delta":
            continue
        if event["delta"] == "one":
            upstream.gate.set()
        else:  # the last delta: its batch fails to store, then the call ends
            await asyncio.wait_for(failed.wait(), 60)
            upstream.end.set()
    assert seen[-1]["type"] == "response.completed"
    stored = store.responses.events(prepared.response.id)
    assert [e.sequence_number for e in stored] == list(range(len(seen)))
    assert [e.data["type"] for e in stored] == [e["type"] for e in seen]
    deltas = [e.data["delta"] for e in stored if e.type == "response.output_text.delta"]
    assert deltas == ["one", " two"]
    assert store.responses.get(prepared.response.id).status == "completed"
