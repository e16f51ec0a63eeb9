"""Tool calls: a state machine with approvals and an audit trail of every change.

Each change reads the call's row, checks ``TOOL_CALL_TRANSITIONS`` and writes
the new state with one more audit entry only if the row is still as read (its
state and ``updated_at``), else reads it again: two racing changes cannot both
apply, nor lose an audit entry. Every method is an operation (``_steps``) on
the store's own connections, so the async API awaits them without a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, InvalidTransition, NotFound
from agentkeep.ids import new_id
from agentkeep.models import TOOL_CALL_TERMINAL, TOOL_CALL_TRANSITIONS, Approval, Page, ToolCall
from agentkeep.models.common import Order, check_metadata, utcnow_micros
from agentkeep.store._base import Resource, Row, json_texts, row_times
from agentkeep.store._listing import Filters
from agentkeep.store._run_checks import (
    check_choice,
    check_choices,
    check_json,
    check_ref,
    check_text,
)
from agentkeep.store._steps import COUNT, Op, Steps, Stmt, Write, op, operation
from agentkeep.store._validate import UNSET, require_str
from agentkeep.store.schema import run_steps as stt
from agentkeep.store.schema import runs as rt
from agentkeep.store.schema import tool_calls as t

__all__ = ["ToolCalls"]

_DECISIONS = ("approved", "denied")


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1_000_000, UTC).isoformat()


def to_call(row: Row) -> ToolCall:
    data = row_times(row, "created_at", "updated_at", "started_at", "finished_at")
    data["is_error"] = bool(data["is_error"])  # SQLite's driver gives 0 or 1
    approval = data["approval"]
    if approval is not None:
        data["approval"] = Approval.model_construct(
            decision=approval["decision"],
            by=approval.get("by"),
            note=approval.get("note"),
            at=datetime.fromisoformat(approval["at"]),
        )
    return ToolCall.model_construct(**data)


def _entry(
    before: str | None, after: str, at: int, by: str | None, note: str | None
) -> dict[str, Any]:
    return {"from": before, "to": after, "at": _iso(at), "by": by, "note": note}


def _duration_ms(state: str, row: Row | dict[str, Any], approval: Any, now: int) -> int | None:
    """Run time of a call that ended: from executing (else approval, else creation) to now."""
    start = row["started_at"]
    if start is None and state in ("completed", "failed"):
        if approval is not None:
            at = datetime.fromisoformat(approval["at"])
            start = int(at.timestamp() * 1_000_000)
        else:
            start = row["created_at"]
    return None if start is None else max(0, (now - start) // 1000)


class ToolCalls(Resource):
    """``store.tool_calls``: this tenant's tool calls, their approvals and outcomes."""

    kind = "tool_call"

    @op
    def create(
        self,
        name: str,
        input: Any = None,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        step_id: str | None = None,
        agent_id: str | None = None,
        state: str = "pending",
        metadata: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Op[ToolCall]:
        """Record a call of tool ``name`` with its ``input`` (any JSON value).

        With a ``run_id`` (or a ``step_id``, whose run it takes), the run must
        exist and lends its ``session_id`` and ``agent_id`` when not given; a
        ``session_id`` must exist. A call created in ``executing`` or a
        terminal state gets ``started_at`` or ``finished_at`` accordingly.
        """
        state = check_choice(state, TOOL_CALL_TRANSITIONS, "state")
        now = utcnow_micros()
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "id": require_str(id, "id", max_len=64) if id is not None else new_id("call"),
            "run_id": check_text(run_id, "run_id", 64),
            "session_id": check_text(session_id, "session_id", 64),
            "step_id": check_text(step_id, "step_id", 64),
            "agent_id": check_text(agent_id, "agent_id", 256),
            "name": require_str(name, "name", max_len=256),
            "input": check_json(input, "input"),
            "output": None,
            "state": state,
            "is_error": state == "failed",
            "approval": None,
            "audit": [_entry(None, state, now, None, None)],
            "metadata": check_metadata(metadata),
            "created_at": now,
            "updated_at": now,
            "started_at": now if state == "executing" else None,
            "finished_at": now if state in TOOL_CALL_TERMINAL else None,
            "duration_ms": 0 if state in ("completed", "failed") else None,
        }
        if "\x00" in values["name"]:
            raise InvalidInput("must not contain NUL characters", field="name")
        sql = self._core.message_sql
        insert = sql.insert_row(t)

        def steps() -> Steps[None]:
            yield from self._check_links(values)
            yield Stmt(insert, json_texts(t, values), COUNT)

        yield Write("recording a tool call", steps)
        return to_call(values)

    @op
    def get(self, call_id: str) -> Op[ToolCall]:
        """A tool call by id; one statement, compiled once per dialect."""
        check_ref(call_id, "call_id")
        return to_call((yield from self._read_row(t, call_id, "reading a tool call")))

    @op
    def list(
        self,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        name: str | None = None,
        state: str | Sequence[str] | None = None,
        is_error: bool | None = None,
        has_approval: bool | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
    ) -> Op[Page[ToolCall]]:
        """Tool calls, newest first by default.

        ``has_approval`` selects calls with (True) or without (False) an
        approval decision on record.
        """
        where = Filters()
        refs = ((t.c.run_id, run_id), (t.c.session_id, session_id), (t.c.agent_id, agent_id))
        where.equal(*((c, None if v is None else check_ref(v, c.name)) for c, v in refs))
        where.equal((t.c.name, None if name is None else check_ref(name, "name")))
        if state is not None:
            where.one_of(t.c.state, "state", check_choices(state, TOOL_CALL_TRANSITIONS, "state"))
        if is_error is not None:
            if not isinstance(is_error, bool):
                raise InvalidInput("must be a boolean", field="is_error")
            where.add(t.c.is_error.__eq__, {"is_error": is_error})
        if has_approval is not None:
            if not isinstance(has_approval, bool):
                raise InvalidInput("must be a boolean", field="has_approval")
            where.add(
                lambda p: t.c.approval.is_not(None) == p,
                {"has_approval": has_approval},
                {"has_approval": sa.Boolean()},
            )
        where.between(t.c.created_at, created_after, created_before)
        return (
            yield from self._page_op(
                t,
                where,
                to_call,
                what="listing tool calls",
                limit=limit,
                after=after,
                before=before,
                order=order,
            )
        )

    @op
    def transition(
        self,
        call_id: str,
        state: str,
        *,
        output: Any = UNSET,
        is_error: bool = UNSET,
        by: str | None = None,
        note: str | None = None,
    ) -> Op[ToolCall]:
        """Move a call to ``state`` if ``TOOL_CALL_TRANSITIONS`` allows it, with an audit entry.

        ``executing`` sets ``started_at``; a terminal state sets
        ``finished_at`` and ``duration_ms``; ``approved`` and ``denied``
        record the approval (decision, by, note, at). ``failed`` implies
        ``is_error`` unless it is given. Moving to the current state changes
        nothing and returns the call.
        """
        check_ref(call_id, "call_id")
        state = check_choice(state, TOOL_CALL_TRANSITIONS, "state")
        given = _result_changes(state, output, is_error)
        actor = check_text(by, "by", 256)
        remark = check_text(note, "note", 4096)

        def decide(row: dict[str, Any]) -> dict[str, Any] | None:
            current = row["state"]
            if state == current:
                return None
            if state not in TOOL_CALL_TRANSITIONS[current]:
                raise InvalidTransition("tool_call", call_id, current, state)
            return {**given, **_state_changes(row, state, actor, remark)}

        row, _ = yield from self._change_op(
            t,
            call_id,
            "reading a tool call",
            "changing a tool call's state",
            decide,
            lambda row: {"state": row["state"], "updated_at": row["updated_at"]},
        )
        return to_call(row)

    @op
    def require_approval(
        self, call_id: str, *, by: str | None = None, note: str | None = None
    ) -> Op[ToolCall]:
        """Hold a pending call until someone approves or denies it."""
        return (
            yield from operation(self.transition, call_id, "approval_required", by=by, note=note)
        )

    @op
    def decide(
        self, call_id: str, decision: str, *, by: str | None = None, note: str | None = None
    ) -> Op[ToolCall]:
        """Approve or deny a call that requires approval; records who, why and when."""
        decision = check_choice(decision, _DECISIONS, "decision")
        return (yield from operation(self.transition, call_id, decision, by=by, note=note))

    @op
    def complete(self, call_id: str, output: Any, *, is_error: bool = False) -> Op[ToolCall]:
        """Store a call's output: ``completed``, or ``failed`` when ``is_error``."""
        if not isinstance(is_error, bool):
            raise InvalidInput("must be a boolean", field="is_error")
        state = "failed" if is_error else "completed"
        return (
            yield from operation(self.transition, call_id, state, output=output, is_error=is_error)
        )

    @op
    def delete(self, call_id: str) -> Op[None]:
        """Delete one tool call."""
        check_ref(call_id, "call_id")
        yield from self._delete_row(t, call_id, "deleting a tool call")

    def _check_links(self, values: dict[str, Any]) -> Steps[None]:
        """Check that the step, run and session exist; fill in what the run knows. In the
        call's write (on SQLite its transaction; PostgreSQL's foreign keys guard the insert)."""
        sql, tenant = self._core.message_sql, self.tenant_id
        if values["step_id"] is not None:
            step = yield Stmt(sql.compiled(_STEP_RUN), {"t": tenant, "id": values["step_id"]})
            if not step:
                raise NotFound("run_step", values["step_id"])
            if values["run_id"] is None:
                values["run_id"] = step[0][0]
            elif values["run_id"] != step[0][0]:
                raise InvalidInput(
                    f"step {values['step_id']!r} belongs to run {step[0][0]!r}", field="step_id"
                )
        if values["run_id"] is not None:
            run = yield Stmt(sql.compiled(_RUN_LINKS), {"t": tenant, "id": values["run_id"]})
            if not run:
                raise NotFound("run", values["run_id"])
            session_id, agent_id = run[0]
            if values["session_id"] is None:
                values["session_id"] = session_id
            elif session_id is not None and values["session_id"] != session_id:
                raise InvalidInput(
                    f"run {values['run_id']!r} belongs to session {session_id!r}",
                    field="session_id",
                )
            if values["agent_id"] is None:
                values["agent_id"] = agent_id
        if values["session_id"] is not None:
            found = yield Stmt(sql.session_exists, {"t": tenant, "s": values["session_id"]})
            if not found:
                raise NotFound("session", values["session_id"])


_STEP_RUN = sa.select(stt.c.run_id).where(
    stt.c.tenant_id == sa.bindparam("t"), stt.c.id == sa.bindparam("id")
)
_RUN_LINKS = sa.select(rt.c.session_id, rt.c.agent_id).where(
    rt.c.tenant_id == sa.bindparam("t"), rt.c.id == sa.bindparam("id")
)


def _result_changes(state: str, output: Any, is_error: Any) -> dict[str, Any]:
    """The checked ``output`` and ``is_error`` given to a transition (``failed``: an error)."""
    changes: dict[str, Any] = {}
    if output is not UNSET:
        changes["output"] = check_json(output, "output")
    if is_error is not UNSET:
        if not isinstance(is_error, bool):
            raise InvalidInput("must be a boolean", field="is_error")
        changes["is_error"] = is_error
    elif state == "failed":
        changes["is_error"] = True
    return changes


def _state_changes(
    row: Row | dict[str, Any], state: str, actor: str | None, remark: str | None
) -> dict[str, Any]:
    """The columns a move of ``row`` to ``state`` sets: times, approval, audit entry."""
    now = utcnow_micros()
    changes: dict[str, Any] = {}
    approval = row["approval"]
    if state in _DECISIONS:
        approval = {"decision": state, "by": actor, "note": remark, "at": _iso(now)}
        changes["approval"] = approval
    if state == "executing" and row["started_at"] is None:
        changes["started_at"] = now
    if state in TOOL_CALL_TERMINAL:
        changes["finished_at"] = now
        changes["duration_ms"] = _duration_ms(state, row, approval, now)
    changes.update(
        state=state,
        audit=[*row["audit"], _entry(row["state"], state, now, actor, remark)],
        updated_at=now,
    )
    return changes
