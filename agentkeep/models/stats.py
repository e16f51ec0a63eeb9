from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from agentkeep.models.common import Model

__all__ = [
    "ConsistencyIssue",
    "ConsistencyReport",
    "Health",
    "OperationMetrics",
    "Stats",
    "StoreMetrics",
    "ToolStats",
]


class ToolStats(Model):
    name: str
    calls: int
    errors: int
    avg_duration_ms: float | None


class Stats(Model):
    """Aggregates for one agent, or for the whole tenant (``agent_id`` None).

    ``cost_usd`` sums the priced LLM calls exactly (``0`` when there are no
    calls, ``None`` when there are calls but none is priced); ``unpriced_calls``
    counts the calls of unknown cost. ``latency_ms`` holds p50/p75/p90/p95/p99
    (linear interpolation, as ``percentile_cont``) over calls that reported a
    latency, ``None`` without any. ``avg_iterations`` is over all runs (0.0
    without runs). The per-call averages are ``None`` without calls;
    ``avg_cost_per_call_usd`` is over the priced calls.
    ``avg_messages_per_session`` is KODE's ``avgMessagesPerSession`` (0.0
    without sessions).
    """

    agent_id: str | None
    total_runs: int
    completed_runs: int
    failed_runs: int
    cancelled_runs: int
    avg_iterations: float
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None
    unpriced_calls: int
    avg_input_tokens_per_call: float | None
    avg_output_tokens_per_call: float | None
    avg_cost_per_call_usd: Decimal | None
    latency_ms: dict[str, float | None]  # p50, p75, p90, p95, p99
    tools: list[ToolStats]
    tool_calls_by_state: dict[str, int]
    total_tool_calls: int
    messages: int
    snapshots: int
    sessions: int
    avg_messages_per_session: float


class Health(Model):
    healthy: bool
    backend: str
    database: dict[str, Any]  # connected, latency_ms, revision, error?
    checked_at: datetime


class ConsistencyIssue(Model):
    kind: str
    object_id: str
    detail: str


class ConsistencyReport(Model):
    ok: bool
    issues: list[ConsistencyIssue]
    checked_at: datetime


class OperationMetrics(Model):
    """How often an operation ran in this process, how often it failed, how long it took.

    ``p50_ms`` / ``p95_ms`` are over its last 1024 runs; ``mean_ms`` and
    ``max_ms`` over all of them (``None`` before the first).
    """

    count: int
    errors: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


class StoreMetrics(Model):
    """``store.get_metrics()``: KODE's ``getMetrics`` (operations, latency, storage).

    ``operations`` has the ``read`` and ``write`` totals, ``by_operation``
    each labelled operation (``"appending a message"``, ...); both count this
    process's calls through this store (all tenants) since ``since``.
    ``storage`` is read from the database at the call: ``db_size_bytes`` (the
    whole database) and this tenant's ``agents``, ``sessions``, ``messages``,
    ``runs`` and ``tool_calls``.
    """

    operations: dict[str, OperationMetrics]
    by_operation: dict[str, OperationMetrics]
    storage: dict[str, int | None]
    backend: str
    pid: int
    since: datetime
    collected_at: datetime
