"""The curio agent SDK's persistence models: runs, run events and LLM usage.

Plain dataclasses with JSON-string fields, as the SDK has them; the
persistence classes translate them to and from agentkeep's runs, events and
usage records.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["AgentLLMUsage", "AgentRun", "AgentRunEvent", "AgentRunStatus", "EventType"]


class AgentRunStatus(StrEnum):
    """Status of an agent run (``TIMEOUT`` comes from later SDK versions)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class EventType(StrEnum):
    """Types of events logged during an agent run."""

    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_ERROR = "run_error"
    ITERATION_STARTED = "iteration_started"
    ITERATION_COMPLETED = "iteration_completed"
    PLANNING_STARTED = "planning_started"
    PLANNING_COMPLETED = "planning_completed"
    ACTION_EXECUTION_STARTED = "action_execution_started"
    ACTION_EXECUTION_COMPLETED = "action_execution_completed"
    CRITIQUE_STARTED = "critique_started"
    CRITIQUE_COMPLETED = "critique_completed"
    CRITIQUE_RESULT = "critique_result"
    SYNTHESIS_STARTED = "synthesis_started"
    SYNTHESIS_COMPLETED = "synthesis_completed"
    SYNTHESIS_RESULT = "synthesis_result"
    OBJECT_STORED = "object_stored"
    OBJECT_NOT_FOUND = "object_not_found"
    TOOL_REGISTERED = "tool_registered"
    SUBAGENT_RUN_STARTED = "subagent_run_started"
    SUBAGENT_RUN_COMPLETED = "subagent_run_completed"
    CUSTOM = "custom"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _json_object(raw: str | None, *, fallback_raw: bool) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"raw": raw} if fallback_raw else {}
    if isinstance(parsed, dict):
        return parsed
    return {"raw": raw} if fallback_raw else {}


@dataclass
class AgentRun:
    """One agent run: objective, status, iterations, output and JSON-string extras."""

    agent_id: str
    run_id: str
    agent_name: str = ""
    objective: str = ""
    additional_context: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    total_iterations: int = 0
    final_synthesis_output: str | None = None
    execution_history: str | None = None
    status: str = AgentRunStatus.PENDING.value
    error_message: str | None = None
    metadata: str | None = None
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Fields of curio-agent-sdk 0.6 (``final_output`` is its name for the output).
    total_llm_calls: int = 0
    total_tool_calls: int = 0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    final_output: str | None = None

    def __post_init__(self) -> None:
        # One output under both names: the seed's and the SDK 0.6's.
        if self.final_output is None:
            self.final_output = self.final_synthesis_output
        elif self.final_synthesis_output is None:
            self.final_synthesis_output = self.final_output

    def output(self) -> str | None:
        """The run's final output, under whichever name it was set."""
        return self.final_output if self.final_output is not None else self.final_synthesis_output

    def to_dict(self) -> dict[str, Any]:
        """The run as a dict of JSON values (datetimes as ISO strings)."""
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "agent_name": self.agent_name,
            "objective": self.objective,
            "additional_context": self.additional_context,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "total_iterations": self.total_iterations,
            "final_synthesis_output": self.final_synthesis_output,
            "final_output": self.output(),
            "total_llm_calls": self.total_llm_calls,
            "total_tool_calls": self.total_tool_calls,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "execution_history": self.execution_history,
            "status": self.status,
            "error_message": self.error_message,
            "metadata": self.metadata,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentRun:
        """The inverse of :meth:`to_dict`."""
        return cls(
            id=data.get("id"),
            agent_id=data["agent_id"],
            run_id=data["run_id"],
            agent_name=data.get("agent_name", ""),
            objective=data.get("objective", ""),
            additional_context=data.get("additional_context"),
            started_at=_from_iso(data.get("started_at")),
            finished_at=_from_iso(data.get("finished_at")),
            total_iterations=data.get("total_iterations", 0),
            final_synthesis_output=data.get("final_synthesis_output"),
            final_output=data.get("final_output"),
            total_llm_calls=data.get("total_llm_calls", 0),
            total_tool_calls=data.get("total_tool_calls", 0),
            total_input_tokens=data.get("total_input_tokens", 0),
            total_output_tokens=data.get("total_output_tokens", 0),
            execution_history=data.get("execution_history"),
            status=data.get("status", AgentRunStatus.PENDING.value),
            error_message=data.get("error_message"),
            metadata=data.get("metadata"),
            created_at=_from_iso(data.get("created_at")),
            updated_at=_from_iso(data.get("updated_at")),
        )


@dataclass
class AgentRunEvent:
    """One event of a run; ``data`` is a JSON string."""

    agent_id: str
    run_id: str
    agent_name: str = ""
    timestamp: datetime | None = None
    event_type: str = ""
    data: str | None = None
    id: int | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as a dict of JSON values (datetimes as ISO strings)."""
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "agent_name": self.agent_name,
            "timestamp": _iso(self.timestamp),
            "event_type": self.event_type,
            "data": self.data,
            "created_at": _iso(self.created_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentRunEvent:
        """The inverse of :meth:`to_dict`."""
        return cls(
            id=data.get("id"),
            agent_id=data["agent_id"],
            run_id=data["run_id"],
            agent_name=data.get("agent_name", ""),
            timestamp=_from_iso(data.get("timestamp")),
            event_type=data.get("event_type", ""),
            data=data.get("data"),
            created_at=_from_iso(data.get("created_at")),
        )

    def get_data_dict(self) -> dict[str, Any]:
        """``data`` parsed; ``{"raw": data}`` when it is not a JSON object."""
        return _json_object(self.data, fallback_raw=True)


@dataclass
class AgentLLMUsage:
    """One LLM call: prompt, response, tokens, latency, status; JSON-string params and metrics."""

    agent_id: str | None = None
    run_id: str | None = None
    provider: str = ""
    model: str = ""
    prompt: str = ""
    prompt_length: int = 0
    input_params: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_content: str | None = None
    response_length: int | None = None
    usage_metrics: str | None = None
    status: str = "success"
    error_message: str | None = None
    latency_ms: int | None = None
    id: int | None = None
    created_at: datetime | None = None
    metadata: str | None = None  # curio-agent-sdk 0.6: a JSON string
    # The cost the store holds for this call (from the caller or its price table).
    _cost_usd: float | None = field(default=None, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The usage record as a dict of JSON values (datetimes as ISO strings)."""
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "provider": self.provider,
            "model": self.model,
            "prompt": self.prompt,
            "prompt_length": self.prompt_length,
            "input_params": self.input_params,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "response_content": self.response_content,
            "response_length": self.response_length,
            "usage_metrics": self.usage_metrics,
            "status": self.status,
            "error_message": self.error_message,
            "latency_ms": self.latency_ms,
            "metadata": self.metadata,
            "created_at": _iso(self.created_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentLLMUsage:
        """The inverse of :meth:`to_dict`."""
        return cls(
            id=data.get("id"),
            agent_id=data.get("agent_id"),
            run_id=data.get("run_id"),
            provider=data.get("provider", ""),
            model=data.get("model", ""),
            prompt=data.get("prompt", ""),
            prompt_length=data.get("prompt_length", 0),
            input_params=data.get("input_params"),
            input_tokens=data.get("input_tokens"),
            output_tokens=data.get("output_tokens"),
            response_content=data.get("response_content"),
            response_length=data.get("response_length"),
            usage_metrics=data.get("usage_metrics"),
            status=data.get("status", "success"),
            error_message=data.get("error_message"),
            latency_ms=data.get("latency_ms"),
            metadata=data.get("metadata"),
            created_at=_from_iso(data.get("created_at")),
        )

    def get_total_tokens(self) -> int:
        """Input plus output tokens (unknown counts as 0)."""
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (curio-agent-sdk 0.6's name)."""
        return self.get_total_tokens()

    def get_input_params_dict(self) -> dict[str, Any]:
        """``input_params`` parsed (``{}`` when absent or not a JSON object)."""
        return _json_object(self.input_params, fallback_raw=False)

    def get_usage_metrics_dict(self) -> dict[str, Any]:
        """``usage_metrics`` parsed (``{}`` when absent or not a JSON object)."""
        return _json_object(self.usage_metrics, fallback_raw=False)

    def get_cost_usd(self) -> float | None:
        """The call's cost in USD, or None when unknown (never a made-up 0).

        The cost the store recorded (given by the caller, or from agentkeep's
        price table), else ``usage_metrics["cost_usd"]``.
        """
        if self._cost_usd is not None:
            return self._cost_usd
        return metrics_cost(self.get_usage_metrics_dict())


def metrics_cost(metrics: dict[str, Any]) -> float | None:
    """``cost_usd`` of a usage-metrics object as a float, if it is a number."""
    value = metrics.get("cost_usd")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, str)):
        try:
            cost = float(value)
        except ValueError:
            return None
        return cost if math.isfinite(cost) else None
    return None
