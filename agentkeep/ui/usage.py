"""Usage and cost: model calls summed by day, model, agent and user over a window.

Every number is of the chosen window: the four charts come from one
``store.usage.rollups`` read (each chart what ``store.usage.rollup`` gives for
its key; the window's whole days are read from the daily table ``usage_days``,
not from the calls), the latency percentiles from ``store.usage.latency`` (an
index-only scan of the window's latencies); nothing reads the whole history. Those figures are kept per tenant and window for
``CACHE_TTL_S`` seconds, and recomputed at once when a call is recorded (the
newest usage id, one indexed read, changes): the page says when they were
computed. A group whose calls are all unpriced shows "unpriced",
never $0; a group with some unpriced calls shows its priced sum and how many
calls it leaves out. Each chart's table can be downloaded as CSV.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from agentkeep.errors import InvalidInput
from agentkeep.models import UsageRollup
from agentkeep.store import Store
from agentkeep.ui.auth import SignedIn
from agentkeep.ui.charts import BAR_W, KINDS, LABEL_W, ROW_H, chart_rows
from agentkeep.ui.web import UiRoute, day_start, opt, render

__all__ = ["FiguresCache", "router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

GROUPS = {"day": "By day", "model": "By model", "agent": "By agent", "user": "By user"}
DEFAULT_DAYS = 30
CACHE_TTL_S = 30.0  # figures of a window are recomputed after this, or when a call is recorded
CACHE_ENTRIES = 64
CSV_COLUMNS = (
    "key",
    "calls",
    "error_calls",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_calls",
)


def _window(since: str | None, until: str | None) -> tuple[datetime, datetime, str, str]:
    """The UTC days [since, until] (default: the last 30 days, today included)."""
    today = datetime.now(UTC).date()
    start = day_start(since, "since") or datetime.combine(
        today - timedelta(days=DEFAULT_DAYS - 1), datetime.min.time(), tzinfo=UTC
    )
    end = day_start(until, "until", end=True) or datetime.combine(
        today + timedelta(days=1), datetime.min.time(), tzinfo=UTC
    )
    if end <= start:
        raise InvalidInput("must be on or after 'since'", field="until")
    return start, end, start.date().isoformat(), (end - timedelta(days=1)).date().isoformat()


def _charts(store: Store, start: datetime, end: datetime) -> dict[str, list[UsageRollup]]:
    """Every chart's rollup of the window, from one read."""
    return store.usage.rollups(
        ("day", "model", "agent", "user"), created_after=start, created_before=end
    )


@dataclass(frozen=True)
class Figures:
    """What the usage page shows for one tenant and window, and when it was computed."""

    newest: str | None  # the newest usage id (of any time) when computed
    monotonic: float
    computed_at: datetime
    rollups: dict[str, list[UsageRollup]]
    latency: dict[str, float | None]


class FiguresCache:
    """Figures by (tenant, window), for one app (one database); safe from any thread."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, entries: int = CACHE_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.entries = entries
        self._kept: OrderedDict[tuple[str, datetime, datetime], Figures] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, start: datetime, end: datetime) -> Figures:
        """The window's charts and latency: kept while fresh, else read from the store."""
        newest_page = store.usage.list(limit=1).items  # the primary key, newest first: cheap
        newest = newest_page[0].id if newest_page else None
        key = (store.tenant_id, start, end)
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept.newest == newest and now - kept.monotonic < self.ttl_s:
            return kept
        figures = Figures(
            newest=newest,
            monotonic=now,
            computed_at=datetime.now(UTC),
            rollups=_charts(store, start, end),
            latency=store.usage.latency(created_after=start, created_before=end),
        )
        with self._lock:
            self._kept[key] = figures
            self._kept.move_to_end(key)
            while len(self._kept) > self.entries:
                self._kept.popitem(last=False)
        return figures


def _totals(rollups: list[UsageRollup]) -> dict[str, Any]:
    priced = [r.cost_usd for r in rollups if r.cost_usd is not None]
    return {
        "calls": sum(r.calls for r in rollups),
        "error_calls": sum(r.error_calls for r in rollups),
        "input_tokens": sum(r.input_tokens for r in rollups),
        "cached_tokens": sum(r.cached_tokens for r in rollups),
        "output_tokens": sum(r.output_tokens for r in rollups),
        "reasoning_tokens": sum(r.reasoning_tokens for r in rollups),
        "cost_usd": sum(priced) if priced else None,
        "unpriced_calls": sum(r.unpriced_calls for r in rollups),
    }


@router.get("/usage")
def usage_page(
    request: Request, visitor: SignedIn, since: str | None = None, until: str | None = None
) -> Response:
    start, end, first, last = _window(since, until)
    figures = _cache(request).get(visitor.store, start, end)
    rollups = figures.rollups
    charts = [
        {"by": by, "title": title, "rows": chart_rows(rollups[by])} for by, title in GROUPS.items()
    ]
    return render(
        request,
        "usage.html",
        charts=charts,
        totals=_totals(rollups["day"]),
        latency=figures.latency,
        computed_at=figures.computed_at,
        cache_ttl_s=CACHE_TTL_S,
        since=first,
        until=last,
        kinds=KINDS,
        label_w=LABEL_W,
        bar_w=BAR_W,
        row_h=ROW_H,
    )


def _cache(request: Request) -> FiguresCache:
    cache = request.app.state.ui_usage_cache
    assert isinstance(cache, FiguresCache)
    return cache


@router.get("/usage.csv")
def usage_csv(
    request: Request,
    visitor: SignedIn,
    by: str = "day",
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """What one chart shows, as CSV (cost empty when unknown, never 0)."""
    start, end, first, last = _window(opt(since), opt(until))
    if by not in GROUPS:
        raise InvalidInput(f"must be one of {', '.join(GROUPS)}", field="by")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in _cache(request).get(visitor.store, start, end).rollups[by]:
        row = r.model_dump()
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    name = f"agentkeep-usage-{visitor.viewing}-by-{by}-{first}-{last}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
