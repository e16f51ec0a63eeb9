"""Runs and run steps: the run state machine and its vocabulary."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from agentkeep.models.common import Model

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "RUN_TRANSITIONS",
    "STEP_STATUSES",
    "STEP_TYPES",
    "TERMINAL_RUN_STATUSES",
    "TERMINAL_STEP_STATUSES",
    "Run",
    "RunStatus",
    "RunStep",
    "StepStatus",
    "StepType",
]

RunStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset(
    ("cancelled", "failed", "completed", "incomplete", "expired")
)
ACTIVE_RUN_STATUSES: frozenset[str] = frozenset(
    ("queued", "in_progress", "requires_action", "cancelling")
)
# Where a run may go from each status; staying in the same status is always a no-op.
RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset(("in_progress", "cancelling", "cancelled", "failed", "expired")),
    "in_progress": frozenset(
        (
            "requires_action",
            "cancelling",
            "cancelled",
            "failed",
            "completed",
            "incomplete",
            "expired",
        )
    ),
    # queued: tool outputs were submitted and any worker may pick the run up again
    "requires_action": frozenset(
        ("queued", "in_progress", "cancelling", "cancelled", "failed", "expired")
    ),
    "cancelling": frozenset(("cancelled", "failed", "completed", "incomplete", "expired")),
    "cancelled": frozenset(),
    "failed": frozenset(),
    "completed": frozenset(),
    "incomplete": frozenset(),
    "expired": frozenset(),
}

StepType = Literal["message_creation", "tool_calls"]
STEP_TYPES: frozenset[str] = frozenset(get_args(StepType))
StepStatus = Literal["in_progress", "cancelled", "failed", "completed", "expired"]
STEP_STATUSES: frozenset[str] = frozenset(get_args(StepStatus))
TERMINAL_STEP_STATUSES: frozenset[str] = STEP_STATUSES - {"in_progress"}


class Run(Model):
    """One execution of an agent, optionally on a session."""

    id: str
    tenant_id: str
    agent_id: str
    session_id: str | None
    status: RunStatus
    objective: str | None
    instructions: str | None
    model: str | None
    tools: list[dict[str, Any]]
    iterations: int
    output: str | None
    last_error: dict[str, Any] | None
    required_action: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None  # None = unknown, never 0
    metadata: dict[str, str]
    extra: dict[str, Any]
    version: int
    worker_id: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    agent_version: int | None = None
    """The agent's version when the run was made (None: no such agent, or made before 0005)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RunStep(Model):
    """A step of a run: a message it created, or the tool calls it made."""

    id: str
    tenant_id: str
    run_id: str
    session_id: str | None
    agent_id: str | None
    type: StepType
    status: StepStatus
    details: dict[str, Any]
    last_error: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
