"""One response executed against the upstream, as a stream of ``response.*`` events.

:class:`ResponseRun` calls the upstream once and yields the events in
OpenAI's order: ``response.created`` and ``response.in_progress`` (unless a
background response already announced itself), on the first text delta
``response.output_item.added`` and ``response.content_part.added``, one
``response.output_text.delta`` per upstream delta, then
``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``; for each function call
``response.output_item.added``, ``response.function_call_arguments.delta``
and ``.done``, ``response.output_item.done``; last ``response.completed``
(``incomplete`` when the upstream stopped for length, ``failed`` on an
upstream error). With ``persist`` the response and its first events are
stored first (while the upstream call already runs); text deltas go to the
client at once and to the store behind it, in order, in batches (at most
one write per response every 100 ms; the writes of all the responses in
flight that share ``writes`` are made together); all of them are stored before the
transaction that ends the response stores the last events with the final
status, so a reader that resumes from any ``sequence_number`` gets every
later event, and one that sees the response ended has all of them. Without
``persist`` (a plain request) the response is written once, when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentkeep import metrics
from agentkeep.errors import NotFound, StoreUnavailable
from agentkeep.models.responses import StoredResponse
from agentkeep.runner import notify, stopping
from agentkeep.runner.group_commit import GroupCommit, one_transaction
from agentkeep.runner.responses import (
    Creating,
    EventBatch,
    Outcome,
    Prepared,
    Settling,
    create_row,
    settle,
    store_response_events,
    usage_row,
)
from agentkeep.runner.upstream import ChatClient, Completion, UpstreamError
from agentkeep.runner.wakeup import Wakeup
from agentkeep.store import Store
from agentkeep.wire.responses import (
    EventNumbers,
    end_events,
    function_call_item,
    message_item,
    response_object,
    usage_object,
)

__all__ = ["ResponseRun", "ResponseWrites"]

log = logging.getLogger("agentkeep.runner")

Db = Callable[..., Awaitable[Any]]
CANCEL_CHECK_S = 0.5
FLUSH_INTERVAL_S = 0.1  # a response's deltas are stored at most this often
DISCONNECTED = "the client disconnected before the response finished"
# A foreground response still answering when the service's stop cut it (its grace time over).
STOPPED = "the service stopped before the response finished"
CANCELLED = "the response was cancelled while the upstream answered"
DELETED = "the response was deleted while the upstream answered"


def internal_error(exc: BaseException) -> str:
    """The reason stored for a response that failed on an error of its own."""
    return f"internal error: {exc!r}"[:4000]


@dataclass(frozen=True)
class ResponseWrites:
    """Group commits for the responses one process runs at once (see ``group_commit``).

    Each of a response's writes (its row with its first events, its delta
    batches, its settle) joins the round of the others in flight: one
    transaction, one thread hop and, for the settles, one upsert of the day's
    usage totals for all of them.
    """

    create: GroupCommit[Creating, None]
    events: GroupCommit[EventBatch, None]
    settle: GroupCommit[Settling, StoredResponse | None]

    @classmethod
    def through(cls, db: Db) -> ResponseWrites:
        """Group commits that run their rounds with ``db`` (off the event loop)."""
        return cls(
            GroupCommit(db, one_transaction(create_row)),
            GroupCommit(db, store_response_events),
            GroupCommit(db, one_transaction(settle)),
        )


class ResponseRun:
    """Executes a prepared response; iterate :meth:`events`, then read ``response``."""

    def __init__(
        self,
        store: Store,
        client: ChatClient,
        prepared: Prepared,
        db: Db,
        *,
        persist: bool,
        live: bool = True,
        announced: int = 0,
        writes: ResponseWrites | None = None,
        abandoned: str = DISCONNECTED,
    ) -> None:
        self.store = store
        self.client = client
        self.prepared = prepared
        self.db = db
        self.persist = persist and prepared.stored
        self.live = live or self.persist  # events wanted: streamed, or stored as they come
        self.numbers = EventNumbers(announced)
        self.announced = announced  # events a background response stored when it was queued
        # Its writes join those of the other responses in flight (else rounds of its own).
        self.writes = writes if writes is not None else ResponseWrites.through(db)
        # Why it ends if its reader stops it midway: a streamed request's client went
        # away; a background response's reader is its worker, which stops with the service.
        self.abandoned = abandoned
        self.response: dict[str, Any] | None = None
        self.error: UpstreamError | None = None
        self.cancelled = False
        self._row = announced > 0
        self._message: dict[str, Any] | None = None
        self._pending: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flush_failed = False
        self._ending = asyncio.Event()
        self._started: float | None = None
        self._recorded = False  # the upstream call's usage row is written
        self._text: list[str] = []

    def _wire(self, stored: StoredResponse, output: list[dict[str, Any]]) -> dict[str, Any]:
        return response_object(stored, output)

    def _queue(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Deltas go to the client at once and to the store in batches, in order, behind it."""
        if self.persist:
            self._pending.extend(events)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())
        return events

    async def _flush(self) -> None:
        # A batch gathers for FLUSH_INTERVAL_S before it is written; once the end is
        # near, what is pending is stored with the final events, in the transaction
        # that ends the response (a short answer costs no write of its own deltas).
        while not self._ending.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ending.wait(), FLUSH_INTERVAL_S)
            if self._ending.is_set() or not self._pending:
                return
            batch = self._pending[:]
            self._pending.clear()
            try:
                # The round wakes the followers once it commits.
                await self.writes.events.write((self.store, self.prepared.response.id, batch))
            except Exception:
                # Not stored (the response was deleted meanwhile, or the database failed):
                # the batch goes back in front of what came since, for the next write, which
                # is the end's at the latest. That write reports what is wrong; the call
                # goes on to its end, and its usage is recorded with the tokens it cost.
                self._pending[:0] = batch
                log.log(
                    logging.DEBUG if self._flush_failed else logging.WARNING,
                    "the deltas of %s are not stored yet; they go with its next write",
                    self.prepared.response.id,
                    exc_info=True,
                )
                self._flush_failed = True  # warned once a response: an outage is not a flood
                return

    async def _emit(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.persist and events:
            if not self._row:
                await self.writes.create.write((self.store, self.prepared, events))
                self._row = True
            else:
                await self.db(self.store.responses.append_events, self.prepared.response.id, events)
            notify.notify()
        return events

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        """The events, each yielded after it is stored (with ``persist``)."""
        async with contextlib.aclosing(self.batches()) as batches:
            async for batch in batches:
                for event in batch:
                    yield event

    async def batches(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """:meth:`events` as they come together (a stream sends each batch in one write)."""
        done = False
        reason = self.abandoned  # the reader stopped it (a cancel, or it closed the stream)
        # A stopping service waits for a request's response to end before it stops its
        # worker and closes its store: the stop may be what cuts the request, and the
        # end is written on the way out. A worker's (background) response is not cut
        # before the worker stops, which ends it and waits for it: not kept, or the
        # service would wait for it in vain for as long as the settle allows.
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.abandoned == DISCONNECTED:
            stopping.keep(ended)
        try:
            async for batch in self._call():
                if batch:
                    yield batch
            done = True
        except NotFound as exc:
            # Deleted meanwhile (its row, its events), or something it needs was
            # (say its conversation): only the first is not an error of its own.
            gone = exc.kind == "response" and exc.ident == self.prepared.response.id
            reason = DELETED if gone else internal_error(exc)
            raise
        except Exception as exc:  # it failed on its own: that is the reason stored
            reason = internal_error(exc)
            raise
        finally:
            if not done and self.response is None and self._started is not None:
                if reason == DISCONNECTED and stopping.begun():
                    reason = STOPPED  # its request was cancelled by the service's stop
                # Its own task: a reader cancelled again (as anyio's scopes do until
                # their task leaves) stops waiting for it, not the write.
                end = asyncio.ensure_future(self._abandon(reason))
                end.add_done_callback(lambda _: ended.set_result(None))
                await asyncio.shield(end)
            else:
                ended.set_result(None)

    def _start_events(self) -> list[dict[str, Any]]:
        start: list[dict[str, Any]] = []
        running = self.prepared.response.model_copy(update={"status": "in_progress"})
        if not self.announced:
            wire = self._wire(self.prepared.response, [])
            start.append(self.numbers.state("response.created", wire))
        start.append(self.numbers.state("response.in_progress", self._wire(running, [])))
        return start

    async def _abandon(self, reason: str) -> None:
        """The call stopped midway: it is recorded, a stored response failed, both with
        ``reason``."""
        try:
            if not self._recorded:
                await self._record_dropped(reason)
            if self.persist and self._row:
                # The deltas sent and not stored yet go first, then the stream's end
                # (numbered after them), with the failed status: a reader that resumes
                # sees what the client saw, and the end.
                self._ending.set()
                if self._flusher is not None:
                    with contextlib.suppress(Exception):
                        await self._flusher
                unsaved = self._pending[:]
                await self.db(
                    self.store.responses.finish,
                    self.prepared.response.id,
                    status="failed",
                    error={"code": "server_error", "message": reason},
                    events=lambda _ended: unsaved,
                    end_events=end_events,
                )
        except Exception:  # the database failed, say: the response stays as it was
            log.exception(
                "response %s: its end (%s) could not be stored", self.prepared.response.id, reason
            )

    async def _record_alone(self, row: dict[str, Any]) -> None:
        """The response could not be stored (deleted meanwhile, say): its call, paid for,
        is still a usage row, with the tokens the upstream reported."""
        self._recorded = True
        try:
            metrics.observe_usage(await self.db(self.store.usage.record, **row))
        except Exception:  # the store failed twice: the first error is the one raised
            log.warning(
                "could not record the upstream call of %s", self.prepared.response.id, exc_info=True
            )

    async def _record_dropped(self, message: str) -> None:
        """The usage row of an upstream call dropped before it answered (tokens unknown: 0)."""
        self._recorded = True
        started = self._started if self._started is not None else time.perf_counter()
        row = usage_row(
            self.prepared,
            provider=self.client.provider,
            model=None,
            tokens=(0, 0, 0, 0),
            latency_ms=int((time.perf_counter() - started) * 1000),
            error=message,
            response="".join(self._text) or None,
            upstream_id=None,
        )
        metrics.observe_usage(await self.db(self.store.usage.record, **row))

    def _deltas(self, texts: list[str]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._message is None:
            self._message = message_item("", status="in_progress")
            events += self.numbers.text_started(self._message, 0)
        item_id = self._message["id"]
        for text in texts:
            self._text.append(text)
            events.append(self.numbers.text_delta(item_id, 0, text))
        return events

    async def _call(self) -> AsyncIterator[list[dict[str, Any]]]:
        # Deltas gather in ``arrived``; the loop below sleeps on one future (no task per
        # delta) that a delta, the call's end or the cancel check's timer resolves.
        arrived: list[str] = []
        wakeup = Wakeup()

        async def on_delta(text: str) -> None:
            arrived.append(text)
            wakeup.set()

        started = self._started = time.perf_counter()
        # An error answer ends a streamed or background response as an event: sent again
        # here. A plain request's ends it with an error status, which its client retries.
        call = asyncio.create_task(
            self.client.complete(
                self.prepared.chat, on_delta, stream=self.live, retry_errors=self.live
            )
        )
        call.add_done_callback(wakeup.set)
        next_check = time.monotonic() + CANCEL_CHECK_S
        try:
            if self.live:  # stored while the upstream already works on the answer
                yield await self._emit(self._start_events())
            while True:
                if not arrived and not call.done():
                    await wakeup.wait(CANCEL_CHECK_S)
                texts = arrived[:]
                arrived.clear()
                if texts and self.live:
                    yield self._queue(self._deltas(texts))
                elif texts:
                    self._text.extend(texts)
                if call.done() and not arrived:
                    break
                if self.prepared.body.background and time.monotonic() >= next_check:
                    next_check = time.monotonic() + CANCEL_CHECK_S
                    try:
                        current = await self.db(self.store.responses.get, self.prepared.response.id)
                    except StoreUnavailable:  # an outage: looked at again at the next check
                        continue
                    if current.status != "in_progress":
                        self.cancelled = True
                        await self._record_dropped(CANCELLED)
                        return
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
        latency_ms = int((time.perf_counter() - started) * 1000)
        completion: Completion | None = None
        try:
            completion = call.result()
        except UpstreamError as exc:
            self.error = exc
        self._ending.set()
        if self._flusher is not None:
            await self._flusher  # its last write lands before the end's (the order is kept)
        yield await self._finish(completion, latency_ms)

    def _outcome(self, completion: Completion | None) -> Outcome:
        if completion is None:
            assert self.error is not None
            error = {"code": self.error.code, "message": self.error.message[:4000]}
            return Outcome("failed", [], usage_object(0, 0), error=error)
        c = completion
        usage = usage_object(c.input_tokens, c.output_tokens, c.cached_tokens, c.reasoning_tokens)
        incomplete = c.finish_reason == "length"
        output: list[dict[str, Any]] = []
        text = "".join(self._text) or (c.text if self._message is None else "")
        if text or not c.tool_calls:
            status = "incomplete" if incomplete else "completed"
            ident = self._message["id"] if self._message is not None else None
            output.append(message_item(text, status=status, id=ident))
        output += [function_call_item(t.id, t.name, t.arguments) for t in c.tool_calls]
        if incomplete:
            return Outcome(
                "incomplete", output, usage, incomplete_details={"reason": "max_output_tokens"}
            )
        return Outcome("completed", output, usage)

    def _final_events(self, outcome: Outcome, wire: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for index, item in enumerate(outcome.output):
            if item["type"] == "message":
                if self._message is None:
                    # No delta came (the client passes every text on as one): an empty
                    # message, announced here.
                    events += self.numbers.text_started(item, index)
                events += self.numbers.text_done(item, index)
            else:
                events += self.numbers.function_call(item, index)
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}
        events.append(self.numbers.state(kind.get(outcome.status, "response.failed"), wire))
        return events

    async def _finish(self, completion: Completion | None, latency_ms: int) -> list[dict[str, Any]]:
        outcome = self._outcome(completion)
        c = completion or Completion()
        response_text: str | None = "".join(self._text) or c.text or None
        if c.tool_calls:
            calls = [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in c.tool_calls]
            response_text = json.dumps({"content": response_text, "tool_calls": calls})
        outcome.usage_row = usage_row(
            self.prepared,
            provider=self.client.provider,
            model=c.model,
            tokens=(c.input_tokens, c.output_tokens, c.cached_tokens, c.reasoning_tokens),
            latency_ms=latency_ms,
            error=self.error.message if self.error is not None else None,
            response=response_text,
            upstream_id=c.response_id,
        )
        # The final response object, as it will be stored (its times are set by settle).
        if self.live:
            preview = self.prepared.response.model_copy(
                update={
                    "status": outcome.status,
                    "usage": outcome.usage,
                    "error": outcome.error,
                    "incomplete_details": outcome.incomplete_details,
                }
            )
            outcome.final_events = self._final_events(outcome, self._wire(preview, outcome.output))
            outcome.unsaved_events = self._pending[:]  # cleared once the settle stored them
        row_exists = self.persist and self._row
        # The settle records the call; if it fails, _record_alone does. If this task is
        # cancelled meanwhile (the client went away), the settle goes on and still records
        # it: the abandon must not record it again.
        self._recorded = True
        try:
            item = (self.store, self.prepared, outcome, row_exists)
            ended = await self.writes.settle.write(item)
        except Exception:
            await self._record_alone(outcome.usage_row)
            raise
        self._pending = []
        if ended is None:
            self.cancelled = True
            return []
        self.response = self._wire(ended, outcome.output)
        final = outcome.final_events
        if final:
            final[-1] = {**final[-1], "response": self.response}
        if self.persist:
            notify.notify()
        return final
