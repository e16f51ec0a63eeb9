"""``/v1/responses``: create (plain, streamed, background), retrieve (and resume), delete, cancel, input items."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from agentkeep._aio_util import arun_op
from agentkeep.models.responses import TERMINAL_RESPONSE_STATUSES
from agentkeep.runner import notify
from agentkeep.runner.response_run import ResponseRun, ResponseWrites
from agentkeep.runner.responses import (
    PreviousResponseNotFound,
    aprepare,
    create_row,
)
from agentkeep.runner.upstream import ChatClient, UpstreamError
from agentkeep.server.deps import TenantStore, service_state
from agentkeep.server.errors import ApiError, translate_error
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.pagination import Pagination
from agentkeep.server.streaming import Follow, following
from agentkeep.store import Store
from agentkeep.wire import sse as frames
from agentkeep.wire.objects import list_object
from agentkeep.wire.responses import (
    END_EVENT_TYPES,
    CreateResponse,
    EventNumbers,
    Include,
    end_events,
    response_object,
)
from agentkeep.wire.sse import KEEPALIVE

__all__ = ["router"]

router = APIRouter(prefix="/v1/responses", tags=["Responses"])

R = TypeVar("R")
IncludeQuery = Annotated[
    list[Include] | None,
    Query(description="Extra output to include (OpenAI's IncludeEnum; validated, none added)."),
]
NO_UPSTREAM = "no upstream LLM is configured: set AGENTKEEP_LLM_BASE_URL"


async def _db(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _writes(request: Request) -> ResponseWrites:
    """The process's group commits of the responses it runs."""
    state = service_state(request)
    if state.response_writes is None:
        state.response_writes = ResponseWrites.through(_db)
    writes: ResponseWrites = state.response_writes
    return writes


def _sse(data: dict[str, Any]) -> bytes:
    """A Responses API stream event, named by its ``type``."""
    return frames.event(data["type"], data)


def _error_event(exc: Exception, number: int) -> bytes:
    """OpenAI's ``error`` stream event for ``exc``, numbered ``number`` (after the last sent)."""
    error = translate_error(exc)
    return _sse(EventNumbers(number).error(error.code, error.message))


def _streaming(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _client(request: Request) -> ChatClient:
    worker = service_state(request).worker
    client = getattr(worker, "client", None)
    if not isinstance(client, ChatClient):
        raise ApiError(503, NO_UPSTREAM, type="server_error", code="no_upstream")
    return client


# The upstream refused the request itself (a model it does not serve, a context too long, a
# parameter it does not take): the client's to change, so a 400 it will not retry. Its
# own failures, and keys or quotas of the service's, stay 5xx / 429.
_REFUSED = frozenset({400, 404, 413, 422})


def _upstream_failure(error: UpstreamError) -> ApiError:
    if error.code == "rate_limit_exceeded":
        return ApiError(429, error.message, type="server_error", code=error.code)
    if error.status in _REFUSED:
        code = error.code if error.code != "server_error" else "upstream_refused"
        return ApiError(400, error.message, code=code)
    return ApiError(502, error.message, type="server_error", code=error.code)


async def _streamable(store: Store, response_id: str) -> None:
    """A 400 for a response that has no stream to resume: neither streamed nor background."""
    stored = await arun_op(store.responses.get, response_id)
    if stored.background:
        return
    first = await arun_op(store.responses.events, response_id, limit=1)
    if first:
        return
    raise ApiError(
        400,
        f"Response '{response_id}' was not created with stream=true or background=true, "
        "so it has no events to stream; retrieve it without stream=true.",
        param="stream",
    )


async def _missing_end(
    store: Store, response_id: str, after: int, last: str | None
) -> dict[str, Any] | None:
    """The last event of an ended response whose stream has none, numbered ``after + 1``.

    ``after`` is the last stored event's number, ``last`` its type if this
    follower read it. A run that stopped on its way (its service stopping, its
    reader gone, no upstream, an internal error) ends the response without
    one: the follower ends with the stored response in the event its status
    has (as a cancel stores it). ``None`` when the stream has its end.
    """
    if last is None and after >= 0:  # resumed at the end: what was the event there?
        there = await arun_op(store.responses.events, response_id, after=after - 1, limit=1)
        if not there or there[0].sequence_number != after:
            return None  # resumed past every stored event: nothing to end
        last = there[0].type
    if last in END_EVENT_TYPES:
        return None
    ended, output = await arun_op(store.responses.retrieve, response_id)
    return end_events(ended, output, after + 1)[0]


async def _follow(
    store: Store, response_id: str, after: int, follow: Follow
) -> AsyncIterator[bytes]:
    """The stored events after ``after``, live, until the response has ended."""
    keepalive_s = follow.keepalive_s
    last_sent = time.monotonic()
    last: str | None = None  # the type of the last event sent
    try:
        while True:
            since = notify.generation()
            read_at = time.monotonic()
            events = await arun_op(store.responses.events, response_id, after=after)
            for event in events:
                after, last = event.sequence_number, event.type
                yield _sse(event.data)
            if events:
                last_sent = time.monotonic()
                continue
            status = (await arun_op(store.responses.get, response_id)).status
            if status in TERMINAL_RESPONSE_STATUSES:
                # The end commits with its last events: reading on drains them.
                while drained := await arun_op(store.responses.events, response_id, after=after):
                    for event in drained:
                        after, last = event.sequence_number, event.type
                        yield _sse(event.data)
                end = await _missing_end(store, response_id, after, last)
                if end is not None:
                    yield _sse(end)
                return
            if time.monotonic() - last_sent > keepalive_s:
                last_sent = time.monotonic()
                yield KEEPALIVE
            await notify.wait(follow.quiet_wait(read_at), since)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        yield _error_event(exc, after + 1)


async def _live(run: ResponseRun, keepalive_s: float) -> AsyncIterator[bytes]:
    """The response's events as it runs, and a keep-alive while the upstream is quiet.

    The events that come together (a response's first events, a text's end)
    go out in one write. A failure once the stream has begun (the response
    deleted meanwhile, the database gone) ends it with OpenAI's ``error``
    event, numbered after the last event sent, rather than a cut connection.
    """
    batches = run.batches()
    step: asyncio.Future[list[dict[str, Any]]] | None = None
    sent = run.announced - 1  # the sequence number of the last event sent
    try:
        while True:
            step = asyncio.ensure_future(anext(batches))
            while not (await asyncio.wait({step}, timeout=keepalive_s))[0]:
                yield KEEPALIVE
            try:
                batch = step.result()
            except StopAsyncIteration:
                return
            except Exception as exc:
                yield _error_event(exc, sent + 1)
                return
            sent = batch[-1]["sequence_number"]
            yield b"".join(_sse(event) for event in batch)
    finally:  # the client went away (or the end): the run sees it as it did before
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(BaseException):
                await step
        await batches.aclose()


@router.post("", summary="Create a model response", response_model=None)
async def create_response(body: CreateResponse, request: Request, store: TenantStore) -> Response:
    settings = service_state(request).settings
    client = _client(request)
    try:
        ttl = settings.responses_ttl_seconds
        prepared = await aprepare(store, body, ttl_seconds=ttl)  # its reads on the event loop
    except PreviousResponseNotFound as exc:
        message = str(exc).split(": ", 1)[-1]
        raise ApiError(
            400, message, param="previous_response_id", code="previous_response_not_found"
        ) from exc
    if body.background:
        numbers = EventNumbers()
        wire = response_object(prepared.response, [])
        events = [
            numbers.state("response.created", wire),
            numbers.state("response.queued", wire),
        ]
        await _db(create_row, store, prepared, events)
        service_state(request).worker.wake()
        if body.stream:
            return _streaming(_follow(store, prepared.response.id, -1, following(request, store)))
        return JSONResponse(wire)
    stream = bool(body.stream)
    if stream:  # stored as it runs: if this process dies first, the sweep ends it
        worker = service_state(request).worker.id
        prepared.response = prepared.response.model_copy(update={"worker_id": worker})
    writes = _writes(request)
    run = ResponseRun(store, client, prepared, _db, persist=stream, live=stream, writes=writes)
    if body.stream:
        return _streaming(_live(run, settings.sse_keepalive_seconds))
    async for _event in run.events():
        pass
    if run.error is not None:
        raise _upstream_failure(run.error)
    assert run.response is not None
    return JSONResponse(run.response)  # JSON already: no walk through jsonable_encoder


@router.get("/{response_id}", summary="Retrieve a model response", response_model=None)
async def retrieve_response(
    response_id: str,
    store: TenantStore,
    request: Request,
    stream: bool = False,
    starting_after: Annotated[
        int | None, Query(description="Resume the stream after this sequence_number.")
    ] = None,
    include: IncludeQuery = None,
) -> Response:
    if stream:
        await _streamable(store, response_id)  # 404 / 400 before the stream starts
        after = -1 if starting_after is None else starting_after
        return _streaming(_follow(store, response_id, after, following(request, store)))
    # What a background response's client polls: one read on the store's async path.
    return JSONResponse(response_object(*await arun_op(store.responses.retrieve, response_id)))


@router.delete("/{response_id}", summary="Delete a model response", response_model=None)
async def delete_response(response_id: str, store: TenantStore) -> JSONResponse:
    await arun_op(store.responses.delete, response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


@router.post("/{response_id}/cancel", summary="Cancel a background response", response_model=None)
async def cancel_response(response_id: str, store: TenantStore) -> JSONResponse:
    # On the store's async path: whether it runs in the background is set when it is
    # created, so it is read before the write (which answers 404 if it is gone since).
    current = await arun_op(store.responses.get, response_id)
    if not current.background:
        raise ApiError(400, "Cannot cancel a synchronous response.", param="response_id")
    # Its stream's last event, with the status: a follower sees it end.
    await arun_op(store.responses.set_status, response_id, "cancelled", events=end_events)
    notify.notify()
    return JSONResponse(response_object(*await arun_op(store.responses.retrieve, response_id)))


@router.get("/{response_id}/input_items", summary="List input items", response_model=None)
async def list_input_items(
    response_id: str, store: TenantStore, params: Pagination, include: IncludeQuery = None
) -> JSONResponse:
    page = await arun_op(
        store.responses.list_items,
        response_id,
        kind="input",
        limit=params.limit,
        order=params.order,
        after=params.after,
        before=params.before,
    )
    return JSONResponse(list_object(page, lambda item: item))
