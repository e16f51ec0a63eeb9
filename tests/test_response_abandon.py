"""A streamed response whose reader leaves mid-answer: what it was sent is stored, then its end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agentkeep import Store
from agentkeep.runner.response_run import ResponseRun
from agentkeep.runner.responses import prepare
from agentkeep.runner.upstream import Completion
from agentkeep.wire.responses import CreateResponse


class _Stalling:
    """An upstream that sends two deltas, then never finishes (until cancelled)."""

    provider = "scripted"

    async def complete(
        self, body: dict[str, Any], on_delta: Callable[[str], Awaitable[None]], *, stream: bool
    ) -> Completion:
        await on_delta("one")
        await on_delta(" two")
        await asyncio.Event().wait()
        raise AssertionError("not reached")


async def _db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(lambda: fn(*args, **kwargs))


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
