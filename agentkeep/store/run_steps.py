"""Run steps: the messages a run created and the tool calls it made, in order."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidTransition, NotFound
from agentkeep.ids import new_id
from agentkeep.models import Page, RunStep
from agentkeep.models.common import Order, check_metadata, utcnow_micros
from agentkeep.models.runs import STEP_STATUSES, STEP_TYPES, TERMINAL_STEP_STATUSES
from agentkeep.store._base import (
    Resource,
    Row,
    check_page,
    json_texts,
    page_of,
    row_by_id,
    row_times,
)
from agentkeep.store._run_checks import (
    check_choice,
    check_count,
    check_error,
    check_json,
    check_ref,
)
from agentkeep.store._steps import Op, Read, Steps, Stmt, Write, op
from agentkeep.store._validate import UNSET, check_object, require_str
from agentkeep.store.message_sql import const
from agentkeep.store.schema import run_steps as t
from agentkeep.store.schema import runs as rt

__all__ = ["RunSteps"]

# A step's run (its session and agent), by tenant and id; locked, a delete of the run waits
# for the step's transaction.
_RUN = sa.select(rt.c.session_id, rt.c.agent_id).where(
    rt.c.tenant_id == sa.bindparam("r_tenant"), rt.c.id == sa.bindparam("r_id")
)
_RUN_LOCKED = _RUN.with_for_update(read=True, key_share=True)
_FROM_RUN = ("session_id", "agent_id")
_GIVEN = [c.name for c in t.c if c.name not in (*_FROM_RUN, "last_error")]


def _insert_from_run(locked: bool) -> sa.Insert:
    """A new step with its run's session and agent, copied by the INSERT from the run's row
    (``locked``: the row taken FOR KEY SHARE, so a delete of the run waits for the step's
    transaction); no row when there is no such run. One statement, not a read and a write."""
    run = _RUN_LOCKED if locked else _RUN
    given = [sa.bindparam(name, type_=t.c[name].type) for name in _GIVEN]
    select = run.with_only_columns(*given, sa.null(), *(rt.c[c] for c in _FROM_RUN))
    return (
        sa.insert(t)
        .from_select([*_GIVEN, "last_error", *_FROM_RUN], select)
        .returning(*(t.c[c] for c in _FROM_RUN))
    )


_INSERTS = {locked: _insert_from_run(locked) for locked in (False, True)}


def _update(status: bool | None) -> sa.Update:
    """One step's UPDATE, its changed columns from the parameters, its row returned.

    ``status``: None when the status is not changed; else whether the new one is
    terminal. A finished step matches only when set to the status it has (the
    guard reads the row as it was, as the rest of the SET does), and a step
    that a terminal status finishes gets ``finished_at``, once.
    """
    stmt = sa.update(t).where(
        t.c.tenant_id == sa.bindparam("u_tenant"), t.c.id == sa.bindparam("u_id")
    )
    if status is None:
        return stmt.returning(*t.c)
    same = t.c.status == sa.bindparam("u_status", type_=t.c.status.type)
    # The terminal statuses written into the statement (an expanding parameter would
    # render it again at every execution).
    finished = [const(s) for s in sorted(TERMINAL_STEP_STATUSES)]
    stmt = stmt.where(sa.or_(same, t.c.status.not_in(finished)))
    if status:
        stmt = stmt.values(
            finished_at=sa.case((same, t.c.finished_at), else_=sa.bindparam("u_now"))
        )
    return stmt.returning(*t.c)


_UPDATES = {status: _update(status) for status in (None, False, True)}


def to_step(row: Row) -> RunStep:
    return RunStep.model_construct(**row_times(row, "created_at", "updated_at", "finished_at"))


class RunSteps(Resource):
    """``store.run_steps``: the steps of this tenant's runs."""

    kind = "run_step"

    @op
    def create(
        self,
        run_id: str,
        type: str,
        *,
        status: str = "in_progress",
        details: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Op[RunStep]:
        """Add a step to a run; ``session_id`` and ``agent_id`` are copied from the run.

        One statement (the INSERT copies them from the run's row)."""
        step_type = check_choice(type, STEP_TYPES, "type")
        status = check_choice(status, STEP_STATUSES, "status")
        now = utcnow_micros()
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "id": require_str(id, "id", max_len=64) if id is not None else new_id("step"),
            "run_id": require_str(run_id, "run_id", max_len=64),
            "type": step_type,
            "status": status,
            "details": check_json(check_object(details, "details"), "details"),
            "input_tokens": 0,
            "output_tokens": 0,
            "metadata": check_metadata(metadata),
            "created_at": now,
            "updated_at": now,
            "finished_at": now if status in TERMINAL_STEP_STATUSES else None,
        }
        locked = self._core.dialect.skip_locked
        insert = self._core.message_sql.shaped(
            ("run_step_insert", locked), lambda: _INSERTS[locked]
        )
        add = insert.stmt({**values, "r_tenant": self.tenant_id, "r_id": values["run_id"]})

        def steps() -> Steps[list[Any]]:
            run: list[Any] = yield add
            if not run:
                raise NotFound("run", run_id)
            return run

        run = yield Write("creating a run step", steps)
        values["session_id"], values["agent_id"] = run[0]
        return to_step({**values, "last_error": None})

    @op
    def get(self, step_id: str) -> Op[RunStep]:
        """A run step by id."""
        check_ref(step_id, "step_id")
        return to_step((yield from self._read_row(t, step_id, "reading a run step")))

    @op
    def update(
        self,
        step_id: str,
        *,
        status: str = UNSET,
        details: dict[str, Any] = UNSET,
        last_error: dict[str, Any] | str | None = UNSET,
        input_tokens: int = UNSET,
        output_tokens: int = UNSET,
    ) -> Op[RunStep]:
        """Change the given fields; a terminal status sets ``finished_at``.

        A finished step keeps its status (setting the same one again is fine). One
        statement (a second reads the step when it did not change).
        """
        check_ref(step_id, "step_id")
        changes: dict[str, Any] = {}
        if status is not UNSET:
            changes["status"] = check_choice(status, STEP_STATUSES, "status")
        if details is not UNSET:
            changes["details"] = check_json(check_object(details, "details"), "details")
        if last_error is not UNSET:
            changes["last_error"] = check_error(last_error)
        if input_tokens is not UNSET:
            changes["input_tokens"] = check_count(input_tokens, "input_tokens")
        if output_tokens is not UNSET:
            changes["output_tokens"] = check_count(output_tokens, "output_tokens")
        now = utcnow_micros()
        new_status = changes.get("status")
        terminal = None if new_status is None else new_status in TERMINAL_STEP_STATUSES
        sql = self._core.message_sql
        names = tuple(sorted(changes))

        def build() -> sa.Update:
            values: dict[str, Any] = {
                n: sql.json_param(f"v_{n}")
                if isinstance(t.c[n].type, sa.JSON)
                else sa.bindparam(f"v_{n}", type_=t.c[n].type)
                for n in names
            }
            values["updated_at"] = sa.bindparam("v_now", type_=sa.BigInteger)
            return _UPDATES[terminal].values(values)

        params = {f"v_{n}": v for n, v in json_texts(t, changes).items()}
        params.update(v_now=now, u_tenant=self.tenant_id, u_id=step_id, u_now=now)
        params["u_status"] = new_status
        update = sql.shaped(("run_step_update", terminal, names), build).stmt(params)
        current = Stmt(
            sql.compiled(row_by_id(t, False)), {"tenant_id": self.tenant_id, "id": step_id}
        )

        def steps() -> Steps[list[Any]]:
            rows: list[Any] = yield update
            if rows:
                return rows
            # no such step, or a finished one asked for another status
            found: list[Any] = yield current
            if not found:
                raise NotFound("run_step", step_id)
            status_now = sql.named_row(t, found[0])["status"]
            raise InvalidTransition("run_step", step_id, status_now, str(new_status))

        rows = yield Write("updating a run step", steps)
        return to_step(sql.named_row(t, rows[0]))

    @op
    def list(
        self,
        run_id: str,
        *,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
    ) -> Op[Page[RunStep]]:
        """The steps of a run, newest first by default; NotFound for an unknown run.

        One read (two for an empty first page: is there such a run), compiled once
        per dialect.
        """
        check_ref(run_id, "run_id")
        check_page(limit, 0, order)
        tenant, sql = self.tenant_id, self._core.message_sql
        run = sql.compiled(_RUN)
        of_run = {"r_tenant": tenant, "r_id": run_id}

        def steps() -> Steps[builtins.list[dict[str, Any]]]:
            rows = yield from sql.listing(
                t,
                tenant,
                {"run_id": run_id},
                "id",
                forward=order == "asc",
                after=after,
                before=before,
                limit=limit,
            )
            if not rows and after is None and before is None and not (yield Stmt(run, of_run)):
                raise NotFound("run", run_id)
            return rows

        rows = yield Read("reading run steps", steps)
        return page_of(rows, limit, before is not None and after is None, to_step)
