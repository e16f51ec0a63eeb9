from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from agentkeep.models.common import Model

__all__ = ["CHANNELS", "EVENT_TYPES", "Channel", "Event"]

Channel = Literal["progress", "control", "monitor"]
CHANNELS: frozenset[str] = frozenset(get_args(Channel))

# The documented vocabulary (the agent SDK's); any other well-formed name is
# stored as given too (curio's "run_error", KODE's "tool:start", the service's
# "thread.run.created").
EVENT_TYPES: frozenset[str] = frozenset(
    (
        "run_started",
        "run_completed",
        "run_failed",
        "run_cancelled",
        "iteration_started",
        "iteration_completed",
        "planning_started",
        "planning_completed",
        "action_execution_started",
        "action_execution_completed",
        "action_execution_failed",
        "critique_started",
        "critique_result",
        "synthesis_started",
        "synthesis_result",
        "subagent_run_started",
        "subagent_run_completed",
        "tool_call_started",
        "tool_call_completed",
        "tool_call_failed",
        "approval_required",
        "approval_decided",
        "llm_call_started",
        "llm_call_completed",
        "message_added",
        "state_changed",
        "error",
        "custom",
    )
)


class Event(Model):
    """An entry of the append-only timeline; ``bookmark`` is monotonic per tenant."""

    bookmark: int
    tenant_id: str
    run_id: str | None
    session_id: str | None
    agent_id: str | None
    type: str
    channel: Channel
    data: dict[str, Any]
    created_at: datetime
