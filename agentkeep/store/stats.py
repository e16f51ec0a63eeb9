"""Aggregate statistics for one agent or a whole tenant, computed in SQL.

For an agent: its runs, LLM calls and tool calls (by ``agent_id``), its
sessions (``sessions.agent_id``), the messages it wrote or that are in its
sessions, and the snapshots of its sessions. Without an agent: everything of
the tenant. Latency percentiles interpolate linearly between the two nearest
ranks (like PostgreSQL's ``percentile_cont``) over the calls that report a
latency; the database sorts the column once and returns at most eight values.
Cost sums the priced calls exactly; ``unpriced_calls`` counts the others, and
``cost_usd`` is ``None`` only when there are calls and none of them is priced.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.models import Stats as StatsModel
from agentkeep.models import ToolStats
from agentkeep.store._base import Resource
from agentkeep.store._prices import from_nano
from agentkeep.store._validate import opt_text
from agentkeep.store.schema import llm_usage, messages, runs, sessions, snapshots, tool_calls

__all__ = ["PERCENTILES", "Stats", "StatsModel", "percentiles"]

PERCENTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


def percentiles(
    conn: Connection,
    column: sa.ColumnElement[Any],
    where: list[sa.ColumnElement[bool]],
    wanted: dict[str, float] = PERCENTILES,
) -> dict[str, float | None]:
    """Interpolated percentiles of a numeric column, without loading the rows.

    One count, then one windowed query that returns only the values at the
    ranks the percentiles fall between.
    """
    conds = [*where, column.is_not(None)]
    n = int(conn.execute(sa.select(sa.func.count()).where(*conds)).scalar() or 0)
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
    found = {
        int(rn): float(value)
        for value, rn in conn.execute(
            sa.select(ordered.c.value, ordered.c.rn).where(ordered.c.rn.in_(needed))
        )
    }
    out: dict[str, float | None] = {}
    for name, (lo, hi, frac) in ranks.items():
        out[name] = found[lo] + (found[hi] - found[lo]) * frac
    return out


def _run_totals() -> sa.Select[int, Any, Any, Any, Any]:
    r = runs
    return sa.select(
        sa.func.count(),
        sa.func.sum(sa.case((r.c.status == "completed", 1), else_=0)),
        sa.func.sum(sa.case((r.c.status == "failed", 1), else_=0)),
        sa.func.sum(sa.case((r.c.status == "cancelled", 1), else_=0)),
        sa.func.avg(r.c.iterations),
    )


def _usage_totals() -> sa.Select[int, Any, Any, Any, Any]:
    u = llm_usage
    return sa.select(
        sa.func.count(),
        sa.func.sum(u.c.input_tokens),
        sa.func.sum(u.c.output_tokens),
        sa.func.sum(u.c.cost_nano_usd),
        sa.func.sum(sa.case((u.c.cost_nano_usd.is_(None), 1), else_=0)),
    )


def _tool_stats(
    conn: Connection, where: list[sa.ColumnElement[bool]]
) -> tuple[list[ToolStats], dict[str, int]]:
    """Calls, errors and mean duration per tool name; calls per state."""
    tc = tool_calls
    failed = sa.or_(tc.c.is_error.is_(True), tc.c.state == "failed")
    per_name = (
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
    tools = [
        ToolStats(
            name=name,
            calls=int(calls),
            errors=int(errors or 0),
            avg_duration_ms=float(avg) if avg is not None else None,
        )
        for name, calls, errors, avg in conn.execute(per_name)
    ]
    per_state = (
        sa.select(tc.c.state, sa.func.count())
        .where(*where)
        .group_by(tc.c.state)
        .order_by(tc.c.state)
    )
    by_state = {str(state): int(n) for state, n in conn.execute(per_state)}
    return tools, by_state


class Stats(Resource):
    """``store.stats``: totals for one agent or for the whole tenant."""

    kind = "stats"

    def get(self, agent_id: str | None = None) -> StatsModel:
        """Runs, LLM calls, tokens, cost, latency, tools, messages, snapshots, sessions."""
        agent_id = opt_text(agent_id, "agent_id", 256)
        tenant = self.tenant_id

        def scope(table: sa.Table) -> list[sa.ColumnElement[bool]]:
            conds: list[sa.ColumnElement[bool]] = [table.c.tenant_id == tenant]
            if agent_id is not None:
                conds.append(table.c.agent_id == agent_id)
            return conds

        with self._core.read("computing stats") as conn:
            run_row = conn.execute(_run_totals().where(*scope(runs))).one()
            usage_row = conn.execute(_usage_totals().where(*scope(llm_usage))).one()
            latency = percentiles(conn, llm_usage.c.latency_ms, scope(llm_usage))
            tools, by_state = _tool_stats(conn, scope(tool_calls))
            n_sessions, n_messages, n_snapshots = self._contents(conn, scope(sessions), agent_id)
        total_runs, completed, failed_runs, cancelled, avg_iter = run_row
        calls, input_tokens, output_tokens, cost_nano, unpriced = usage_row
        calls = int(calls)
        unpriced = int(unpriced or 0)
        cost: Decimal | None
        if cost_nano is not None:
            cost = from_nano(int(cost_nano))
        else:
            cost = None if calls else Decimal(0).scaleb(-9)
        return StatsModel(
            agent_id=agent_id,
            total_runs=int(total_runs),
            completed_runs=int(completed or 0),
            failed_runs=int(failed_runs or 0),
            cancelled_runs=int(cancelled or 0),
            avg_iterations=float(avg_iter) if avg_iter is not None else 0.0,
            llm_calls=calls,
            input_tokens=int(input_tokens or 0),
            output_tokens=int(output_tokens or 0),
            cost_usd=cost,
            unpriced_calls=unpriced,
            latency_ms=latency,
            tools=tools,
            tool_calls_by_state=by_state,
            total_tool_calls=sum(by_state.values()),
            messages=n_messages,
            snapshots=n_snapshots,
            sessions=n_sessions,
        )

    def _contents(
        self, conn: Connection, sess_where: list[sa.ColumnElement[bool]], agent_id: str | None
    ) -> tuple[int, int, int]:
        """How many sessions, messages and snapshots (of the agent's sessions, if given)."""
        tenant = self.tenant_id
        n_sessions = self._count(conn, sessions, sess_where)
        if agent_id is None:
            n_messages = self._count(conn, messages, [messages.c.tenant_id == tenant])
            n_snapshots = self._count(conn, snapshots, [snapshots.c.tenant_id == tenant])
            return n_sessions, n_messages, n_snapshots
        agent_sessions = sa.select(sessions.c.id).where(*sess_where)
        in_agent = sa.or_(
            messages.c.agent_id == agent_id, messages.c.session_id.in_(agent_sessions)
        )
        n_messages = self._count(conn, messages, [messages.c.tenant_id == tenant, in_agent])
        n_snapshots = self._count(
            conn,
            snapshots,
            [snapshots.c.tenant_id == tenant, snapshots.c.session_id.in_(agent_sessions)],
        )
        return n_sessions, n_messages, n_snapshots

    @staticmethod
    def _count(conn: Connection, table: sa.Table, where: list[sa.ColumnElement[bool]]) -> int:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0
        )
