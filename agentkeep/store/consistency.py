"""The consistency check: tool calls left without results, counts that disagree.

Issue kinds (``ConsistencyIssue.kind``):

- ``tool_call_without_result``: a tool call still ``pending``,
  ``approval_required``, ``approved`` or ``executing`` although its run has
  ended; nothing will ever give it a result. ``object_id`` is the tool call.
- ``tool_use_without_result``: a ``tool_use`` (or ``function_call``) block in a
  message with no ``tool_result`` (or ``function_call_output``) for its id
  later in the session, where the message's run is not active any more (or it
  has no run). ``object_id`` is the message; the detail names the call id.
- ``session_message_count``: a session's ``message_count`` differs from the
  number of its messages. ``object_id`` is the session.
- ``session_last_seq``: a session has a message with a ``seq`` above its
  ``last_seq`` (the next append would collide). ``last_seq`` above the largest
  ``seq`` is normal after deleting the last messages.

- ``orphaned_row`` (only with ``agent_id``): a row of the agent whose parent
  is gone (a run, message, tool call, run step or event naming a session or
  run that does not exist; only possible where foreign keys were not
  enforced, e.g. a file written by another tool). ``object_id`` is the row
  (``table:id``; an event's is its bookmark).

The check only reads; it runs per tenant and streams the messages it inspects
(only those whose content holds tool blocks). With ``agent_id`` (KODE's
per-agent ``checkConsistency``) it looks only at the agent's rows: its runs
and their tool calls, and the sessions that belong to it (``agent_id``) or
that its runs ran on, with their messages.

Message ``seq`` gaps are not reported: deleting a message leaves one, and
``session_last_seq`` catches the gap that matters (a seq above ``last_seq``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.models import ConsistencyIssue, ConsistencyReport
from agentkeep.models.runs import ACTIVE_RUN_STATUSES, TERMINAL_RUN_STATUSES
from agentkeep.store._core import Core
from agentkeep.store.schema import events, messages, run_steps, runs, sessions, tool_calls

__all__ = ["UNFINISHED_TOOL_STATES", "check_consistency"]

UNFINISHED_TOOL_STATES = ("pending", "approval_required", "approved", "executing")
_CALL_TYPES = ("tool_use", "function_call")
_RESULT_TYPES = ("tool_result", "function_call_output")


def check_consistency(core: Core, tenant_id: str, agent_id: str | None = None) -> ConsistencyReport:
    """Every inconsistency found in ``tenant_id``'s rows, or in one agent's (see the module docstring)."""
    issues: list[ConsistencyIssue] = []
    with core.read("checking consistency", batches=True) as conn:
        scope = None if agent_id is None else _AgentScope(agent_id)
        issues += _unfinished_tool_calls(conn, tenant_id, scope)
        issues += _unanswered_tool_uses(conn, tenant_id, scope)
        issues += _session_counts(conn, tenant_id, scope)
        if scope is not None:
            issues += _orphans(conn, tenant_id, scope)
    return ConsistencyReport(ok=not issues, issues=issues, checked_at=datetime.now(UTC))


class _AgentScope:
    """The rows of one agent: its runs, and the sessions it owns or ran on."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id

    def session_ids(self, tenant_id: str) -> Any:
        owned = sa.select(sessions.c.id).where(
            sessions.c.tenant_id == tenant_id, sessions.c.agent_id == self.agent_id
        )
        ran_on = sa.select(runs.c.session_id).where(
            runs.c.tenant_id == tenant_id,
            runs.c.agent_id == self.agent_id,
            runs.c.session_id.is_not(None),
        )
        return sa.union(owned, ran_on)


def _unfinished_tool_calls(
    conn: Connection, tenant_id: str, scope: _AgentScope | None
) -> Iterator[ConsistencyIssue]:
    tc, r = tool_calls, runs
    stmt = (
        sa.select(tc.c.id, tc.c.name, tc.c.state, r.c.id.label("run_id"), r.c.status)
        .join(r, sa.and_(r.c.tenant_id == tc.c.tenant_id, r.c.id == tc.c.run_id))
        .where(
            tc.c.tenant_id == tenant_id,
            tc.c.state.in_(UNFINISHED_TOOL_STATES),
            r.c.status.in_(sorted(TERMINAL_RUN_STATUSES)),
        )
        .order_by(tc.c.id)
    )
    if scope is not None:
        stmt = stmt.where(r.c.agent_id == scope.agent_id)
    for row in conn.execute(stmt):
        yield ConsistencyIssue(
            kind="tool_call_without_result",
            object_id=row.id,
            detail=f"tool call {row.name!r} is still {row.state} but run {row.run_id} is {row.status}",
        )


def _call_id(block: dict[str, Any]) -> str | None:
    ident = block.get("call_id") if block.get("type") == "function_call" else None
    ident = ident or block.get("id")
    return ident if isinstance(ident, str) and ident else None


def _result_id(block: dict[str, Any]) -> str | None:
    for name in ("tool_use_id", "call_id", "tool_call_id"):
        ident = block.get(name)
        if isinstance(ident, str) and ident:
            return ident
    return None


def _unanswered_tool_uses(
    conn: Connection, tenant_id: str, scope: _AgentScope | None
) -> Iterator[ConsistencyIssue]:
    m, r = messages, runs
    has_tool_block = sa.or_(
        *(
            m.c.content_types.contains(f",{kind},", autoescape=True)
            for kind in (*_CALL_TYPES, *_RESULT_TYPES)
        )
    )
    active_runs = {
        row.id
        for row in conn.execute(
            sa.select(r.c.id).where(
                r.c.tenant_id == tenant_id, r.c.status.in_(sorted(ACTIVE_RUN_STATUSES))
            )
        )
    }
    stmt = (
        sa.select(m.c.id, m.c.session_id, m.c.seq, m.c.run_id, m.c.content)
        .where(m.c.tenant_id == tenant_id, has_tool_block)
        .order_by(m.c.session_id, m.c.seq)
        .execution_options(yield_per=500)
    )
    if scope is not None:
        stmt = stmt.where(m.c.session_id.in_(scope.session_ids(tenant_id)))
    session: str | None = None
    open_calls: dict[str, tuple[str, str | None]] = {}  # call id -> (message id, run id)

    def flush() -> Iterator[ConsistencyIssue]:
        for call, (message_id, run_id) in open_calls.items():
            if run_id is not None and run_id in active_runs:
                continue  # the run is still working on it
            yield ConsistencyIssue(
                kind="tool_use_without_result",
                object_id=message_id,
                detail=f"tool call {call} in session {session} has no result after it",
            )
        open_calls.clear()

    for row in conn.execute(stmt):
        if row.session_id != session:
            yield from flush()
            session = row.session_id
        for block in row.content or []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind in _CALL_TYPES:
                call = _call_id(block)
                if call is not None:
                    open_calls[call] = (row.id, row.run_id)
            elif kind in _RESULT_TYPES:
                answered = _result_id(block)
                if answered is not None:
                    open_calls.pop(answered, None)
    yield from flush()


def _session_counts(
    conn: Connection, tenant_id: str, scope: _AgentScope | None
) -> Iterator[ConsistencyIssue]:
    s, m = sessions, messages
    agg = (
        sa.select(
            m.c.session_id,
            sa.func.count().label("n"),
            sa.func.max(m.c.seq).label("max_seq"),
        )
        .where(m.c.tenant_id == tenant_id)
        .group_by(m.c.session_id)
        .subquery()
    )
    n = sa.func.coalesce(agg.c.n, 0)
    max_seq = sa.func.coalesce(agg.c.max_seq, 0)
    stmt = (
        sa.select(s.c.id, s.c.message_count, s.c.last_seq, n.label("n"), max_seq.label("max_seq"))
        .select_from(s.outerjoin(agg, agg.c.session_id == s.c.id))
        .where(s.c.tenant_id == tenant_id, sa.or_(s.c.message_count != n, s.c.last_seq < max_seq))
        .order_by(s.c.id)
    )
    if scope is not None:
        stmt = stmt.where(s.c.id.in_(scope.session_ids(tenant_id)))
    for row in conn.execute(stmt):
        if row.message_count != row.n:
            yield ConsistencyIssue(
                kind="session_message_count",
                object_id=row.id,
                detail=f"message_count is {row.message_count} but the session has {row.n} messages",
            )
        if row.last_seq < row.max_seq:
            yield ConsistencyIssue(
                kind="session_last_seq",
                object_id=row.id,
                detail=f"last_seq is {row.last_seq} but a message has seq {row.max_seq}",
            )


_OrphanCheck = tuple[sa.Table, sa.ColumnElement[Any], sa.ColumnElement[bool], str]


def _orphans(conn: Connection, tenant_id: str, scope: _AgentScope) -> Iterator[ConsistencyIssue]:
    """The agent's rows that name a session or run that does not exist."""
    agent = scope.agent_id
    for table, key, condition, parent in _orphan_checks(tenant_id, agent):
        stmt = sa.select(key).where(table.c.tenant_id == tenant_id, condition).order_by(key)
        for (ident,) in conn.execute(stmt):
            yield ConsistencyIssue(
                kind="orphaned_row",
                object_id=f"{table.name}:{ident}",
                detail=f"{table.name} row {ident} of agent {agent} names a {parent} that does not exist",
            )


def _orphan_checks(tenant_id: str, agent: str) -> list[_OrphanCheck]:
    """Per table of an agent's rows: its key, the orphan condition, what parent it lacks."""

    def missing(parent: sa.Table, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.and_(
            column.is_not(None),
            ~sa.exists().where(parent.c.tenant_id == tenant_id, parent.c.id == column),
        )

    agent_runs = sa.select(runs.c.id).where(runs.c.tenant_id == tenant_id, runs.c.agent_id == agent)
    return [
        (
            runs,
            runs.c.id,
            sa.and_(runs.c.agent_id == agent, missing(sessions, runs.c.session_id)),
            "session",
        ),
        (
            messages,
            messages.c.id,
            sa.and_(
                sa.or_(messages.c.agent_id == agent, messages.c.run_id.in_(agent_runs)),
                missing(sessions, messages.c.session_id),
            ),
            "session",
        ),
        (
            tool_calls,
            tool_calls.c.id,
            sa.and_(
                sa.or_(tool_calls.c.agent_id == agent, tool_calls.c.run_id.in_(agent_runs)),
                sa.or_(
                    missing(runs, tool_calls.c.run_id), missing(sessions, tool_calls.c.session_id)
                ),
            ),
            "run or session",
        ),
        (
            run_steps,
            run_steps.c.id,
            sa.and_(run_steps.c.agent_id == agent, missing(runs, run_steps.c.run_id)),
            "run",
        ),
        (
            events,
            events.c.bookmark,
            sa.and_(
                events.c.agent_id == agent,
                sa.or_(missing(runs, events.c.run_id), missing(sessions, events.c.session_id)),
            ),
            "run or session",
        ),
    ]
