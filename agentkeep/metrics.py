"""The service's Prometheus metrics: defined once, recorded where things happen.

The HTTP middleware records requests, the run engine its upstream calls and
the tokens and cost of each recorded call, the store's connection pool its
connections in use. ``GET /metrics`` (``agentkeep.server.metrics_route``)
exposes them with the figures read from the database at scrape time (runs
by status, the age of the last backup).

Several worker processes (``agentkeep serve --workers N``) share one view:
``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the
workers start, each worker writes its values there (prometheus-client's
multiprocess mode), and a scrape answered by any worker sums them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.engine import Engine

# prometheus-client opens each worker's files in that directory as the metrics below are
# defined, at import: a directory named but not yet made failed the import (and with it
# `agentkeep serve`) with a bare FileNotFoundError.
if _multiproc := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_multiproc, exist_ok=True)

__all__ = [
    "DB_POOL_IN_USE",
    "DB_POOL_LIMIT",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_SECONDS",
    "LLM_CALLS",
    "LLM_COST_USD",
    "LLM_TOKENS",
    "UPSTREAM_ERRORS",
    "UPSTREAM_REQUESTS",
    "UPSTREAM_RETRIES",
    "UPSTREAM_SECONDS",
    "multiprocess_dir",
    "observe_usage",
    "watch_pool",
]

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

HTTP_REQUESTS = Counter(
    "agentkeep_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "agentkeep_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response (a stream: its last byte).",
    ["method", "route", "status"],
    buckets=_LATENCY,
)
UPSTREAM_REQUESTS = Counter(
    "agentkeep_upstream_requests_total",
    "Calls to the upstream LLM (chat completions), by provider and outcome (ok or error).",
    ["provider", "outcome"],
)
UPSTREAM_ERRORS = Counter(
    "agentkeep_upstream_errors_total",
    "Failed calls to the upstream LLM, by provider and error code.",
    ["provider", "code"],
)
UPSTREAM_RETRIES = Counter(
    "agentkeep_upstream_retries_total",
    "Requests to the upstream LLM sent again (not answered, or answered 408/409/429/5xx).",
    ["provider"],
)
UPSTREAM_SECONDS = Histogram(
    "agentkeep_upstream_request_duration_seconds",
    "Duration of a call to the upstream LLM, to its last streamed chunk.",
    ["provider"],
    buckets=_LATENCY,
)
LLM_CALLS = Counter(
    "agentkeep_llm_calls_total",
    "LLM calls recorded as usage rows by the service, by model and status.",
    ["model", "status"],
)
LLM_TOKENS = Counter(
    "agentkeep_llm_tokens_total",
    "Tokens of the recorded LLM calls, by model and kind (input, output, cached, reasoning).",
    ["model", "kind"],
)
LLM_COST_USD = Counter(
    "agentkeep_llm_cost_usd_total",
    "Cost in USD of the recorded LLM calls whose price is known, by model.",
    ["model"],
)
DB_POOL_IN_USE = Gauge(
    "agentkeep_db_pool_connections_in_use",
    "Database connections checked out of the service's pool (summed over worker processes).",
    multiprocess_mode="livesum",
)
DB_POOL_LIMIT = Gauge(
    "agentkeep_db_pool_connections_limit",
    "Connections the pool may open: size plus overflow (summed over worker processes).",
    multiprocess_mode="livesum",
)


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, if this process uses one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe_usage(usage: Any) -> None:
    """Count a recorded usage row (an :class:`agentkeep.models.LLMUsage`)."""
    model = str(usage.model)
    LLM_CALLS.labels(model, str(usage.status)).inc()
    for kind in ("input", "output", "cached", "reasoning"):
        tokens = int(getattr(usage, f"{kind}_tokens") or 0)
        if tokens:
            LLM_TOKENS.labels(model, kind).inc(tokens)
    if usage.cost_usd is not None:
        LLM_COST_USD.labels(model).inc(float(usage.cost_usd))


def watch_pool(engine: Engine, limit: int) -> Callable[[], None]:
    """Keep ``DB_POOL_IN_USE`` up to date with ``engine``'s pool; returns the undo."""
    DB_POOL_LIMIT.inc(limit)

    def checked_out(*_: Any) -> None:
        DB_POOL_IN_USE.inc()

    def checked_in(*_: Any) -> None:
        DB_POOL_IN_USE.dec()

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)

    def unwatch() -> None:
        event.remove(engine, "checkout", checked_out)
        event.remove(engine, "checkin", checked_in)
        DB_POOL_LIMIT.dec(limit)

    return unwatch
