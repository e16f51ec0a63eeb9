"""Runs and run steps as OpenAI's Assistants API shows them.

A run's OpenAI-only parameters (temperature, tool_choice, ...) live in
``run.extra``; the wire timestamps ``cancelled_at`` / ``failed_at`` /
``completed_at`` are the run's ``finished_at`` for the matching status.
``usage`` is null until the run stops (as OpenAI documents it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentkeep.models import Message, Run, RunStep
from agentkeep.wire.objects import message_object

__all__ = [
    "RUN_OPTIONS",
    "message_delta",
    "message_wire",
    "run_object",
    "seconds",
    "step_delta",
    "step_object",
]

# Parameters of a run kept in ``run.extra`` (with their defaults on the wire).
RUN_OPTIONS: dict[str, Any] = {
    "temperature": None,
    "top_p": None,
    "max_prompt_tokens": None,
    "max_completion_tokens": None,
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": "auto",
    "reasoning_effort": None,
}

_STOPPED = frozenset(
    ("completed", "failed", "cancelled", "expired", "incomplete", "requires_action")
)


def seconds(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def run_object(run: Run) -> dict[str, Any]:
    """The ``thread.run`` object."""
    finished = seconds(run.finished_at)
    extra = run.extra or {}
    out: dict[str, Any] = {
        "id": run.id,
        "object": "thread.run",
        "created_at": seconds(run.created_at),
        "thread_id": run.session_id,
        "assistant_id": run.agent_id,
        "status": run.status,
        "required_action": run.required_action,
        "last_error": run.last_error,
        "expires_at": extra.get("expires_at"),
        "started_at": seconds(run.started_at),
        "cancelled_at": finished if run.status == "cancelled" else None,
        "failed_at": finished if run.status == "failed" else None,
        "completed_at": finished if run.status == "completed" else None,
        "incomplete_details": extra.get("incomplete_details"),
        "model": run.model or "",
        "instructions": run.instructions or "",
        "tools": list(run.tools or []),
        "metadata": dict(run.metadata or {}),
        "usage": _usage(run.input_tokens, run.output_tokens) if run.status in _STOPPED else None,
        # agentkeep extension: the assistant's version the run was made with
        # (GET /v1/assistants/{assistant_id}?version=N shows it); null if unknown
        "assistant_version": run.agent_version,
    }
    for key, default in RUN_OPTIONS.items():
        value = extra.get(key)
        out[key] = default if value is None else value
    return out


def step_object(step: RunStep, *, assistant_id: str | None = None) -> dict[str, Any]:
    """The ``thread.run.step`` object; ``details`` is stored in wire form."""
    finished = seconds(step.finished_at)
    return {
        "id": step.id,
        "object": "thread.run.step",
        "created_at": seconds(step.created_at),
        "assistant_id": assistant_id or step.agent_id or "",
        "thread_id": step.session_id or "",
        "run_id": step.run_id,
        "type": step.type,
        "status": step.status,
        "step_details": step.details,
        "last_error": step.last_error,
        "expired_at": finished if step.status == "expired" else None,
        "cancelled_at": finished if step.status == "cancelled" else None,
        "failed_at": finished if step.status == "failed" else None,
        "completed_at": finished if step.status == "completed" else None,
        "metadata": dict(step.metadata or {}),
        "usage": None
        if step.status == "in_progress"
        else _usage(step.input_tokens, step.output_tokens),
    }


def step_delta(step_id: str, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``thread.run.step.delta`` carrying whole tool calls (with their ``index``)."""
    return {
        "id": step_id,
        "object": "thread.run.step.delta",
        "delta": {
            "step_details": {
                "type": "tool_calls",
                "tool_calls": [{"index": i, **call} for i, call in enumerate(tool_calls)],
            }
        },
    }


def message_delta(message_id: str, text: str, index: int = 0) -> dict[str, Any]:
    """A ``thread.message.delta`` adding ``text`` to content block ``index``."""
    return {
        "id": message_id,
        "object": "thread.message.delta",
        "delta": {
            "content": [
                {"index": index, "type": "text", "text": {"value": text, "annotations": []}}
            ]
        },
    }


def message_wire(message: Message) -> dict[str, Any]:
    """The ``thread.message`` object, with the run's status kept in ``extra["status"]``."""
    out = message_object(message)
    extra = message.extra or {}
    status = extra.get("status")
    if status:
        out["status"] = status
        out["completed_at"] = extra.get("completed_at")
        out["incomplete_at"] = extra.get("incomplete_at")
        out["incomplete_details"] = extra.get("incomplete_details")
    return out
