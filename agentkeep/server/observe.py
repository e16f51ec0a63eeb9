"""Observing the service: ``GET /metrics``, the request metrics and the access log.

``ObserveMiddleware`` gives every request an id (the client's ``X-Request-ID``
when it sends a sane one, else a new one; answered in ``x-request-id``),
counts it by method, route template and status with its duration, and logs
one access record (logger ``agentkeep.access``: method, path, route, status,
duration_ms, request_id), which ``--log-format json`` writes as JSON.

``GET /metrics`` answers the Prometheus text format: the process metrics of
:mod:`agentkeep.metrics` (summed over worker processes in multiprocess mode)
and what is read from the database at the scrape (runs by status, every
tenant; the age of the newest catalogued backup). It needs an admin key
unless ``AGENTKEEP_METRICS_AUTH=none``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import get_args

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep import metrics
from agentkeep.models.runs import RunStatus
from agentkeep.server.deps import admin_state, service_state
from agentkeep.store import Store
from agentkeep.store.schema import runs as runs_table

__all__ = ["ObserveMiddleware", "router"]

access_log = logging.getLogger("agentkeep.access")
log = logging.getLogger("agentkeep.server")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_UNMATCHED = "<unmatched>"

router = APIRouter(tags=["Operations"])


class ObserveMiddleware:
    """Request ids, request metrics and the access log, around the whole app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            method = str(scope.get("method", ""))
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(method, route, str(status)).observe(elapsed)
            access_log.info(
                "%s %s %d %.1f ms",
                method,
                scope.get("path", ""),
                status,
                elapsed * 1000,
                extra={
                    "method": method,
                    "path": scope.get("path", ""),
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "request_id": request_id,
                    "client": _client(scope),
                },
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return f"req_{uuid.uuid4().hex}"


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/threads/{thread_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else _UNMATCHED


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


class DatabaseCollector(Collector):
    """What the database says at scrape time: runs by status, the newest backup's age."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "agentkeep_database_up", "1 if the database answered this scrape's queries, else 0."
        )
        try:
            counts = self._run_counts()
            newest = self.store.backups.list(limit=1)
        except Exception as exc:  # the scrape still answers; the gauge says why it is thin
            log.warning("metrics: the database did not answer: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        runs = GaugeMetricFamily(
            "agentkeep_runs", "Runs in the database by status (every tenant).", labels=["status"]
        )
        for status in sorted(set(get_args(RunStatus)) | set(counts)):
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        if newest:
            finished = newest[0].finished_at
            age = GaugeMetricFamily(
                "agentkeep_last_backup_age_seconds",
                "Seconds since the newest catalogued backup finished (absent until one exists).",
            )
            age.add_metric([], max(0.0, (datetime.now(UTC) - finished).total_seconds()))
            yield age

    def _run_counts(self) -> dict[str, int]:
        stmt = sa.select(runs_table.c.status, sa.func.count()).group_by(runs_table.c.status)
        with self.store._core.read("counting runs for metrics") as conn:
            return {str(status): int(n) for status, n in conn.execute(stmt)}


class WorkerFiles(multiprocess.MultiProcessCollector):
    """prometheus-client's multiprocess collector, leaving out files not yet sized.

    A worker creates its metrics file and sizes it a moment later: read in
    between, the empty file raised ``struct.error`` and the whole scrape
    answered 500 (prometheus/client_python#1199; seen here with two
    workers), and a worker killed in between left such a file for good. An
    empty file holds no sample yet, so it is left out of the scrape.
    """

    def collect(self) -> Iterator[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            with contextlib.suppress(FileNotFoundError):  # a dead worker's, just removed
                if os.path.getsize(path) > 0:
                    files.append(path)
        return self.merge(files, accumulate=True)  # type: ignore[no-any-return,no-untyped-call]


def render(store: Store) -> bytes:
    """The whole exposition: process metrics (every worker's), then the database's."""
    if metrics.multiprocess_dir():
        registry = CollectorRegistry()
        WorkerFiles(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector(store))
    return generate_latest(registry) + generate_latest(database)


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request) -> Response:
    """Prometheus text format; an admin key unless ``AGENTKEEP_METRICS_AUTH=none``."""
    state = service_state(request)
    if state.settings.metrics_auth != "none":
        await admin_state(request)
    body = await anyio.to_thread.run_sync(render, state.store)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
