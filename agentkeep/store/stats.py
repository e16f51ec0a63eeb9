"""Aggregate statistics for one agent or a whole tenant, computed in SQL.

For an agent: its runs, LLM calls and tool calls (by ``agent_id``), its
sessions (``sessions.agent_id``), the messages it wrote or that are in its
sessions, and the snapshots of its sessions. Without an agent: everything of
the tenant. Latency percentiles interpolate linearly between the two nearest
ranks (like PostgreSQL's ``percentile_cont``) over the calls that report a
latency; the database sorts the column once and returns at most ten values.
Cost sums the priced calls exactly; ``unpriced_calls`` counts the others, and
``cost_usd`` is ``None`` only when there are calls and none of them is priced.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from agentkeep.models import Stats as StatsModel
from agentkeep.models import ToolStats
from agentkeep.store._base import Resource, time_range
from agentkeep.store._prices import from_nano
from agentkeep.store._steps import Op, Read, Steps, op
from agentkeep.store._validate import opt_text
from agentkeep.store.message_sql import MessageSQL
from agentkeep.store.schema import llm_usage, messages, runs, sessions, snapshots, tool_calls

__all__ = ["PERCENTILES", "Stats", "StatsModel", "percentiles"]

PERCENTILES: dict[str, float] = {"p50": 0.50, "p75": 0.75, "p90": 0.90, "p95": 0.95, "p99": 0.99}


def percentiles(
    sql: MessageSQL,
    column: sa.ColumnElement[Any],
    where: list[sa.ColumnElement[bool]],
    wanted: dict[str, float] = PERCENTILES,
) -> Steps[dict[str, float | None]]:
    """Interpolated percentiles of a numeric column, without loading the rows.

    PostgreSQL: one ``percentile_cont`` aggregate (one scan). SQLite, which
    has none: one count, then one windowed query that returns only the values
    at the ranks the percentiles fall between, interpolated as
    ``percentile_cont`` does.
    """
    conds = [*where, column.is_not(None)]
    if sql.sa_dialect.name == "postgresql":
        fractions = postgresql.array([sa.literal(p, sa.Float()) for p in wanted.values()])
        cont = sa.func.percentile_cont(fractions, type_=postgresql.ARRAY(sa.Float()))
        got = (yield sql.adhoc(sa.select(cont.within_group(column)).where(*conds)))[0][0]
        if got is None:
            return dict.fromkeys(wanted)
        return {name: float(v) for name, v in zip(wanted, got, strict=True)}
    n = int((yield sql.adhoc(sa.select(sa.func.count()).where(*conds)))[0][0] or 0)
    if n == 0:
        return dict.fromkeys(wanted)
    ranks: dict[str, tuple[int, int, float]] = {}
    for name, p in wanted.items():
        pos = p * (n - 1)
        lo = math.floor(pos)
        ranks[name] = (lo + 1, min(lo + 2, n), pos - lo)  # 1-based row numbers
    needed = sorted({r for lo, hi, _ in ranks.values() for r in (lo, hi)})
    ordered = (
        sa.select(column.label("value"), sa.func.row_number().over(order_by=column).label("rn"))
        .where(*conds)
        .subquery()
    )
    at_ranks = sa.select(ordered.c.value, ordered.c.rn).where(ordered.c.rn.in_(needed))
    found = {int(rn): float(value) for value, rn in (yield sql.adhoc(at_ranks))}
    out: dict[str, float | None] = {}
    for name, (lo, hi, frac) in ranks.items():
        out[name] = found[lo] + (found[hi] - found[lo]) * frac
    return out


class Stats(Resource):
    """``store.stats``: totals for one agent or for the whole tenant."""

    kind = "stats"

    @op
    def get(
        self,
        agent_id: str | None = None,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Op[StatsModel]:
        """Runs, LLM calls, tokens, cost, latency, tools, messages, snapshots, sessions.

        ``created_after`` / ``created_before``: only what was created in that
        window (runs, calls, tool calls, messages, snapshots and sessions). One read.
        """
        agent_id = opt_text(agent_id, "agent_id", 256)
        tenant, sql = self.tenant_id, self._core.message_sql

        def scope(table: sa.Table, *, by_agent: bool = True) -> list[sa.ColumnElement[bool]]:
            conds: list[sa.ColumnElement[bool]] = [table.c.tenant_id == tenant]
            if agent_id is not None and by_agent:
                conds.append(table.c.agent_id == agent_id)
            return conds + time_range(table.c.created_at, created_after, created_before)

        def steps() -> Steps[dict[str, Any]]:
            figures: dict[str, Any] = {
                "agent_id": agent_id,
                **(yield from _run_figures(sql, scope(runs))),
                **(yield from _usage_figures(sql, scope(llm_usage))),
                **(yield from _tool_figures(sql, scope(tool_calls))),
            }
            sess_where = scope(sessions)
            figures["sessions"] = yield from _count(sql, sessions, sess_where)
            messages_where = scope(messages, by_agent=False)
            snapshots_where = scope(snapshots, by_agent=False)
            if agent_id is not None:
                agent_sessions = sa.select(sessions.c.id).where(*sess_where[:2])
                messages_where.append(
                    sa.or_(
                        messages.c.agent_id == agent_id,
                        messages.c.session_id.in_(agent_sessions),
                    )
                )
                snapshots_where.append(snapshots.c.session_id.in_(agent_sessions))
            figures["messages"] = yield from _count(sql, messages, messages_where)
            figures["snapshots"] = yield from _count(sql, snapshots, snapshots_where)
            return figures

        figures = yield Read("computing stats", steps)
        sessions_n = figures["sessions"]
        figures["avg_messages_per_session"] = (
            figures["messages"] / sessions_n if sessions_n else 0.0
        )
        return StatsModel(**figures)


def _count(sql: MessageSQL, table: sa.Table, where: list[sa.ColumnElement[bool]]) -> Steps[int]:
    found = yield sql.adhoc(sa.select(sa.func.count()).select_from(table).where(*where))
    return int(found[0][0] or 0)


def _run_figures(sql: MessageSQL, where: list[sa.ColumnElement[bool]]) -> Steps[dict[str, Any]]:
    r = runs
    found = yield sql.adhoc(
        sa.select(
            sa.func.count(),
            sa.func.sum(sa.case((r.c.status == "completed", 1), else_=0)),
            sa.func.sum(sa.case((r.c.status == "failed", 1), else_=0)),
            sa.func.sum(sa.case((r.c.status == "cancelled", 1), else_=0)),
            sa.func.avg(r.c.iterations),
        ).where(*where)
    )
    total, completed, failed, cancelled, avg_iter = found[0]
    return {
        "total_runs": int(total),
        "completed_runs": int(completed or 0),
        "failed_runs": int(failed or 0),
        "cancelled_runs": int(cancelled or 0),
        "avg_iterations": float(avg_iter) if avg_iter is not None else 0.0,
    }


def _usage_figures(sql: MessageSQL, where: list[sa.ColumnElement[bool]]) -> Steps[dict[str, Any]]:
    u = llm_usage
    found = yield sql.adhoc(
        sa.select(
            sa.func.count(),
            sa.func.sum(u.c.input_tokens),
            sa.func.sum(u.c.output_tokens),
            sa.func.sum(u.c.cached_tokens),
            sa.func.sum(u.c.reasoning_tokens),
            sa.func.sum(u.c.cost_nano_usd),
            sa.func.sum(sa.case((u.c.cost_nano_usd.is_(None), 1), else_=0)),
        ).where(*where)
    )
    row = found[0]
    calls = int(row[0])
    input_tokens, output_tokens, cached, reasoning = (int(v or 0) for v in row[1:5])
    cost_nano, unpriced = row[5], int(row[6] or 0)
    cost: Decimal | None
    if cost_nano is not None:
        cost = from_nano(int(cost_nano))
    else:
        cost = None if calls else Decimal(0).scaleb(-9)
    priced = calls - unpriced
    latency = yield from percentiles(sql, u.c.latency_ms, where)
    return {
        "llm_calls": calls,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_tokens": cached,
        "reasoning_tokens": reasoning,
        "cost_usd": cost,
        "unpriced_calls": unpriced,
        "avg_input_tokens_per_call": input_tokens / calls if calls else None,
        "avg_output_tokens_per_call": output_tokens / calls if calls else None,
        "avg_cost_per_call_usd": from_nano(int(cost_nano) // priced) if priced else None,
        "latency_ms": latency,
    }


def _tool_figures(sql: MessageSQL, where: list[sa.ColumnElement[bool]]) -> Steps[dict[str, Any]]:
    tc = tool_calls
    failed = sa.or_(tc.c.is_error.is_(True), tc.c.state == "failed")
    per_tool = yield sql.adhoc(
        sa.select(
            tc.c.name,
            sa.func.count(),
            sa.func.sum(sa.case((failed, 1), else_=0)),
            sa.func.avg(tc.c.duration_ms),
        )
        .where(*where)
        .group_by(tc.c.name)
        .order_by(tc.c.name)
    )
    per_state = yield sql.adhoc(
        sa.select(tc.c.state, sa.func.count())
        .where(*where)
        .group_by(tc.c.state)
        .order_by(tc.c.state)
    )
    tools = [
        ToolStats(
            name=name,
            calls=int(calls),
            errors=int(errors or 0),
            avg_duration_ms=float(avg) if avg is not None else None,
        )
        for name, calls, errors, avg in per_tool
    ]
    by_state = {str(state): int(n) for state, n in per_state}
    return {
        "tools": tools,
        "tool_calls_by_state": by_state,
        "total_tool_calls": sum(by_state.values()),
    }
