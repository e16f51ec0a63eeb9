"""Tool calls: their state machine, approval record and audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from agentkeep.models.common import Model

__all__ = [
    "TOOL_CALL_STATES",
    "TOOL_CALL_TERMINAL",
    "TOOL_CALL_TRANSITIONS",
    "Approval",
    "ToolCall",
    "ToolCallState",
]

ToolCallState = Literal[
    "pending",
    "approval_required",
    "approved",
    "denied",
    "executing",
    "completed",
    "failed",
    "cancelled",
]
TOOL_CALL_STATES: frozenset[str] = frozenset(get_args(ToolCallState))
TOOL_CALL_TERMINAL: frozenset[str] = frozenset(("denied", "completed", "failed", "cancelled"))
TOOL_CALL_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset(("approval_required", "executing", "completed", "failed", "cancelled")),
    "approval_required": frozenset(("approved", "denied", "cancelled")),
    "approved": frozenset(("executing", "completed", "failed", "cancelled")),
    "executing": frozenset(("completed", "failed", "cancelled")),
    "denied": frozenset(),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


class Approval(Model):
    """Who decided on a call that needed approval, how, and when."""

    decision: Literal["approved", "denied"]
    by: str | None = None
    note: str | None = None
    at: datetime


class ToolCall(Model):
    """A call of a tool, with its input, output, approval and audit trail.

    ``audit`` holds one entry per state change, oldest first:
    ``{"from": state | None, "to": state, "at": ISO-8601 time, "by": str | None,
    "note": str | None}`` (``from`` is None for the creation). ``duration_ms``
    is the time from the start of execution (or, for a call that never
    entered ``executing``, from its approval or creation) to its end; None
    for calls that were denied or cancelled before they ran.
    """

    id: str
    tenant_id: str
    run_id: str | None
    session_id: str | None
    step_id: str | None
    agent_id: str | None
    name: str
    input: Any
    output: Any
    state: ToolCallState
    is_error: bool
    approval: Approval | None
    audit: list[dict[str, Any]]
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
