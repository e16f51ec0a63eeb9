"""A response whose reader leaves mid-answer: what it was sent is stored, then its end, and
the reason it ended (its client went away, or its service stopped)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agentkeep import Store, StoreUnavailable
from agentkeep.runner.response_background import run_background
from agentkeep.runner.response_run import ResponseRun
from agentkeep.runner.responses import Prepared, create_row, prepare
from agentkeep.runner.upstream import Completion
from agentkeep.runner.worker import STOPPED_MESSAGE
from agentkeep.wire.responses import CreateResponse, EventNumbers, response_object


class _Stalling:
    """An upstream that sends two deltas, then holds: until ``release`` is set, then ends
    the answer; never if it is never set (until cancelled)."""

    provider = "scripted"

    def __init__(self, stalled: asyncio.Event | None = None) -> None:
        self.stalled = stalled or asyncio.Event()  # set once the two deltas are sent
        self.release = asyncio.Event()

    async def complete(
        self,
        body: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        stream: bool,
        retry_errors: bool = True,
    ) -> Completion:
        await on_delta("one")
        await on_delta(" two")
        self.stalled.set()
        await self.release.wait()
        return Completion(
            text="one two",
            finish_reason="stop",
            input_tokens=3,
            output_tokens=2,
            usage_reported=True,
        )


async def _db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(lambda: fn(*args, **kwargs))


def _queued_background(store: Store) -> Prepared:
    """A background response as its create request leaves it: stored, queued, announced."""
    body = CreateResponse(model="m", input="hi", background=True)
    prepared = prepare(store, body, ttl_seconds=3600)
    numbers, wire = EventNumbers(), response_object(prepared.response, [])
    create_row(
        store, prepared, [numbers.state(t, wire) for t in ("response.created", "response.queued")]
    )
    return prepared


async def _answering_in_background(store: Store) -> tuple[Prepared, asyncio.Task[None]]:
    """A background response run by its worker's code, once the upstream is answering it
    (two deltas sent, then it stalls)."""
    prepared = _queued_background(store)
    stalled = asyncio.Event()
    queued = store.responses.get(prepared.response.id)
    work = run_background(store, _Stalling(stalled), _db, queued, stopped=STOPPED_MESSAGE)  # type: ignore[arg-type]
    task = asyncio.create_task(work)
    await asyncio.wait_for(stalled.wait(), 60)
    return prepared, task


async def test_a_reader_that_leaves_before_the_first_flush_leaves_its_deltas_and_the_end(
    store: Store,
) -> None:
    body = CreateResponse(model="m", input="hi", stream=True)
    prepared = prepare(store, body, ttl_seconds=3600)
    run = ResponseRun(store, _Stalling(), prepared, _db, persist=True)  # type: ignore[arg-type]
    events = run.events()
    seen = []
    async for event in events:
        seen.append(event)
        if event["type"] == "response.output_text.delta" and event["delta"] == " two":
            break  # the reader leaves well within the first flush interval (100 ms)
    await events.aclose()
    stored = store.responses.events(prepared.response.id)
    assert [e.data for e in stored[: len(seen)]] == seen  # all it was sent, stored
    assert [e.sequence_number for e in stored] == list(range(len(seen) + 1))
    assert stored[-1].type == "response.failed"
    assert store.responses.get(prepared.response.id).status == "failed"
    [usage] = store.usage.list(limit=10).items
    assert usage.error_message == "the client disconnected before the response finished"


async def test_a_background_response_its_service_stops_ends_with_the_stop_as_its_reason(
    store: Store,
) -> None:
    """Its worker is its only reader: no client went away, the service stopped."""
    prepared, task = await _answering_in_background(store)
    task.cancel()  # what the worker's stop does to the responses it runs
    with contextlib.suppress(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 60  # the end is written behind the cancelled task
    while store.responses.get(prepared.response.id).status != "failed":
        assert time.monotonic() < deadline, "the stopped response never ended"
        await asyncio.sleep(0.01)
    ended = store.responses.get(prepared.response.id)
    assert ended.error == {"code": "server_error", "message": STOPPED_MESSAGE}
    assert store.responses.events(prepared.response.id)[-1].type == "response.failed"
    [usage] = store.usage.list(limit=10).items
    assert usage.error_message == STOPPED_MESSAGE


class _Breaking:
    """An upstream client that sends two deltas, then fails with an error of its own."""

    provider = "scripted"

    async def complete(
        self,
        body: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        stream: bool,
        retry_errors: bool = True,
    ) -> Completion:
        await on_delta("one")
        await on_delta(" two")
        raise RuntimeError("the client broke")


async def test_a_response_that_fails_on_its_own_error_stores_that_error_not_a_disconnect(
    store: Store,
) -> None:
    body = CreateResponse(model="m", input="hi", stream=True)
    prepared = prepare(store, body, ttl_seconds=3600)
    run = ResponseRun(store, _Breaking(), prepared, _db, persist=True)  # type: ignore[arg-type]
    seen = []
    with contextlib.suppress(RuntimeError):
        async for event in run.events():
            seen.append(event)
    assert [e["delta"] for e in seen if e["type"] == "response.output_text.delta"] == [
        "one",
        " two",
    ]
    reason = "internal error: RuntimeError('the client broke')"
    ended = store.responses.get(prepared.response.id)
    assert (ended.status, ended.error) == ("failed", {"code": "server_error", "message": reason})
    stored = store.responses.events(prepared.response.id)
    assert [e.data for e in stored[: len(seen)]] == seen  # what it sent, then the end
    assert stored[-1].type == "response.failed"
    [usage] = store.usage.list(limit=10).items
    assert usage.error_message == reason


async def test_a_background_response_that_fails_on_its_own_error_stores_that_error(
    store: Store,
) -> None:
    """Its worker's stop is the reason only when the worker stopped it."""
    prepared = _queued_background(store)
    queued = store.responses.get(prepared.response.id)
    await run_background(store, _Breaking(), _db, queued, stopped=STOPPED_MESSAGE)  # type: ignore[arg-type]
    ended = store.responses.get(prepared.response.id)
    reason = "internal error: RuntimeError('the client broke')"
    assert (ended.status, ended.error) == ("failed", {"code": "server_error", "message": reason})
    assert store.responses.events(prepared.response.id)[-1].type == "response.failed"
    [usage] = store.usage.list(limit=10).items
    assert usage.error_message == reason


async def test_a_background_response_deleted_while_it_runs_leaves_its_call_recorded(
    store: Store,
) -> None:
    """Its check finds it gone: the call is dropped and recorded as deleted, not failed."""
    prepared, task = await _answering_in_background(store)
    deadline = time.monotonic() + 60
    while "response.output_text.delta" not in [
        e.type for e in store.responses.events(prepared.response.id)
    ]:
        assert time.monotonic() < deadline, "its deltas were never stored"
        await asyncio.sleep(0.01)
    store.responses.delete(prepared.response.id)
    await asyncio.wait_for(task, 60)  # its next check (within half a second) ends it
    [usage] = store.usage.list(limit=10).items
    assert usage.status == "error"
    assert usage.error_message == "the response was deleted while the upstream answered"
    assert usage.response == "one two"
    assert usage.metadata["response_id"] == prepared.response.id


async def test_a_background_response_whose_cancel_check_meets_an_outage_goes_on(
    store: Store,
) -> None:
    """The database cannot answer its cancel check once: the check is skipped, not fatal."""
    prepared = _queued_background(store)
    queued = store.responses.get(prepared.response.id)
    upstream = _Stalling()
    failed = asyncio.Event()

    async def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        # The worker's store is the response's tenant's: match the method, not the object.
        responses_get = getattr(fn, "__func__", None) is type(store.responses).get
        if responses_get and not failed.is_set():
            failed.set()
            raise StoreUnavailable("the database went away for a moment")
        return await _db(fn, *args, **kwargs)

    task = asyncio.create_task(
        run_background(store, upstream, db, queued, stopped=STOPPED_MESSAGE)  # type: ignore[arg-type]
    )
    await asyncio.wait_for(upstream.stalled.wait(), 60)
    await asyncio.wait_for(failed.wait(), 60)  # its check (every half second) met the outage
    upstream.release.set()
    await asyncio.wait_for(task, 60)
    ended = store.responses.get(prepared.response.id)
    assert (ended.status, ended.error) == ("completed", None)
    assert store.responses.events(prepared.response.id)[-1].type == "response.completed"
    [usage] = store.usage.list(limit=10).items
    assert (usage.status, usage.input_tokens, usage.output_tokens) == ("success", 3, 2)
