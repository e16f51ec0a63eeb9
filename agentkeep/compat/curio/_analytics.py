"""The extended statistics of curio-agent-sdk 0.6's ``get_agent_run_stats``.

``tool_metrics`` (per tool name, from ``tool_call`` events whose data names
``tool_name``, ``latency_ms`` and ``error``), ``latency_percentiles`` of the LLM
calls, ``token_efficiency`` (output over input tokens) and the mean tokens per
call, computed as the SDK computes them.
"""

from __future__ import annotations

import json
from typing import Any

from agentkeep.store import Store

from . import _mapping as m

__all__ = ["extended", "percentiles"]

_PAGE = 1000


def percentiles(
    values: list[float], wanted: tuple[int, ...] = (50, 75, 90, 95, 99)
) -> dict[str, float]:
    """Linear-interpolated percentiles, ``{"p50": ..., ...}`` (``{}`` without values)."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)
    out: dict[str, float] = {}
    for p in wanted:
        idx = (p / 100) * (n - 1)
        lower = int(idx)
        upper = min(lower + 1, n - 1)
        weight = idx - lower
        out[f"p{p}"] = round(ordered[lower] * (1 - weight) + ordered[upper] * weight, 2)
    return out


def _tool_metrics(store: Store, agent_id: str | None) -> dict[str, dict[str, Any]]:
    metrics: dict[str, dict[str, Any]] = {}
    after = 0
    while True:
        batch = store.events.list(
            types=m.event_type_to_store("tool_call"),
            agent_id=agent_id,
            after_bookmark=after,
            limit=_PAGE,
        )
        for stored in batch:
            event = m.event_from_store(stored)
            if event.event_type != "tool_call" or not event.data:
                continue
            try:
                data = json.loads(event.data)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            tool = metrics.setdefault(
                str(data.get("tool_name", "unknown")),
                {"call_count": 0, "total_latency_ms": 0, "error_count": 0},
            )
            tool["call_count"] += 1
            tool["total_latency_ms"] += data.get("latency_ms", 0)
            if data.get("error"):
                tool["error_count"] += 1
        if len(batch) < _PAGE:
            break
        after = batch[-1].bookmark
    for tool in metrics.values():
        calls = tool["call_count"]
        tool["avg_latency_ms"] = round(tool["total_latency_ms"] / calls, 2) if calls else 0
    return metrics


def _latencies(store: Store, agent_id: str | None) -> list[float]:
    out: list[float] = []
    after: str | None = None
    while True:
        page = store.usage.list(agent_id=agent_id, limit=_PAGE, after=after, order="asc")
        out.extend(float(r.latency_ms) for r in page.items if r.latency_ms)
        if not page.has_more or page.last_id is None:
            return out
        after = page.last_id


def extended(
    store: Store, agent_id: str | None, calls: int, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    """The SDK 0.6 keys of ``get_agent_run_stats`` beyond the seed's."""
    return {
        "tool_metrics": _tool_metrics(store, agent_id),
        "latency_percentiles": percentiles(_latencies(store, agent_id)),
        "token_efficiency": round(output_tokens / input_tokens, 4) if input_tokens > 0 else 0,
        "avg_input_tokens_per_call": round(input_tokens / calls, 2) if calls > 0 else 0,
        "avg_output_tokens_per_call": round(output_tokens / calls, 2) if calls > 0 else 0,
    }
