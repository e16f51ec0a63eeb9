"""The sessions list and a conversation's page (messages, tool calls, approvals, forks, state)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from agentkeep.errors import InvalidInput
from agentkeep.models import Message, ToolCall
from agentkeep.ui.auth import SignedIn, check_csrf
from agentkeep.ui.web import PAGE_SIZE, UiRoute, day_start, form_data, opt, pager, render

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

KINDS = ("session", "thread", "conversation")
_CALL_BLOCKS = ("tool_use", "function_call")
_RESULT_BLOCKS = ("tool_result", "function_call_output")
SIDE_LIMIT = 50  # forks, snapshots, runs and tool calls shown beside a conversation


@router.get("/sessions")
def sessions_page(
    request: Request,
    visitor: SignedIn,
    q: str | None = None,
    user: str | None = None,
    agent: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> Response:
    """Sessions newest first, 50 a page; reads session rows only, never messages."""
    kind = opt(kind)
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"must be one of {', '.join(KINDS)}", field="kind")
    filters: dict[str, Any] = {
        "title_contains": opt(q),
        "user_id": opt(user),
        "agent_id": opt(agent),
        "kind": kind,
        "active_after": day_start(since, "since"),
        "active_before": day_start(until, "until", end=True),
    }
    store = visitor.store
    page = store.sessions.list(
        **filters, limit=PAGE_SIZE, after=opt(after), before=opt(before), sort="created_at"
    )
    return render(
        request,
        "sessions.html",
        page=page,
        total=store.sessions.count(**filters),
        kinds=KINDS,
        agents=store.agents.list(limit=100).items,
        form={"q": q, "user": user, "agent": agent, "kind": kind, "since": since, "until": until},
        pager=pager(page, after, before),
    )


def _pair_blocks(messages: list[Message]) -> tuple[dict[str, Any], set[str]]:
    """Tool results by the id of the call they answer, and the ids of calls found."""
    results: dict[str, Any] = {}
    calls: set[str] = set()
    for message in messages:
        for block in message.content:
            kind = block.get("type")
            if kind in _CALL_BLOCKS:
                calls.add(str(block.get("id") or block.get("call_id") or ""))
            elif kind in _RESULT_BLOCKS:
                key = block.get("tool_use_id") or block.get("call_id")
                if key:
                    results[str(key)] = block
    return results, calls


@router.get("/sessions/{session_id}")
def conversation_page(
    request: Request,
    visitor: SignedIn,
    session_id: str,
    after: str | None = None,
    before: str | None = None,
) -> Response:
    """A conversation: the newest messages first (a page of 50, shown oldest to newest)."""
    store = visitor.store
    session = store.sessions.get(session_id)
    page = store.messages.list(
        session_id, limit=PAGE_SIZE, order="desc", after=opt(after), before=opt(before)
    )
    messages = list(reversed(page.items))
    results, call_ids = _pair_blocks(messages)
    calls = store.tool_calls.list(session_id=session_id, limit=SIDE_LIMIT).items
    return render(
        request,
        "conversation.html",
        session=session,
        page=page,
        messages=messages,
        results=results,
        paired={k for k in results if k in call_ids},
        calls=calls,
        calls_by_id={c.id: c for c in calls},
        waiting=store.tool_calls.list(
            session_id=session_id, state="approval_required", limit=SIDE_LIMIT
        ).items,
        runs=store.runs.list(session_id=session_id, limit=SIDE_LIMIT).items,
        forks=store.sessions.list(parent_id=session_id, limit=SIDE_LIMIT).items,
        snapshots=store.snapshots.list(session_id, limit=SIDE_LIMIT).items,
        documents=store.state.with_key(session_id, limit=SIDE_LIMIT),
        pager=pager(page, after, before),
    )


@router.post("/tool-calls/{call_id}/decide")
async def decide_call(request: Request, visitor: SignedIn, call_id: str) -> Response:
    """Approve or deny a tool call that waits for approval; back to where the form was."""
    form = await form_data(request)
    check_csrf(visitor, form)
    decision = form.get("decision", "")
    note = opt(form.get("note"))
    by = f"dashboard:{'admin' if visitor.admin else visitor.tenant}"
    call: ToolCall = await anyio.to_thread.run_sync(
        lambda: visitor.store.tool_calls.decide(call_id, decision, by=by, note=note)
    )
    back = f"/ui/sessions/{quote(call.session_id)}" if call.session_id else "/ui/sessions"
    if call.run_id and form.get("from") == "run":
        back = f"/ui/runs/{quote(call.run_id)}"
    return RedirectResponse(f"{back}#call-{call.id}", status_code=303)
