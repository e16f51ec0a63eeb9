"""A run's stream: its stored events as server-sent events, from a bookmark, live.

Streams send the persisted events of the run (``store.events``) from a
bookmark, so what a stream shows is exactly what was committed, and each
event carries its bookmark as the SSE ``id``. A stream subscribes to its run's
in-process wake-ups (:mod:`agentkeep.runner.notify`, sent once the run
engine's transaction commits), which hand it the committed events when they
provably follow the last one it sent; otherwise (a write of another process
in between, or a wake-up without events) it reads them from the database.
Writes of other processes wake it too where the database notifies them
(:mod:`agentkeep.server.remote_events`); where it does not, the stream looks
for them every ``poll_s`` seconds (``AGENTKEEP_STREAM_POLL_SECONDS``). It ends
after the run stops (``done``) with every event that led there.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from agentkeep._aio_util import arun_op
from agentkeep.models import TERMINAL_RUN_STATUSES, Event
from agentkeep.runner import notify, ops
from agentkeep.server.deps import service_state
from agentkeep.server.errors import error_body, translate_error
from agentkeep.server.remote_events import LISTENING_POLL_S
from agentkeep.store import Store
from agentkeep.wire import sse as frames
from agentkeep.wire.sse import KEEPALIVE

__all__ = ["POLL_S", "Follow", "Start", "following", "sse", "stream_run"]

POLL_S = 0.25
"""How often a stream looks for other processes' writes it is not told of (the default)."""
READ_BATCH = 500
STATUS_CHECK_S = 1.0
"""How often a stream with nothing new reads its run's status (a fallback: see ``_follow``)."""
FINAL_EVENTS = ops.STOP_EVENTS - {"thread.run.requires_action"}
"""Events of a status a run never leaves (``requires_action`` is left when outputs come)."""


@dataclass(frozen=True)
class Start:
    """What the route that queued a run hands its stream: the run's events it just
    committed (every event of the run so far, all after the stream's bookmark) and the
    worker's wake-up. The stream subscribes to the run, sends these and only then wakes
    the worker, so it reads nothing from the database before the worker's first events.
    (A stream that never starts leaves the run to the worker's next look at the queue.)
    """

    events: list[Event]
    wake: Callable[[], None]


@dataclass(frozen=True)
class Follow:
    """How a stream learns of writes of other processes.

    ``poll_s``: how often it looks for them when it is not told of them.
    ``listening``: since when (``time.monotonic()``) every write of another process to
    the run's tenant wakes it (``RemoteEvents.since``), or None while none does.
    """

    keepalive_s: float
    poll_s: float = POLL_S
    listening: Callable[[], float | None] | None = None

    def quiet_wait(self, read_at: float) -> float:
        """How long to wait for a wake-up, the last read of the database begun at ``read_at``:
        long once that read followed the start of the notices (nothing before them can be
        missed), at most the keep-alive interval."""
        since = self.listening() if self.listening is not None else None
        poll = self.poll_s
        if since is not None and since <= read_at:
            poll = max(poll, LISTENING_POLL_S)
        return min(poll, self.keepalive_s)


def following(request: Request, store: Store) -> Follow:
    """How a stream of ``store``'s tenant (a run's or a response's) learns of other
    processes' writes: the service's settings, and its listener where it has one."""
    state = service_state(request)
    listening = None
    if state.remote_events is not None:  # told of them (PostgreSQL)
        listening = functools.partial(state.remote_events.since, store.tenant_id)
    settings = state.settings
    return Follow(settings.sse_keepalive_seconds, settings.stream_poll_seconds, listening)


def sse(kind: str, data: Any, ident: int | None = None) -> bytes:
    """One server-sent event: ``event``, ``data`` (JSON unless a string) and ``id``.

    Object keys are sorted: an event handed over live and the same event read
    back (PostgreSQL's jsonb keeps keys in an order of its own) are the same bytes.
    """
    return frames.event(kind, data, ident, sort_keys=True)


def _chunk(events: list[Event]) -> bytes:
    """The events of one read as one chunk: one write to the client, not one per event."""
    return b"".join(sse(e.type, e.data, e.bookmark) for e in events)


async def _read(store: Store, run_id: str, after: int) -> list[Event]:
    # On the store's async path (one read, no worker thread), as the routes'.
    events: list[Event] = await arun_op(
        store.events.list, run_id=run_id, after_bookmark=after, limit=READ_BATCH
    )
    return events


async def _stopped(store: Store, run_id: str) -> bool:
    run = await arun_op(store.runs.get, run_id)
    return run.status in TERMINAL_RUN_STATUSES or run.status == "requires_action"


async def _follow(
    store: Store, run_id: str, after: int, follow: Follow, start: Start | None = None
) -> AsyncIterator[bytes]:
    """The run's events after ``after``, live, until the run stops; then ``done``."""
    bookmark = after
    keepalive_s = follow.keepalive_s
    last_sent = read_at = time.monotonic()
    next_look = 0.0  # when a quiet read next looks at the run's status
    with notify.subscribe(run_id) as woken:
        read = True  # the first look is a read: what was committed before the subscription
        if start is not None and start.events:
            # Subscribed before the run's worker is woken: every event of the run after
            # these is handed over (or wakes this reader), so nothing needs reading first.
            start.wake()
            # The run was queued just now, so it did not stop before this stream began: a
            # quiet read looks at its status only after STATUS_CHECK_S, not at once.
            next_look = time.monotonic() + STATUS_CHECK_S
            bookmark = start.events[-1].bookmark
            yield _chunk(start.events)
            read = not await woken.wait(follow.poll_s)
        while True:
            events = None if read else woken.take(bookmark)
            if events is None:
                woken.clear()
                read_at = time.monotonic()
                events = await _read(store, run_id, bookmark)
            if events:
                bookmark = events[-1].bookmark
                yield _chunk(events)
            read = len(events) == READ_BATCH
            if read:
                continue
            if events and events[-1].type in FINAL_EVENTS:
                # A final status commits with its event, last of the run's: nothing follows.
                return
            stop_seen = bool(events) and events[-1].type in ops.STOP_EVENTS
            # Every status change commits with an event, so a quiet read looks at the
            # status only now and then (a run that stopped before this stream began).
            look = stop_seen or (not events and time.monotonic() >= next_look)
            if look:
                next_look = time.monotonic() + STATUS_CHECK_S
            if look and await _stopped(store, run_id):
                # The status commits with its event: what led here is all stored. Drain it.
                while rest := await _read(store, run_id, bookmark):
                    bookmark = rest[-1].bookmark
                    yield _chunk(rest)
                return
            if events:
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > keepalive_s:
                last_sent = time.monotonic()
                yield KEEPALIVE
            # Not woken: look for other processes' writes.
            read = not await woken.wait(follow.quiet_wait(read_at))


async def _events(
    store: Store, run_id: str, after: int, follow: Follow, start: Start | None
) -> AsyncIterator[bytes]:
    try:
        async for chunk in _follow(store, run_id, after, follow, start):
            yield chunk
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = translate_error(exc)
        body = error_body(error.message, type=error.type, param=error.param, code=error.code)
        yield sse("error", body)
        return
    yield sse("done", "[DONE]")


def stream_run(
    store: Store, run_id: str, after: int, follow: Follow, start: Start | None = None
) -> StreamingResponse:
    """The run's events after bookmark ``after`` as ``text/event-stream``.

    A keep-alive comment goes out when nothing was sent for ``follow.keepalive_s``
    seconds (``AGENTKEEP_SSE_KEEPALIVE_SECONDS``). ``start``: see :class:`Start`.
    """
    return StreamingResponse(
        _events(store, run_id, after, follow, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
