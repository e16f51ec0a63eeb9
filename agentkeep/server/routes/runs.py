"""Runs and run steps: ``/v1/threads/{thread_id}/runs``, ``/v1/threads/runs``, streaming.

Create (``stream: true`` answers server-sent events), list, retrieve, modify,
cancel and submit_tool_outputs; create-thread-and-run; run steps (list,
retrieve). The run itself is executed by the service's run worker
(:mod:`agentkeep.runner`).

Streams read the persisted events of the run (``store.events``) from a
bookmark, so what a stream shows is exactly what was committed. Each event
carries its bookmark as the SSE ``id``. agentkeep extension:
``GET /v1/threads/{thread_id}/runs/{run_id}/events?after=<bookmark>`` replays
a run's events after a bookmark (or ``Last-Event-ID``) and follows them live
until the run stops — the way to reconnect to a stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from agentkeep.errors import InvalidTransition, NotFound
from agentkeep.models import ACTIVE_RUN_STATUSES, TERMINAL_RUN_STATUSES, Agent, Event, Run
from agentkeep.runner import notify, ops
from agentkeep.server.bodies import CreateMessage, CreateThread
from agentkeep.server.deps import TenantStore, service_state
from agentkeep.server.errors import ApiError, error_body, translate_error
from agentkeep.server.lookup import active_run_id, get_thread
from agentkeep.server.pagination import Pagination
from agentkeep.server.routes.threads import new_message
from agentkeep.store import Store
from agentkeep.wire.objects import list_object, thread_object
from agentkeep.wire.runs import RUN_OPTIONS, run_object, step_object

__all__ = ["router"]

router = APIRouter(tags=["Assistants"])

POLL_AFTER_MS = "200"  # tells the SDK's create_and_poll how often to look
KEEPALIVE_S = 15.0
POLL_S = 0.25


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _RunOptions(_Strict):
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(default=None, ge=256)
    max_completion_tokens: int | None = Field(default=None, ge=256)
    truncation_strategy: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: str | dict[str, Any] | None = None
    reasoning_effort: str | None = None


class CreateRun(_RunOptions):
    assistant_id: str = Field(min_length=1, max_length=256)
    additional_instructions: str | None = None
    additional_messages: list[CreateMessage] | None = None


class CreateThreadAndRun(_RunOptions):
    assistant_id: str = Field(min_length=1, max_length=256)
    thread: CreateThread | None = None
    tool_resources: dict[str, Any] | None = None


class ModifyRun(_Strict):
    metadata: dict[str, str] | None = None


class ToolOutput(_Strict):
    tool_call_id: str = Field(min_length=1)
    output: str


class SubmitToolOutputs(_Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


# -- helpers --------------------------------------------------------------------------------


def _get_run(store: Store, thread_id: str, run_id: str) -> Run:
    get_thread(store, thread_id)
    run = store.runs.get(run_id)
    if run.session_id != thread_id:
        raise NotFound("run", run_id)
    return run


def _poll_header(response: Response) -> None:
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS


def _wake(request: Request) -> None:
    worker = service_state(request).worker
    if worker is not None:
        worker.wake()


def _run_fields(body: _RunOptions, agent: Agent, additional: str | None) -> dict[str, Any]:
    instructions = body.instructions if body.instructions is not None else agent.instructions
    if additional:
        instructions = f"{instructions}\n\n{additional}" if instructions else additional
    extra: dict[str, Any] = {}
    for key in RUN_OPTIONS:
        value = getattr(body, key, None)
        if value is None and key in ("temperature", "top_p", "response_format", "reasoning_effort"):
            value = agent.extra.get(key)
        if value is not None:
            extra[key] = value
    return {
        "instructions": instructions or "",
        "model": body.model or agent.model,
        "tools": body.tools if body.tools is not None else list(agent.tools),
        "metadata": body.metadata,
        "extra": extra,
    }


def _queue(store: Store, thread_id: str, agent: Agent, fields: dict[str, Any]) -> tuple[Run, int]:
    """Create the queued run with its created/queued events (in the caller's transaction)."""
    run = store.runs.create(agent.id, session_id=thread_id, status="queued", **fields)
    wire = run_object(run)
    written = ops.emit(store, run, ("thread.run.created", wire), ("thread.run.queued", wire))
    return run, written[0].bookmark - 1


def _sse(kind: str, data: Any, ident: int | None = None) -> bytes:
    head = f"event: {kind}\n"
    body = f"data: {data if isinstance(data, str) else json.dumps(data)}\n"
    tail = f"id: {ident}\n" if ident is not None else ""
    return (head + body + tail + "\n").encode()


async def _follow(store: Store, run_id: str, after: int) -> AsyncIterator[bytes]:
    """The run's events after ``after``, live, until the run stops; then ``done``."""
    bookmark = after
    stop_seen = False
    last_sent = time.monotonic()
    try:
        while True:
            since = notify.generation()
            events: list[Event] = await asyncio.to_thread(
                store.events.list, run_id=run_id, after_bookmark=bookmark, limit=500
            )
            for event in events:
                bookmark = event.bookmark
                stop_seen = event.type in ops.STOP_EVENTS
                yield _sse(event.type, event.data, event.bookmark)
            if events:
                last_sent = time.monotonic()
                if len(events) == 500:
                    continue
            if stop_seen or not events:
                run = await asyncio.to_thread(store.runs.get, run_id)
                if run.status in TERMINAL_RUN_STATUSES or run.status == "requires_action":
                    # The status commits with its event: what led here is all stored. Drain it.
                    while True:
                        rest: list[Event] = await asyncio.to_thread(
                            store.events.list, run_id=run_id, after_bookmark=bookmark, limit=500
                        )
                        if not rest:
                            break
                        for event in rest:
                            bookmark = event.bookmark
                            yield _sse(event.type, event.data, event.bookmark)
                    break
            if time.monotonic() - last_sent > KEEPALIVE_S:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"
            await notify.wait(POLL_S, since)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = translate_error(exc)
        yield _sse(
            "error", error_body(error.message, type=error.type, param=error.param, code=error.code)
        )
        return
    yield _sse("done", "[DONE]")


def _stream(store: Store, run_id: str, after: int) -> StreamingResponse:
    return StreamingResponse(
        _follow(store, run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- runs ---------------------------------------------------------------------------------------


@router.post("/v1/threads/runs", summary="Create a thread and run it", response_model=None)
def create_thread_and_run(
    body: CreateThreadAndRun, request: Request, store: TenantStore
) -> dict[str, Any] | StreamingResponse:
    agent = store.agents.get(body.assistant_id)
    thread_body = body.thread or CreateThread()
    rows = [
        new_message(m, f"thread.messages[{i}].") for i, m in enumerate(thread_body.messages or [])
    ]
    resources = thread_body.tool_resources or body.tool_resources
    fields = _run_fields(body, agent, None)
    with store.transaction():
        thread = store.sessions.create(
            kind="thread",
            metadata=thread_body.metadata,
            extra={"tool_resources": resources} if resources else None,
        )
        if rows:
            store.messages.append_many(thread.id, rows)
        run = store.runs.create(agent.id, session_id=thread.id, status="queued", **fields)
        wire = run_object(run)
        written = ops.emit(
            store,
            run,
            ("thread.created", thread_object(thread)),
            ("thread.run.created", wire),
            ("thread.run.queued", wire),
        )
    notify.notify()
    _wake(request)
    if body.stream:
        return _stream(store, run.id, written[0].bookmark - 1)
    return run_object(run)


@router.post("/v1/threads/{thread_id}/runs", summary="Create a run", response_model=None)
def create_run(
    thread_id: str,
    body: CreateRun,
    request: Request,
    store: TenantStore,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> dict[str, Any] | StreamingResponse:
    agent = store.agents.get(body.assistant_id)
    rows = [
        new_message(m, f"additional_messages[{i}].")
        for i, m in enumerate(body.additional_messages or [])
    ]
    fields = _run_fields(body, agent, body.additional_instructions)
    # Holding the thread's row makes "no active run, then create one" atomic across
    # processes; a message appended meanwhile waits and then sees the new run.
    with store.transaction():
        get_thread(store, thread_id, lock=True)
        active = active_run_id(store, thread_id)
        if active is not None:
            raise ApiError(400, f"Thread {thread_id} already has an active run {active}.")
        if rows:
            store.messages.append_many(thread_id, rows)
        run, after = _queue(store, thread_id, agent, fields)
    notify.notify()
    _wake(request)
    if body.stream:
        return _stream(store, run.id, after)
    return run_object(run)


@router.get("/v1/threads/{thread_id}/runs", summary="List runs")
def list_runs(thread_id: str, store: TenantStore, params: Pagination) -> dict[str, Any]:
    get_thread(store, thread_id)
    page = store.runs.list(
        session_id=thread_id,
        limit=params.limit,
        order=params.order,
        after=params.after,
        before=params.before,
    )
    return list_object(page, run_object)


@router.get("/v1/threads/{thread_id}/runs/{run_id}", summary="Retrieve a run")
def retrieve_run(
    thread_id: str, run_id: str, store: TenantStore, response: Response
) -> dict[str, Any]:
    run = _get_run(store, thread_id, run_id)
    if run.status in ACTIVE_RUN_STATUSES:
        _poll_header(response)
    return run_object(run)


@router.post("/v1/threads/{thread_id}/runs/{run_id}", summary="Modify a run")
def modify_run(thread_id: str, run_id: str, body: ModifyRun, store: TenantStore) -> dict[str, Any]:
    with store.transaction():
        run = _get_run(store, thread_id, run_id)
        if "metadata" in body.model_fields_set:
            run = store.runs.update(run_id, metadata=body.metadata or {})
    return run_object(run)


@router.post("/v1/threads/{thread_id}/runs/{run_id}/cancel", summary="Cancel a run")
def cancel_run(
    thread_id: str, run_id: str, store: TenantStore, response: Response
) -> dict[str, Any]:
    run = _get_run(store, thread_id, run_id)
    try:
        run = ops.cancel_run(store, run_id)
    except InvalidTransition as exc:
        raise ApiError(400, f"Cannot cancel run with status '{exc.current}'.", param=None) from None
    notify.notify()
    _poll_header(response)
    return run_object(run)


@router.post(
    "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
    summary="Submit tool outputs to a run",
    response_model=None,
)
def submit_tool_outputs(
    thread_id: str, run_id: str, body: SubmitToolOutputs, request: Request, store: TenantStore
) -> dict[str, Any] | StreamingResponse:
    run = _get_run(store, thread_id, run_id)
    if run.status != "requires_action" or not run.required_action:
        raise ApiError(400, f"Runs in status {run.status} do not accept tool outputs.")
    required = [
        str(call.get("id"))
        for call in run.required_action.get("submit_tool_outputs", {}).get("tool_calls", [])
    ]
    outputs: dict[str, str] = {}
    for i, item in enumerate(body.tool_outputs):
        field = f"tool_outputs[{i}].tool_call_id"
        if item.tool_call_id not in required:
            raise ApiError(400, f"No tool call found with id '{item.tool_call_id}'.", param=field)
        if item.tool_call_id in outputs:
            raise ApiError(400, f"Duplicate tool output for '{item.tool_call_id}'.", param=field)
        outputs[item.tool_call_id] = item.output
    missing = [c for c in required if c not in outputs]
    if missing:
        raise ApiError(
            400,
            f"Expected tool outputs for call_ids {required}, got {list(outputs)}.",
            param="tool_outputs",
        )
    try:
        run, after = ops.submit_tool_outputs(store, run, outputs)
    except InvalidTransition as exc:
        raise ApiError(400, f"Runs in status {exc.current} do not accept tool outputs.") from None
    notify.notify()
    _wake(request)
    if body.stream:
        return _stream(store, run.id, after)
    return run_object(run)


@router.get(
    "/v1/threads/{thread_id}/runs/{run_id}/events",
    summary="Replay a run's stream events (agentkeep extension)",
    response_class=StreamingResponse,
)
def run_events(
    thread_id: str,
    run_id: str,
    store: TenantStore,
    after: Annotated[int | None, Query(ge=0, description="Bookmark to resume after.")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events of the run after ``after`` (or ``Last-Event-ID``), then live until it stops."""
    _get_run(store, thread_id, run_id)
    start = after
    if start is None and last_event_id:
        try:
            start = int(last_event_id)
        except ValueError:
            raise ApiError(
                400, "Last-Event-ID must be an event bookmark (an integer).", param="Last-Event-ID"
            ) from None
    return _stream(store, run_id, start or 0)


# -- run steps ----------------------------------------------------------------------------------


@router.get("/v1/threads/{thread_id}/runs/{run_id}/steps", summary="List run steps")
def list_run_steps(
    thread_id: str,
    run_id: str,
    store: TenantStore,
    params: Pagination,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> dict[str, Any]:
    _get_run(store, thread_id, run_id)
    page = store.run_steps.list(
        run_id, limit=params.limit, order=params.order, after=params.after, before=params.before
    )
    return list_object(page, step_object)


@router.get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}", summary="Retrieve a run step")
def retrieve_run_step(
    thread_id: str,
    run_id: str,
    step_id: str,
    store: TenantStore,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> dict[str, Any]:
    _get_run(store, thread_id, run_id)
    try:
        step = store.run_steps.get(step_id)
    except NotFound:
        raise NotFound("run step", step_id) from None
    if step.run_id != run_id:
        raise NotFound("run step", step_id)
    return step_object(step)
