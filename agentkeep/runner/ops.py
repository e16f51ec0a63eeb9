"""Run transitions, each persisted with its stream events in one transaction.

Every function here is synchronous (call it from a thread) and writes the new
state of the run, its steps, messages and tool calls *and* the events that
announce them in a single transaction, so an event is never visible before the
state it announces, and a state is never left without its event; the run's
readers are woken by an after-commit hook of that transaction (:func:`emit`). Event types
are the Assistants streaming event names (``thread.run.created``, ...); each
event's ``data`` is the wire object.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agentkeep.errors import Conflict, InvalidTransition
from agentkeep.ids import new_id
from agentkeep.models import TERMINAL_RUN_STATUSES, Event, Message, Run, RunStep, ToolCall
from agentkeep.runner import notify
from agentkeep.store import Store
from agentkeep.wire.objects import message_object
from agentkeep.wire.runs import message_delta, run_object, step_delta, step_object

__all__ = [
    "REQUIRED_ACTION_TTL_S",
    "STOP_EVENTS",
    "DeltaBatch",
    "Starting",
    "announce",
    "cancel_run",
    "claim_runs",
    "emit",
    "emit_runs",
    "expire_due_runs",
    "expire_if_due",
    "expire_run",
    "finish_message",
    "finish_run",
    "now_seconds",
    "record_deltas",
    "record_deltas_of_runs",
    "require_action",
    "settle_interrupted",
    "start_message",
    "submit_tool_outputs",
]

REQUIRED_ACTION_TTL_S = 600.0
"""How long a run waits in ``requires_action`` before it expires (OpenAI's 10 minutes)."""

# A stream of a run ends after one of these (then ``done``).
STOP_EVENTS = frozenset(
    (
        "thread.run.completed",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
        "thread.run.incomplete",
        "thread.run.requires_action",
    )
)


def now_seconds() -> int:
    return int(datetime.now(UTC).timestamp())


def emit(store: Store, run: Run, *events: tuple[str, dict[str, Any]]) -> list[Event]:
    """Append ``(type, data)`` events of ``run`` (in the caller's transaction, if any).

    Once the transaction commits, the run's readers in this process are handed
    the events (or woken, when it has none here).
    """
    return emit_runs(store, [(run, events)])


def emit_runs(
    store: Store, batches: Sequence[tuple[Run, Sequence[tuple[str, dict[str, Any]]]]]
) -> list[Event]:
    """:func:`emit` for several runs of ``store``'s tenant: one append, in order."""
    rows = [
        {"type": kind, "run_id": run.id, "session_id": run.session_id, "data": data}
        for run, events in batches
        for kind, data in events
    ]
    watched = {run.id for run, _ in batches if notify.watched(run.id)}
    # One write (its own transaction, or the caller's): the hook runs once it commits.
    if not watched:
        written = store.events.append_many(rows)
        store.after_commit(functools.partial(notify.notify, *{run.id for run, _ in batches}))
        return written
    linked = store.events.append_many_linked(rows, watched)
    store.after_commit(functools.partial(notify.hand_over, linked.events, linked.before))
    return linked.events


_Batch = tuple[Store, Run, Sequence[tuple[str, dict[str, Any]]]]


def announce(store: Store, run: Run, *events: tuple[str, dict[str, Any]]) -> None:
    """:func:`emit`, made at the end of the caller's transaction (at once outside one).

    Every event a transaction announces is appended in one write just before
    it commits, in the order announced: the tenant's bookmark row (which every
    event write locks until its commit) is then held for the commit only, not
    for the rest of the transaction, so concurrent runs do not queue on it.
    Announced in a savepoint that rolls back, the events go with it. The run
    engine announces its state changes this way; :func:`emit` is for the
    callers that need the events' bookmarks at once.
    """
    batch: _Batch = (store, run, events)
    store.gather_before_commit(_announce_all, batch)


def _announce_all(batches: list[_Batch]) -> None:
    tenants: dict[str, list[_Batch]] = {}
    for batch in batches:
        tenants.setdefault(batch[0].tenant_id, []).append(batch)
    for group in tenants.values():
        emit_runs(group[0][0], [(run, events) for _, run, events in group])


def run_event(run: Run) -> tuple[str, dict[str, Any]]:
    return (f"thread.run.{run.status}", run_object(run))


def _step_event(step: RunStep, what: str | None = None) -> tuple[str, dict[str, Any]]:
    return (f"thread.run.step.{what or step.status}", step_object(step))


# -- messages -----------------------------------------------------------------------------


Starting = tuple[Store, Run, Sequence[str]]
"""A run's first delta batch: the arguments of :func:`start_message`."""


def start_message(store: Store, run: Run, deltas: Sequence[str] = ()) -> tuple[RunStep, Message]:
    """A message_creation step and its (empty, in_progress) assistant message, then ``deltas``."""
    assert run.session_id is not None
    message_id = new_id("msg")
    with store.transaction(savepoints=False):
        message = store.messages.append(
            run.session_id,
            "assistant",
            [],
            run_id=run.id,
            agent_id=run.agent_id,
            extra={"status": "in_progress"},
            id=message_id,
        )
        step = store.run_steps.create(
            run.id,
            "message_creation",
            details={"type": "message_creation", "message_creation": {"message_id": message.id}},
        )
        wire = message_object(message)
        announce(  # with the other runs' of the round, in one append (worker.py: GroupCommit)
            store,
            run,
            _step_event(step, "created"),
            _step_event(step, "in_progress"),
            ("thread.message.created", wire),
            ("thread.message.in_progress", wire),
            *_delta_events(message.id, deltas),
        )
    return step, message


def _delta_events(message_id: str, texts: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """One ``thread.message.delta`` event for a batch of upstream deltas (none if all empty)."""
    text = "".join(texts)
    return [("thread.message.delta", message_delta(message_id, text))] if text else []


def record_deltas(store: Store, run: Run, message_id: str, texts: Sequence[str]) -> None:
    """The ``thread.message.delta`` event of one batch of upstream content deltas."""
    emit(store, run, *_delta_events(message_id, texts))


DeltaBatch = tuple[Store, Run, str, Sequence[str]]
"""A run's deltas to record: its tenant's store, the run, its message's id, the delta texts."""


def record_deltas_of_runs(batches: Sequence[DeltaBatch]) -> None:
    """:func:`record_deltas` for several runs (of any tenants) in one transaction."""
    tenants: dict[str, list[DeltaBatch]] = {}
    for batch in batches:
        tenants.setdefault(batch[0].tenant_id, []).append(batch)
    with batches[0][0].transaction(savepoints=False):
        for group in tenants.values():
            emit_runs(group[0][0], [(run, _delta_events(m, texts)) for _, run, m, texts in group])


def finish_message(
    store: Store,
    run: Run,
    step: RunStep,
    message: Message,
    text: str,
    *,
    status: str = "completed",
    step_status: str = "completed",
    input_tokens: int = 0,
    output_tokens: int = 0,
    last_error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> tuple[RunStep, Message]:
    """Store the message's text and close it and its step (completed, incomplete, ...)."""
    extra = {**message.extra, "status": status}
    now = now_seconds()
    if status == "completed":
        extra["completed_at"] = now
    else:
        extra["incomplete_at"] = now
        extra["incomplete_details"] = {"reason": incomplete_reason or "run_failed"}
    content = [{"type": "text", "text": text}] if text else []
    changes: dict[str, Any] = {"status": step_status}
    if last_error is not None:
        changes["last_error"] = last_error
    with store.transaction(savepoints=False):
        message = store.messages.update(message.id, content=content, extra=extra)
        step = store.run_steps.update(
            step.id, input_tokens=input_tokens, output_tokens=output_tokens, **changes
        )
        announce(
            store,
            run,
            (f"thread.message.{status}", message_object(message)),
            _step_event(step),
        )
    return step, message


# -- tool calls ---------------------------------------------------------------------------


def _wire_calls(calls: Sequence[ToolCall], *, with_output: bool) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        function: dict[str, Any] = {"name": call.name, "arguments": call.input or ""}
        if with_output:
            function["output"] = call.output
        out.append({"id": call.id, "type": "function", "function": function})
    return out


def require_action(
    store: Store,
    run: Run,
    calls: Sequence[tuple[str, str, str]],
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    ttl_seconds: float = REQUIRED_ACTION_TTL_S,
) -> Run:
    """A tool_calls step with ``calls`` (upstream id, name, arguments); the run waits for outputs.

    The run's ``expires_at`` is set ``ttl_seconds`` ahead (whole seconds, rounded
    up): past it the run is ``expired`` (:func:`expire_run`). If the run was
    asked to cancel meanwhile, it is cancelled instead.
    """
    with store.transaction(savepoints=False):
        step = store.run_steps.create(
            run.id, "tool_calls", details={"type": "tool_calls", "tool_calls": []}
        )
        records = [
            store.tool_calls.create(
                name,
                arguments,
                run_id=run.id,
                session_id=run.session_id,
                step_id=step.id,
                agent_id=run.agent_id,
                metadata={"upstream_id": upstream_id[:512]},
            )
            for upstream_id, name, arguments in calls
        ]
        wire = _wire_calls(records, with_output=True)
        created = step_object(step)
        step = store.run_steps.update(
            step.id,
            details={"type": "tool_calls", "tool_calls": wire},
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        action = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {"tool_calls": _wire_calls(records, with_output=False)},
        }
        announce(
            store,
            run,
            ("thread.run.step.created", created),
            ("thread.run.step.in_progress", created),
            ("thread.run.step.delta", step_delta(step.id, wire)),
        )
        return finish_run(
            store,
            run.id,
            "requires_action",
            required_action=action,
            expires_at=math.ceil(time.time() + ttl_seconds),
        )


def submit_tool_outputs(store: Store, run: Run, outputs: Mapping[str, str]) -> tuple[Run, int]:
    """Record the outputs, complete the tool_calls step and queue the run again.

    As on OpenAI the run goes back to ``queued``: whichever worker claims it
    next continues it (the prompt carries the tool outputs), so no process
    has to remember that it parked the run.

    The caller has checked that ``outputs`` answers exactly the required calls.
    Returns the run and the bookmark just before the events announcing this.
    """
    with store.transaction(savepoints=False):
        run = store.runs.get(run.id)
        if run.status == "requires_action" and is_past_expiry(run):
            raise InvalidTransition("run", run.id, "expired", "queued")
        if run.status != "requires_action":
            raise InvalidTransition("run", run.id, run.status, "queued")
        steps: dict[str, RunStep] = {}
        done: list[ToolCall] = []
        for call_id, output in outputs.items():
            call = store.tool_calls.complete(call_id, output)
            done.append(call)
            if call.step_id and call.step_id not in steps:
                steps[call.step_id] = store.run_steps.get(call.step_id)
        by_id = {c.id: c for c in done}
        events: list[tuple[str, dict[str, Any]]] = []
        for step in steps.values():
            calls = []
            for item in step.details.get("tool_calls", []):
                found = by_id.get(item.get("id"))
                if found is not None:
                    item = {**item, "function": {**item["function"], "output": found.output}}
                calls.append(item)
            step = store.run_steps.update(
                step.id, status="completed", details={"type": "tool_calls", "tool_calls": calls}
            )
            events.append(_step_event(step))
        extra = {k: v for k, v in run.extra.items() if k != "expires_at"}
        run = store.runs.transition(run.id, "queued", extra=extra)
        events.append(run_event(run))
        written = emit(store, run, *events)
    return run, written[0].bookmark - 1


# -- the run --------------------------------------------------------------------------------


def finish_run(
    store: Store,
    run_id: str,
    status: str,
    *,
    last_error: dict[str, Any] | None = None,
    required_action: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    expires_at: int | None = None,
) -> Run:
    """Move the run to ``status`` and announce it; a cancelling run becomes cancelled instead.

    ``expires_at`` (Unix seconds) goes into the run's ``extra`` when it enters
    ``requires_action``.
    """
    add_extra: dict[str, Any] = {}
    if status == "requires_action" and expires_at is not None:
        add_extra["expires_at"] = expires_at
    if status == "incomplete" and incomplete_details is not None:
        add_extra["incomplete_details"] = incomplete_details
    with store.transaction(savepoints=False):
        # One locked read and one update (a cancelling run becomes cancelled there).
        run, moved = store.runs.end(
            run_id,
            status,
            last_error=last_error,
            required_action=required_action,
            add_extra=add_extra,
        )
        if not moved:
            return run
        events = []
        if run.status == "cancelled":
            events = _close_open_work(store, run, "cancelled", "run_cancelled")
        announce(store, run, *events, run_event(run))
    return run


def _close_open_work(
    store: Store, run: Run, step_status: str, reason: str
) -> list[tuple[str, dict[str, Any]]]:
    """Close a stopped run's open steps, messages and pending tool calls; their events."""
    events: list[tuple[str, dict[str, Any]]] = []
    texts: dict[str, str] = {}
    bookmark = 0
    while True:  # the text that was streamed, rebuilt from the deltas
        deltas = store.events.list(
            run_id=run.id, types="thread.message.delta", after_bookmark=bookmark, limit=1000
        )
        for event in deltas:
            bookmark = event.bookmark
            key = str(event.data.get("id"))
            for part in event.data.get("delta", {}).get("content", []):
                texts[key] = texts.get(key, "") + str(part.get("text", {}).get("value", ""))
        if len(deltas) < 1000:
            break
    after: str | None = None
    while True:
        page = store.run_steps.list(run.id, limit=100, after=after, order="asc")
        for step in page.items:
            if step.status != "in_progress":
                continue
            if step.type == "message_creation":
                message_id = step.details.get("message_creation", {}).get("message_id")
                try:
                    message = store.messages.get(message_id) if message_id else None
                except Exception:  # the message was deleted with its thread
                    message = None
                if message is not None and message.extra.get("status") == "in_progress":
                    text = texts.get(message.id, "")
                    extra = {
                        **message.extra,
                        "status": "incomplete",
                        "incomplete_at": now_seconds(),
                        "incomplete_details": {"reason": reason},
                    }
                    message = store.messages.update(
                        message.id,
                        content=[{"type": "text", "text": text}] if text else [],
                        extra=extra,
                    )
                    events.append(("thread.message.incomplete", message_object(message)))
            step = store.run_steps.update(
                step.id,
                status=step_status,
                last_error=run.last_error if step_status == "failed" else None,
            )
            events.append(_step_event(step))
        if not page.has_more:
            break
        after = page.last_id
    for call in store.tool_calls.list(
        run_id=run.id, state=["pending", "approval_required", "approved", "executing"], limit=1000
    ).items:
        store.tool_calls.transition(call.id, "cancelled", note=reason)
    return events


def cancel_run(store: Store, run_id: str) -> Run:
    """Ask a run to stop: queued or waiting runs are cancelled at once, running ones marked cancelling.

    Raises ``InvalidTransition`` for a run that already stopped.
    """
    with store.transaction(savepoints=False):
        run = store.runs.get(run_id)
        if run.status in TERMINAL_RUN_STATUSES:
            raise InvalidTransition("run", run_id, run.status, "cancelling")
        if run.status == "cancelling":
            return run
        events: list[tuple[str, dict[str, Any]]] = []
        if run.status == "in_progress":
            run = store.runs.transition(run_id, "cancelling")
            events.append(run_event(run))
        else:  # queued or requires_action: nobody is working on it
            run = store.runs.transition(run_id, "cancelling")
            events.append(run_event(run))
            run = store.runs.transition(run_id, "cancelled")
            events += _close_open_work(store, run, "cancelled", "run_cancelled")
            events.append(run_event(run))
        emit(store, run, *events)
    return run


def claim_runs(root: Store, worker_id: str, limit: int) -> list[Run]:
    """Claim up to ``limit`` queued runs of any tenant and announce ``thread.run.in_progress``.

    One transaction for the claims and their events, whatever their number; none (a
    read only, no write lock) while nothing is queued.
    """
    if not root.runs.claimable(all_tenants=True):
        return []
    with root.transaction(savepoints=False):
        runs = root.runs.claim_many(worker_id, limit, all_tenants=True)
        tenants: dict[str, list[Run]] = {}
        for run in runs:
            tenants.setdefault(run.tenant_id, []).append(run)
        for tenant_id, group in tenants.items():
            emit_runs(root.tenant(tenant_id), [(run, [run_event(run)]) for run in group])
    return runs


def settle_interrupted(store: Store, run: Run) -> None:
    """After a run was failed (or cancelled) without its worker: close its work, announce it."""
    with store.transaction(savepoints=False):
        current = store.runs.get(run.id)
        step_status = "cancelled" if current.status == "cancelled" else "failed"
        reason = "run_cancelled" if current.status == "cancelled" else "run_failed"
        events = _close_open_work(store, current, step_status, reason)
        events.append(run_event(current))
        emit(store, current, *events)


def is_past_expiry(run: Run, now: float | None = None) -> bool:
    """Whether ``run`` waits in ``requires_action`` past its ``expires_at``."""
    expires_at = (run.extra or {}).get("expires_at")
    if run.status != "requires_action" or not isinstance(expires_at, (int, float)):
        return False
    return expires_at <= (time.time() if now is None else now)


def expire_run(store: Store, run_id: str) -> Run:
    """Expire the run if it still waits in ``requires_action`` past ``expires_at``.

    Its tool_calls step becomes ``expired``, its pending tool calls
    ``cancelled``, and ``thread.run.expired`` is announced, in one
    transaction. Safe to call from several processes at once: the run is
    expired once, and a run whose outputs were submitted meanwhile is left alone.
    Returns the run as it is now.
    """
    try:
        with store.transaction(savepoints=False):
            current = store.runs.get(run_id)
            if not is_past_expiry(current):
                return current
            run = store.runs.transition(run_id, "expired", expected_version=current.version)
            events = _close_open_work(store, run, "expired", "run_expired")
            events.append(run_event(run))
            emit(store, run, *events)
            return run
    except Conflict:  # another process got there first (expired it, or took the outputs)
        return store.runs.get(run_id)


def expire_if_due(store: Store, run: Run) -> Run:
    """``run``, expired first if it waits past its ``expires_at`` (the lazy check on read)."""
    return expire_run(store, run.id) if is_past_expiry(run) else run


def expire_due_runs(root: Store, limit: int = 100) -> list[Run]:
    """Expire the runs of every tenant waiting past their ``expires_at`` (the worker's sweep)."""
    expired = []
    for run in root.runs.past_expiry(all_tenants=True, limit=limit):
        done = expire_run(root.tenant(run.tenant_id), run.id)
        if done.status == "expired":
            expired.append(done)
    return expired


def fail_run(store: Store, run_id: str, code: str, message: str) -> Run:
    """Fail a run (closing its open steps and messages) and announce it."""
    with store.transaction(savepoints=False):
        current = store.runs.get(run_id)
        if current.status in TERMINAL_RUN_STATUSES:
            return current
        target = "cancelled" if current.status == "cancelling" else "failed"
        error = {"code": code, "message": message[:4000]}
        if target == "failed":
            run = store.runs.transition(run_id, target, last_error=error)
        else:
            run = store.runs.transition(run_id, target)
        events = _close_open_work(
            store,
            run,
            "cancelled" if target == "cancelled" else "failed",
            "run_cancelled" if target == "cancelled" else "run_failed",
        )
        events.append(run_event(run))
        announce(store, run, *events)
    return run
