"""How curio's runs, events and usage records map onto agentkeep's.

Everything agentkeep has no column for is kept under the reserved key
``_curio``: in a run's ``extra``, in an event's ``data`` and in a usage
record's ``input_params``, so that every field reads back as it was written.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from agentkeep.errors import InvalidInput
from agentkeep.models import Event, LLMUsage, Run
from agentkeep.models.events import EVENT_TYPES
from agentkeep.models.runs import RUN_TRANSITIONS

from .models import AgentLLMUsage, AgentRun, AgentRunEvent

__all__ = [
    "CURIO",
    "event_from_store",
    "event_payload",
    "event_type_from_store",
    "event_type_to_store",
    "is_placeholder",
    "join_json",
    "run_extra",
    "run_from_store",
    "split_json",
    "status_from_store",
    "status_path",
    "status_to_store",
    "usage_from_store",
    "usage_record_args",
]

CURIO = "_curio"

STATUS_TO_STORE: dict[str, str] = {
    "pending": "queued",
    "running": "in_progress",
    "completed": "completed",
    "error": "failed",
    "cancelled": "cancelled",
    "timeout": "expired",
}
STATUS_FROM_STORE: dict[str, str] = {
    "queued": "pending",
    "in_progress": "running",
    "requires_action": "running",
    "cancelling": "running",
    "completed": "completed",
    "failed": "error",
    "incomplete": "error",
    "expired": "error",
    "cancelled": "cancelled",
}
# curio event types whose agentkeep name differs; the rest of agentkeep's
# vocabulary maps to itself and anything else is stored as "custom".
EVENT_TYPE_TO_STORE: dict[str, str] = {"run_error": "run_failed"}
EVENT_TYPE_FROM_STORE: dict[str, str] = {v: k for k, v in EVENT_TYPE_TO_STORE.items()}


def _value(value: Any) -> Any:
    """An enum member's value (the SDK's ``str, Enum`` members included), else itself."""
    return getattr(value, "value", value)


def status_to_store(status: Any) -> str:
    """The agentkeep run status for a curio status; InvalidInput for an unknown one."""
    key = _value(status)
    if key not in STATUS_TO_STORE:
        raise InvalidInput(
            f"unknown run status {key!r}; use one of {', '.join(STATUS_TO_STORE)}",
            field="status",
        )
    return STATUS_TO_STORE[key]


def status_from_store(status: str, original: Any = None) -> str:
    """The curio status for an agentkeep status; the original one if it still applies."""
    if isinstance(original, str) and STATUS_TO_STORE.get(original) == status:
        return original
    return STATUS_FROM_STORE.get(status, status)


def status_path(current: str, target: str) -> list[str]:
    """The transitions that take a run from ``current`` to ``target`` (empty if there).

    Direct when the state machine allows it, else through ``in_progress``
    (a curio run may jump from pending to completed). Raises nothing: a
    path the machine forbids is returned as is, for the store to refuse.
    """
    if current == target:
        return []
    if target in RUN_TRANSITIONS.get(current, frozenset()):
        return [target]
    if (
        "in_progress" in RUN_TRANSITIONS.get(current, frozenset())
        and target in RUN_TRANSITIONS["in_progress"]
    ):
        return ["in_progress", target]
    return [target]


def event_type_to_store(event_type: Any) -> str:
    key = _value(event_type)
    if key in EVENT_TYPE_TO_STORE:
        return EVENT_TYPE_TO_STORE[key]
    return key if key in EVENT_TYPES else "custom"


def event_type_from_store(store_type: str) -> str:
    return EVENT_TYPE_FROM_STORE.get(store_type, store_type)


def split_json(raw: str | None) -> tuple[dict[str, Any], bool]:
    """A JSON-string field as (object to store, whether to keep the string itself too).

    A non-empty JSON object becomes the stored object; the string is kept
    as well when re-encoding the object would not give it back exactly
    (other spacing, non-finite numbers) or when it is not a JSON object.
    """
    if raw is None:
        return {}, False
    try:
        parsed = json.loads(raw)
        if not isinstance(parsed, dict) or not parsed or CURIO in parsed:
            return {}, True
        encoded = json.dumps(parsed, allow_nan=False)
    except (ValueError, RecursionError):
        return {}, True
    if "\\u0000" in encoded:  # NUL in a JSON value: PostgreSQL's JSONB refuses it
        return {}, True
    return parsed, encoded != raw


def join_json(obj: dict[str, Any], meta: dict[str, Any], key: str) -> str | None:
    """The JSON string of a field written by :func:`split_json`."""
    if key in meta:
        kept = meta[key]
        return kept if isinstance(kept, str) or kept is None else json.dumps(kept)
    return json.dumps(obj) if obj else None


def _meta(container: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the object without ``_curio``, the ``_curio`` part)."""
    obj = dict(container) if isinstance(container, dict) else {}
    meta = obj.pop(CURIO, None)
    return obj, meta if isinstance(meta, dict) else {}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


# ---- runs ----


def run_extra(run: AgentRun, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's ``extra``: whatever others keep there, plus the curio fields."""
    extra = dict(existing or {})
    extra[CURIO] = {
        "agent_name": run.agent_name,
        "additional_context": run.additional_context,
        "execution_history": run.execution_history,
        "metadata": run.metadata,
        "status": _value(run.status),
        "error_message": run.error_message,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "totals": [
            run.total_llm_calls,
            run.total_tool_calls,
            run.total_input_tokens,
            run.total_output_tokens,
        ],
    }
    return extra


def is_placeholder(run: Run) -> bool:
    _, meta = _meta(run.extra)
    return bool(meta.get("placeholder"))


def run_from_store(run: Run) -> AgentRun:
    _, meta = _meta(run.extra)
    if "error_message" in meta:
        error_message = meta["error_message"]
    else:
        error_message = (run.last_error or {}).get("message")
    llm_calls, tool_calls, input_tokens, output_tokens = meta.get("totals") or (0, 0, 0, 0)
    return AgentRun(
        agent_id=run.agent_id,
        run_id=run.id,
        total_llm_calls=llm_calls,
        total_tool_calls=tool_calls,
        total_input_tokens=input_tokens,
        total_output_tokens=output_tokens,
        agent_name=meta.get("agent_name") or "",
        objective=run.objective or "",
        additional_context=meta.get("additional_context"),
        started_at=_dt(meta.get("started_at")) or run.started_at,
        finished_at=_dt(meta.get("finished_at")) or run.finished_at,
        total_iterations=run.iterations,
        final_synthesis_output=run.output,
        execution_history=meta.get("execution_history"),
        status=status_from_store(run.status, meta.get("status")),
        error_message=error_message,
        metadata=meta.get("metadata"),
        id=None,
        created_at=run.created_at,
        updated_at=run.updated_at,
    )


# ---- events ----


def event_payload(event: AgentRunEvent) -> dict[str, Any]:
    """The store event's ``data``: the curio data as an object, plus ``_curio``."""
    obj, keep = split_json(event.data)
    meta: dict[str, Any] = {"event_type": _value(event.event_type)}
    if event.agent_name:
        meta["agent_name"] = event.agent_name
    if event.timestamp is not None:
        meta["timestamp"] = event.timestamp.isoformat()
    if keep:
        meta["data"] = event.data
    return {**obj, CURIO: meta}


def event_from_store(event: Event) -> AgentRunEvent:
    obj, meta = _meta(event.data)
    return AgentRunEvent(
        agent_id=event.agent_id or "",
        run_id=event.run_id or "",
        agent_name=meta.get("agent_name") or "",
        timestamp=_dt(meta.get("timestamp")) or event.created_at,
        event_type=str(meta.get("event_type") or event_type_from_store(event.type)),
        data=join_json(obj, meta, "data"),
        id=event.bookmark,
        created_at=event.created_at,
    )


# ---- usage ----

UNKNOWN = "unknown"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def usage_record_args(usage: AgentLLMUsage) -> dict[str, Any]:
    """The arguments of ``store.usage.record`` for a curio usage record (but the cost)."""
    params, keep = split_json(usage.input_params)
    meta: dict[str, Any] = {}
    if keep:
        meta["input_params"] = usage.input_params
    if usage.usage_metrics is not None:
        meta["usage_metrics"] = usage.usage_metrics
    if getattr(usage, "metadata", None) is not None:
        meta["metadata"] = usage.metadata
    if not usage.provider:
        meta["provider"] = usage.provider
    if not usage.model:
        meta["model"] = usage.model
    if usage.input_tokens is None:
        meta["input_tokens"] = None
    if usage.output_tokens is None:
        meta["output_tokens"] = None
    prompt = usage.prompt
    if usage.prompt_length != (len(prompt) if prompt is not None else None):
        meta["prompt_length"] = usage.prompt_length
    response = usage.response_content
    if usage.response_length != (len(response) if response is not None else None):
        meta["response_length"] = usage.response_length
    if meta:
        params = {**params, CURIO: meta}
    args: dict[str, Any] = {
        "provider": usage.provider or UNKNOWN,
        "model": usage.model or UNKNOWN,
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
        "latency_ms": usage.latency_ms,
        "status": usage.status,
        "error_message": usage.error_message,
        "prompt": prompt,
        "response": response,
        "input_params": params,
        "agent_id": usage.agent_id or None,
        "run_id": usage.run_id or None,
    }
    return args


def usage_from_store(record: LLMUsage) -> AgentLLMUsage:
    params, meta = _meta(record.input_params)
    out = AgentLLMUsage(
        agent_id=record.agent_id,
        run_id=record.run_id,
        provider=meta.get("provider", record.provider),
        model=meta.get("model", record.model),
        prompt=record.prompt if record.prompt is not None else "",
        prompt_length=meta.get("prompt_length", record.prompt_length or 0),
        input_params=join_json(params, meta, "input_params"),
        input_tokens=meta.get("input_tokens", record.input_tokens),
        output_tokens=meta.get("output_tokens", record.output_tokens),
        response_content=record.response,
        response_length=meta.get("response_length", record.response_length),
        usage_metrics=meta.get("usage_metrics"),
        metadata=meta.get("metadata"),
        status=record.status,
        error_message=record.error_message,
        latency_ms=record.latency_ms,
        id=None,
        created_at=record.created_at,
    )
    out._cost_usd = _finite(float(record.cost_usd)) if record.cost_usd is not None else None
    return out
