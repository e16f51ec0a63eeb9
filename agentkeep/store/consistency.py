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

The check only reads; it runs per tenant and streams the messages it inspects
(only those whose content holds tool blocks).
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
from agentkeep.store.schema import messages, runs, sessions, tool_calls

__all__ = ["UNFINISHED_TOOL_STATES", "check_consistency"]

UNFINISHED_TOOL_STATES = ("pending", "approval_required", "approved", "executing")
_CALL_TYPES = ("tool_use", "function_call")
_RESULT_TYPES = ("tool_result", "function_call_output")


def check_consistency(core: Core, tenant_id: str) -> ConsistencyReport:
    """Every inconsistency found in ``tenant_id``'s rows (see the module docstring)."""
    issues: list[ConsistencyIssue] = []
    with core.read("checking consistency") as conn:
        issues += _unfinished_tool_calls(conn, tenant_id)
        issues += _unanswered_tool_uses(conn, tenant_id)
        issues += _session_counts(conn, tenant_id)
    return ConsistencyReport(ok=not issues, issues=issues, checked_at=datetime.now(UTC))


def _unfinished_tool_calls(conn: Connection, tenant_id: str) -> Iterator[ConsistencyIssue]:
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


def _unanswered_tool_uses(conn: Connection, tenant_id: str) -> Iterator[ConsistencyIssue]:
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


def _session_counts(conn: Connection, tenant_id: str) -> Iterator[ConsistencyIssue]:
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
