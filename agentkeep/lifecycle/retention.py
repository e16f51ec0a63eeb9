"""Data retention per tenant: delete inactive sessions, compact finished runs' stream deltas.

- ``inactive_days``: a session whose last activity is older than that many
  days is deleted with everything that belongs to it (messages, runs, steps,
  events, tool calls, snapshots: the schema's cascades).
- ``compact_events``: the ``*.delta`` events (``thread.message.delta``,
  ``thread.run.step.delta``) of runs that have finished are deleted: the
  run's messages and steps hold its result, and a finished run's stream is
  replayed from them, not from its deltas.

LLM usage rows are never touched (cost accounting). ``dry_run`` counts what
would go and deletes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.models.common import utcnow_micros
from agentkeep.models.runs import TERMINAL_RUN_STATUSES
from agentkeep.store import Store
from agentkeep.store.schema import events, runs, sessions

__all__ = ["RetentionReport", "sweep", "sweep_all_tenants", "tenants_of"]


@dataclass
class RetentionReport:
    """What a sweep of one tenant deleted (or, in a dry run, would delete)."""

    tenant: str
    sessions: int = 0
    events: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep(
    store: Store,
    *,
    inactive_days: int | None = None,
    compact_events: bool = False,
    dry_run: bool = False,
) -> RetentionReport:
    """Apply the retention rules to ``store``'s tenant, in one transaction."""
    if inactive_days is not None and (
        isinstance(inactive_days, bool) or not isinstance(inactive_days, int) or inactive_days < 1
    ):
        raise InvalidInput("must be a positive number of days", field="inactive_days")
    tenant = store.tenant_id
    report = RetentionReport(tenant=tenant, dry_run=dry_run)
    finished = sa.select(runs.c.id).where(
        runs.c.tenant_id == tenant, runs.c.status.in_(sorted(TERMINAL_RUN_STATUSES))
    )
    deltas = sa.and_(
        events.c.tenant_id == tenant,
        events.c.type.like("%.delta"),
        events.c.run_id.in_(finished.scalar_subquery()),
    )
    stale = sa.and_(sessions.c.tenant_id == tenant)
    if inactive_days is not None:
        cutoff = utcnow_micros() - int(timedelta(days=inactive_days).total_seconds() * 1_000_000)
        stale = sa.and_(stale, sessions.c.last_activity_at < cutoff)
    with store._core.write("retention sweep") as conn:
        if compact_events:
            report.events = _count_or_delete(conn, events, deltas, dry_run)
        if inactive_days is not None:
            report.sessions = _count_or_delete(conn, sessions, stale, dry_run)
    return report


def _count_or_delete(conn: Any, table: sa.Table, where: Any, dry_run: bool) -> int:
    if dry_run:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar()
        )
    return int(conn.execute(sa.delete(table).where(where)).rowcount)


def tenants_of(store: Store) -> list[str]:
    """Every tenant that has sessions or runs."""
    with store._core.read("listing tenants") as conn:
        found = conn.execute(
            sa.union(sa.select(sessions.c.tenant_id), sa.select(runs.c.tenant_id))
        ).scalars()
        return sorted(set(found))


def sweep_all_tenants(
    store: Store, *, inactive_days: int | None, compact_events: bool, dry_run: bool = False
) -> list[RetentionReport]:
    """The same rules for every tenant of the database."""
    return [
        sweep(
            store.tenant(t),
            inactive_days=inactive_days,
            compact_events=compact_events,
            dry_run=dry_run,
        )
        for t in tenants_of(store)
    ]
