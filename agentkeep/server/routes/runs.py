"""Runs and run steps: ``/v1/threads/{thread_id}/runs``, ``/v1/threads/runs``, streaming.

Create (``stream: true`` answers server-sent events), list, retrieve, modify,
cancel and submit_tool_outputs; create-thread-and-run; run steps (list,
retrieve). The run itself is executed by the service's run worker
(:mod:`agentkeep.runner`).

Streams (:mod:`agentkeep.server.streaming`) read the persisted events of the
run from a bookmark, so what a stream shows is exactly what was committed;
the request bodies are in :mod:`agentkeep.server.bodies`. agentkeep extension:
``GET /v1/threads/{thread_id}/runs/{run_id}/events?after=<bookmark>`` (or
``.../stream``, the path the kumos seed names) replays a run's events after a
bookmark (or ``Last-Event-ID``) and follows them live until the run stops —
the way to reconnect to a stream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from agentkeep._aio_util import arun_op
from agentkeep.errors import InvalidTransition, NotFound
from agentkeep.models import ACTIVE_RUN_STATUSES, Agent, Event, Run
from agentkeep.runner import ops
from agentkeep.runner.group_commit import GroupCommit
from agentkeep.server.bodies import (
    CreateRun,
    CreateThread,
    CreateThreadAndRun,
    ModifyRun,
    RunOptions,
    SubmitToolOutputs,
)
from agentkeep.server.deps import TenantStore, service_state
from agentkeep.server.errors import ApiError
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.lookup import active_run_id, arequire_thread, get_thread
from agentkeep.server.pagination import Pagination
from agentkeep.server.routes.threads import new_message
from agentkeep.server.streaming import Start, following, stream_run
from agentkeep.server.versions import ExpectedVersion, set_etag
from agentkeep.store import Store
from agentkeep.store._validate import UNSET
from agentkeep.wire.objects import list_object, thread_object
from agentkeep.wire.runs import RUN_OPTIONS, run_object, step_object

__all__ = ["router"]

router = APIRouter(tags=["Assistants"])

Include = Literal["step_details.tool_calls[*].file_search.results[*].content"]
"""What ``include[]`` may name (the only value OpenAI's document allows)."""

POLL_AFTER_MS = "200"  # tells the SDK's create_and_poll how often to look


# -- helpers --------------------------------------------------------------------------------


def _get_run(store: Store, thread_id: str, run_id: str) -> Run:
    run = store.runs.in_session(run_id, thread_id, kind="thread")
    return ops.expire_if_due(store, run)  # a run waiting past its expires_at is expired


async def _aget_run(store: Store, thread_id: str, run_id: str) -> Run:
    """``_get_run`` in one read on the store's async path (a worker thread only for the
    rare run that expires on this read)."""
    run = await arun_op(store.runs.in_session, run_id, thread_id, kind="thread")
    if ops.is_past_expiry(run):
        run = await anyio.to_thread.run_sync(ops.expire_run, store, run.id)
    return run


def _poll_header(response: Response) -> None:
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS


def _wake(request: Request) -> None:
    worker = service_state(request).worker
    if worker is not None:
        worker.wake()


def _stream(
    request: Request, store: Store, run_id: str, after: int, start: Start | None = None
) -> StreamingResponse:
    return stream_run(store, run_id, after, following(request, store), start)


def _queued(
    request: Request, store: Store, body: RunOptions, run: Run, written: list[Event]
) -> Response:
    """The answer to a request that queued ``run`` (``written``: its events so far).

    Streamed, the worker is woken by the stream once it has subscribed to the run
    (see ``Start``); otherwise now.
    """
    if not body.stream:
        _wake(request)
        return JSONResponse(run_object(run))
    start = Start(written, functools.partial(_wake, request))
    return _stream(request, store, run.id, written[0].bookmark - 1, start)


def _run_fields(body: RunOptions, agent: Agent, additional: str | None) -> dict[str, Any]:
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
        "agent_version": agent.version,
    }


Queued = tuple[Run, list[Event]]
"""A run just queued, and its events so far."""


Made = tuple[Run, list[tuple[str, dict[str, Any]]]]
"""A run made in a round of ``_creates``, and the events that announce it."""

Creating = tuple[Store, str | None, Callable[[Store, dict[tuple[str, str], Agent]], Made]]
"""A request of a round of ``_creates``: its tenant's store, the existing thread it runs
on (None: a new thread), and what makes the run (given the round's agents read already)."""


def _agent(store: Store, assistant_id: str, agents: dict[tuple[str, str], Agent]) -> Agent:
    """The assistant, read once a round (the round's clients often share one)."""
    key = (store.tenant_id, assistant_id)
    agent = agents.get(key)
    if agent is None:
        agent = agents[key] = store.agents.get(assistant_id)
    return agent


def _thread_and_run(
    body: CreateThreadAndRun,
    thread_body: CreateThread,
    rows: list[dict[str, Any]],
    resources: dict[str, Any] | None,
    store: Store,
    agents: dict[tuple[str, str], Agent],
) -> Made:
    """A new thread with its messages and its queued run (in the round's transaction)."""
    agent = _agent(store, body.assistant_id, agents)
    fields = _run_fields(body, agent, None)
    thread = store.sessions.create(
        kind="thread",
        metadata=thread_body.metadata,
        extra={"tool_resources": resources} if resources else None,
    )
    if rows:
        store.messages.append_many(thread.id, rows)
    run, events = _new_run(store, thread.id, agent, fields)
    return run, [("thread.created", thread_object(thread)), *events]


def _run_on_thread(
    thread_id: str,
    body: CreateRun,
    rows: list[dict[str, Any]],
    store: Store,
    agents: dict[tuple[str, str], Agent],
) -> Made:
    """A queued run on an existing thread, whose row the round holds: "no active run, then
    create one" is atomic across processes, and a message appended meanwhile waits and
    then sees the new run."""
    agent = _agent(store, body.assistant_id, agents)
    fields = _run_fields(body, agent, body.additional_instructions)
    active = active_run_id(store, thread_id)
    if active is not None:
        raise ApiError(400, f"Thread {thread_id} already has an active run {active}.")
    if rows:
        store.messages.append_many(thread_id, rows)
    return _new_run(store, thread_id, agent, fields)


def _new_run(store: Store, thread_id: str, agent: Agent, fields: dict[str, Any]) -> Made:
    """The queued run on the thread (in the round's transaction), with its created and
    queued events to announce."""
    run = store.runs.create(agent.id, session_id=thread_id, status="queued", **fields)
    wire = run_object(run)
    return run, [("thread.run.created", wire), ("thread.run.queued", wire)]


def _create_round(items: Sequence[Creating]) -> list[Queued]:
    """A round of ``_creates``, in one transaction: the existing threads' rows locked first,
    in one order (two processes' rounds cannot each hold a row the other waits for), then
    every run made, then each tenant's new runs' events in one write."""
    with items[0][0].transaction(savepoints=False):
        threads = {(store.tenant_id, thread): store for store, thread, _ in items if thread}
        for (_, thread_id), store in sorted(threads.items(), key=lambda kv: kv[0]):
            get_thread(store, thread_id, lock=True)
        agents: dict[tuple[str, str], Agent] = {}
        made = [make(store, agents) for store, _, make in items]
        of_tenant: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            of_tenant.setdefault(item[0].tenant_id, []).append(i)
        written: dict[int, list[Event]] = {}
        for indexes in of_tenant.values():
            events = ops.emit_runs(items[indexes[0]][0], [made[i] for i in indexes])
            for i in indexes:  # in order: each run's events, one run after another
                n = len(made[i][1])
                written[i], events = events[:n], events[n:]
    return [(made[i][0], written[i]) for i in range(len(items))]


def _creates(request: Request) -> GroupCommit[Creating, Queued]:
    """The process's group commit of new runs, on new threads or existing ones (made on
    first use).

    Many clients starting runs at once (``threads.create_and_run``,
    ``threads.runs.create``) are written in one transaction a round, each round
    one hop to a worker thread, instead of a transaction and a hop each that
    queue on the database's writer; the events of a round's runs are one write.
    A round that fails (an unknown assistant, a thread with an active run, a
    deadlock the database broke) is written again one by one, so each request
    gets its own answer.
    """
    state = service_state(request)
    if state.run_creates is None:
        state.run_creates = GroupCommit(anyio.to_thread.run_sync, _create_round)
    creates: GroupCommit[Creating, Queued] = state.run_creates
    return creates


# -- runs ---------------------------------------------------------------------------------------


@router.post("/v1/threads/runs", summary="Create a thread and run it", response_model=None)
async def create_thread_and_run(
    body: CreateThreadAndRun, request: Request, store: TenantStore
) -> Response:
    thread_body = body.thread or CreateThread()
    rows = [
        new_message(m, f"thread.messages[{i}].") for i, m in enumerate(thread_body.messages or [])
    ]
    resources = thread_body.tool_resources or body.tool_resources
    make = functools.partial(_thread_and_run, body, thread_body, rows, resources)
    queued = await _creates(request).write((store, None, make))
    assert queued is not None
    run, written = queued
    return _queued(request, store, body, run, written)


@router.post("/v1/threads/{thread_id}/runs", summary="Create a run", response_model=None)
async def create_run(
    thread_id: str,
    body: CreateRun,
    request: Request,
    store: TenantStore,
    include: Annotated[list[Include] | None, Query(alias="include[]")] = None,
) -> Response:
    rows = [
        new_message(m, f"additional_messages[{i}].")
        for i, m in enumerate(body.additional_messages or [])
    ]
    make = functools.partial(_run_on_thread, thread_id, body, rows)
    queued = await _creates(request).write((store, thread_id, make))
    assert queued is not None
    run, written = queued
    return _queued(request, store, body, run, written)


@router.get("/v1/threads/{thread_id}/runs", summary="List runs")
async def list_runs(thread_id: str, store: TenantStore, params: Pagination) -> dict[str, Any]:
    # Two reads on the store's async path (a worker thread only for a run that expires on
    # this read, rare).
    await arequire_thread(store, thread_id)
    page = await arun_op(
        store.runs.list,
        session_id=thread_id,
        limit=params.limit,
        order=params.order,
        after=params.after,
        before=params.before,
    )
    if any(ops.is_past_expiry(run) for run in page.items):
        page = await anyio.to_thread.run_sync(
            lambda: page.model_copy(
                update={"items": [ops.expire_if_due(store, r) for r in page.items]}
            )
        )
    return list_object(page, run_object)


@router.get("/v1/threads/{thread_id}/runs/{run_id}", summary="Retrieve a run")
async def retrieve_run(
    thread_id: str, run_id: str, store: TenantStore, response: Response
) -> dict[str, Any]:
    # What create_and_poll asks every openai-poll-after-ms.
    run = await _aget_run(store, thread_id, run_id)
    if run.status in ACTIVE_RUN_STATUSES:
        _poll_header(response)
    return run_object(run)


@router.post("/v1/threads/{thread_id}/runs/{run_id}", summary="Modify a run")
async def modify_run(
    thread_id: str,
    run_id: str,
    body: ModifyRun,
    store: TenantStore,
    response: Response,
    expected: ExpectedVersion,
) -> dict[str, Any]:
    # On the store's async path: the run's thread never changes, so it is checked by a read
    # before the update (which checks ``If-Match`` against the version it changes).
    run = await _aget_run(store, thread_id, run_id)
    given = "metadata" in body.model_fields_set
    if given or expected is not None:
        run = await arun_op(
            store.runs.update,
            run_id,
            expected_version=expected,
            metadata=(body.metadata or {}) if given else UNSET,
        )
    set_etag(response, run.version)
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
    _poll_header(response)
    return run_object(run)


@router.post(
    "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
    summary="Submit tool outputs to a run",
    response_model=None,
)
def submit_tool_outputs(
    thread_id: str, run_id: str, body: SubmitToolOutputs, request: Request, store: TenantStore
) -> Response:
    run = _get_run(store, thread_id, run_id)
    if run.status != "requires_action" or not run.required_action:
        raise ApiError(400, f"Runs in status {run.status} do not accept tool outputs.", param=None)
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
    _wake(request)
    if body.stream:
        return _stream(request, store, run.id, after)
    return JSONResponse(run_object(run))


@router.get(
    "/v1/threads/{thread_id}/runs/{run_id}/events",
    summary="Replay a run's stream events (agentkeep extension)",
    response_class=StreamingResponse,
)
@router.get(
    "/v1/threads/{thread_id}/runs/{run_id}/stream",
    summary="Resume a run's stream (agentkeep extension; the same as /events)",
    response_class=StreamingResponse,
)
async def run_events(
    thread_id: str,
    run_id: str,
    store: TenantStore,
    request: Request,
    after: Annotated[int | None, Query(ge=0, description="Bookmark to resume after.")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events of the run after ``after`` (or ``Last-Event-ID``), then live until it stops."""
    await _aget_run(store, thread_id, run_id)
    start = after
    if start is None and last_event_id:
        try:
            start = int(last_event_id)
        except ValueError:
            raise ApiError(
                400, "Last-Event-ID must be an event bookmark (an integer).", param="Last-Event-ID"
            ) from None
    return _stream(request, store, run_id, start or 0)


# -- run steps ----------------------------------------------------------------------------------


@router.get("/v1/threads/{thread_id}/runs/{run_id}/steps", summary="List run steps")
async def list_run_steps(
    thread_id: str,
    run_id: str,
    store: TenantStore,
    params: Pagination,
    include: Annotated[list[Include] | None, Query(alias="include[]")] = None,
) -> dict[str, Any]:
    await _aget_run(store, thread_id, run_id)
    page = await arun_op(
        store.run_steps.list,
        run_id,
        limit=params.limit,
        order=params.order,
        after=params.after,
        before=params.before,
    )
    return list_object(page, step_object)


@router.get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}", summary="Retrieve a run step")
async def retrieve_run_step(
    thread_id: str,
    run_id: str,
    step_id: str,
    store: TenantStore,
    include: Annotated[list[Include] | None, Query(alias="include[]")] = None,
) -> dict[str, Any]:
    await _aget_run(store, thread_id, run_id)
    try:
        step = await arun_op(store.run_steps.get, step_id)
    except NotFound:
        raise NotFound("run step", step_id) from None
    if step.run_id != run_id:
        raise NotFound("run step", step_id)
    return step_object(step)
