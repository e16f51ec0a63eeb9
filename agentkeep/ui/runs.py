"""A run's page: a Gantt-like strip of its steps, tool calls and model calls, its status
transitions, usage and errors; updated live (server-sent events) while it runs.

The live feed reads the run's persisted events, as the API's run stream does:
each new batch sends a ``change`` event and the page reloads its timeline
fragment; ``end`` follows once the run has stopped and everything is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

import agentkeep.runner.notify as notify
from agentkeep.models import RUN_TRANSITIONS, TERMINAL_RUN_STATUSES, Event, Run
from agentkeep.store import Store
from agentkeep.ui.auth import SignedIn
from agentkeep.ui.web import UiRoute, render, templates
from agentkeep.wire import sse as frames
from agentkeep.wire.sse import KEEPALIVE

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

LIMIT = 1000  # steps, events, tool calls and model calls shown for one run
POLL_S = 0.25
KEEPALIVE_S = 15.0
_DELTA = ".delta"
_SDK_RUN_EVENTS = {"run_started", "run_completed", "run_failed", "run_cancelled"}


@dataclass(frozen=True)
class Bar:
    """One row of the strip: what, when (percent of the run's span), how long, how it ended."""

    label: str
    kind: str  # run, step, tool, llm
    left: float
    width: float
    duration_ms: float | None
    open: bool
    failed: bool
    anchor: str | None = None


def _transitions(events: list[Event]) -> list[tuple[datetime, str]]:
    """(time, status) of each run status event, oldest first."""
    out = []
    for event in events:
        kind = event.type
        if kind.startswith("thread.run.") and kind.count(".") == 2:
            status = kind.rsplit(".", 1)[1]
            if status in RUN_TRANSITIONS:
                out.append((event.created_at, status))
        elif kind in _SDK_RUN_EVENTS:
            out.append((event.created_at, kind.removeprefix("run_")))
    return out


def _strip(run: Run, steps: list[Any], calls: list[Any], usage: list[Any]) -> list[Bar]:
    start = run.created_at
    now = datetime.now(UTC)
    spans: list[tuple[str, str, datetime, datetime | None, bool, str | None]] = [
        ("run", "run", run.started_at or start, run.finished_at, run.status == "failed", None)
    ]
    for step in steps:
        failed = step.status == "failed"
        spans.append(
            (f"step · {step.type}", "step", step.created_at, step.finished_at, failed, step.id)
        )
    for call in calls:
        began = call.started_at or call.created_at
        spans.append(
            (
                f"tool · {call.name}",
                "tool",
                began,
                call.finished_at,
                call.is_error,
                f"call-{call.id}",
            )
        )
    for row in usage:
        took = row.latency_ms or 0
        began = datetime.fromtimestamp(row.created_at.timestamp() - took / 1000, UTC)
        spans.append(
            (
                f"llm · {row.model}",
                "llm",
                began,
                row.created_at,
                row.status == "error",
                f"usage-{row.id}",
            )
        )
    end = max([s[3] or now for s in spans] + [run.finished_at or now])
    total = max((end - start).total_seconds(), 1e-6)
    bars = []
    for label, kind, began, finished, failed, anchor in spans:
        stop = finished or now
        left = max(0.0, (began - start).total_seconds() / total * 100)
        width = max(0.0, min(100.0 - left, (stop - began).total_seconds() / total * 100))
        took = (stop - began).total_seconds() * 1000 if finished is not None else None
        bars.append(
            Bar(
                label, kind, round(left, 3), round(width, 3), took, finished is None, failed, anchor
            )
        )
    return bars


def _context(store: Store, run_id: str) -> dict[str, Any]:
    run = store.runs.get(run_id)
    steps = store.run_steps.list(run_id, limit=LIMIT, order="asc").items
    events = store.events.list(run_id=run_id, limit=LIMIT)
    calls = store.tool_calls.list(run_id=run_id, limit=LIMIT, order="asc").items
    usage = store.usage.list(run_id=run_id, limit=LIMIT, order="asc").items
    shown = [e for e in events if not e.type.endswith(_DELTA)]
    errors: list[tuple[str, Any]] = [("run", run.last_error)] if run.last_error else []
    errors += [(f"step {s.id}", s.last_error) for s in steps if s.last_error]
    errors += [(f"model call {u.id}", u.error_message) for u in usage if u.status == "error"]
    errors += [(f"tool call {c.id}", c.output) for c in calls if c.is_error]
    return {
        "run": run,
        "live": run.status not in TERMINAL_RUN_STATUSES,
        "bars": _strip(run, steps, calls, usage),
        "transitions": _transitions(events),
        "events": shown,
        "deltas": len(events) - len(shown),
        "last_bookmark": events[-1].bookmark if events else 0,
        "calls": calls,
        "usage": usage,
        "errors": errors,
        "origin": "run",
    }


@router.get("/runs/{run_id}")
def run_page(request: Request, visitor: SignedIn, run_id: str) -> Response:
    return render(request, "run.html", **_context(visitor.store, run_id))


@router.get("/runs/{run_id}/timeline")
def run_timeline(request: Request, visitor: SignedIn, run_id: str) -> Response:
    """The page's changing part, for the live view to swap in."""
    context = _context(visitor.store, run_id)
    html = templates.get_template("_run_body.html").render(
        request=request, visitor=visitor, **context
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _events_after(store: Store, run_id: str, bookmark: int) -> list[Event]:
    return store.events.list(run_id=run_id, after_bookmark=bookmark, limit=LIMIT)


async def _changes(store: Store, run_id: str, after: int) -> AsyncIterator[bytes]:
    """``change`` for each batch of new events of the run; ``end`` once it has stopped."""
    bookmark = after
    quiet = 0.0
    while True:
        since = notify.generation()
        events = await anyio.to_thread.run_sync(_events_after, store, run_id, bookmark)
        run = await anyio.to_thread.run_sync(store.runs.get, run_id)
        if events:
            bookmark = events[-1].bookmark
            quiet = 0.0
            yield frames.event("change", {"bookmark": bookmark, "status": run.status})
            await anyio.sleep(POLL_S)  # at most a few page refreshes a second
        elif run.status in TERMINAL_RUN_STATUSES:
            # The status commits with its event: an empty read after it means all is read.
            yield frames.event("end", {"bookmark": bookmark, "status": run.status})
            return
        else:
            quiet += POLL_S
            if quiet >= KEEPALIVE_S:
                quiet = 0.0
                yield KEEPALIVE
        await notify.wait(POLL_S, since)


@router.get("/runs/{run_id}/live")
def run_live(visitor: SignedIn, run_id: str, after: int = 0) -> Response:
    """Server-sent events: ``change`` when the run's persisted events move on, then ``end``."""
    visitor.store.runs.get(run_id)  # 404 for another tenant's run, before the stream starts
    return StreamingResponse(
        _changes(visitor.store, run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
