"""Runs: the run state machine, usage counters and the work queue.

Status changes follow ``RUN_TRANSITIONS``; usage is added with atomic
``SET x = x + :d`` updates, so concurrent writers never lose a count. The
queue is the ``runs`` table itself: ``claim_next`` takes the oldest queued
run in one write transaction, with ``FOR UPDATE SKIP LOCKED`` where the
dialect has it, so each run is claimed by exactly one worker.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, InvalidTransition, NotFound
from agentkeep.ids import new_id
from agentkeep.models import (
    RUN_TRANSITIONS,
    TERMINAL_RUN_STATUSES,
    Page,
    Run,
)
from agentkeep.models.common import Order, check_metadata, to_micros, utcnow_micros
from agentkeep.store._base import Resource, Row, row_times
from agentkeep.store._listing import Filters, sort_key
from agentkeep.store._prices import check_cost, from_nano, to_nano
from agentkeep.store._run_checks import (
    check_choice,
    check_choices,
    check_count,
    check_error,
    check_json,
    check_ref,
    check_text,
)
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, op, operation, single
from agentkeep.store._validate import UNSET, check_object, check_tools, require_str
from agentkeep.store.message_sql import MessageSQL, const, dump_json
from agentkeep.store.schema import agents as at
from agentkeep.store.schema import runs as t

# JSON columns a new run starts without: SQL NULL, not JSON null.
_SQL_NULLS = ("last_error", "required_action")

__all__ = ["Runs"]

_CLAIMABLE = frozenset(s for s, targets in RUN_TRANSITIONS.items() if "in_progress" in targets)
_INTERRUPTED = ("in_progress", "cancelling")
INTERRUPTED_MESSAGE = "the run was interrupted: its worker stopped before it finished"


# A new run's progress, output, errors and usage: none yet.
_NOT_STARTED: dict[str, Any] = {
    "iterations": 0,
    "output": None,
    "last_error": None,
    "required_action": None,
    "input_tokens": 0,
    "output_tokens": 0,
    "cached_tokens": 0,
    "reasoning_tokens": 0,
    "cost_nano_usd": None,
}


def _agent_version(agent_version: Any) -> Any:
    """A given ``agent_version`` checked (a positive integer, or None); UNSET passes through."""
    if agent_version is UNSET or agent_version is None:
        return agent_version
    version = check_count(agent_version, "agent_version")
    if version < 1:
        raise InvalidInput("must be a positive integer", field="agent_version")
    return version


def _times(status: str, created_at: Any) -> dict[str, int | None]:
    """A new run's times: made at ``created_at`` (else now), started and finished as ``status`` says."""
    if created_at is not None and not isinstance(created_at, datetime):
        raise InvalidInput("must be a datetime", field="created_at")
    now = to_micros(created_at) if created_at is not None else utcnow_micros()
    return {
        "created_at": now,
        "updated_at": now,
        "started_at": None if status == "queued" else now,
        "finished_at": now if status in TERMINAL_RUN_STATUSES else None,
    }


_COUNTERS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "iterations")
_ADD_USAGE = (
    sa.update(t)
    .where(t.c.tenant_id == sa.bindparam("d_tenant"), t.c.id == sa.bindparam("d_id"))
    .values(
        {
            **{name: t.c[name] + sa.bindparam(f"d_{name}") for name in _COUNTERS},
            # None leaves the cost as it is (unknown stays unknown).
            "cost_nano_usd": sa.case(
                (
                    sa.bindparam("d_cost", type_=sa.BigInteger()).is_(None),
                    t.c.cost_nano_usd,
                ),
                else_=sa.func.coalesce(t.c.cost_nano_usd, 0)
                + sa.bindparam("d_cost", type_=sa.BigInteger()),
            ),
            "updated_at": sa.bindparam("d_now"),
        }
    )
    .returning(*t.c)
)
"""``Runs.add_usage``: built once (every streamed run's settle adds its usage)."""


def _status_in(statuses: Sequence[str]) -> sa.ColumnElement[bool]:
    """``runs.status IN (...)`` with the statuses written into the statement: a list bound
    as an expanding parameter makes SQLAlchemy render the statement again at every
    execution (and SQLite prepare it again), for the polls and claims of every worker."""
    return t.c.status.in_([const(s) for s in statuses])


@functools.cache
def _pick_statement(statuses: tuple[str, ...], of_tenant: bool, locked: bool) -> sa.Select[Any]:
    """The tenant and id of the oldest ``:p_limit`` runs in ``statuses`` (of tenant
    ``:p_tenant`` when ``of_tenant``); ``locked``: ``FOR UPDATE SKIP LOCKED``. Built once
    per shape (``Runs._pick``)."""
    pick = sa.select(t.c.tenant_id, t.c.id).where(_status_in(statuses))
    if of_tenant:
        pick = pick.where(t.c.tenant_id == sa.bindparam("p_tenant"))
    # OFFSET written in: SQLite's LIMIT would bind one the driver SQL is not given.
    pick = pick.order_by(t.c.created_at, t.c.id).limit(sa.bindparam("p_limit")).offset(const(0))
    return pick.with_for_update(skip_locked=True) if locked else pick


@functools.cache
def _claim_statement(statuses: tuple[str, ...]) -> sa.Update:
    """One claimed run (if in ``statuses``) moved to ``in_progress`` (``_claim``): built
    once per set of statuses, its values bound."""
    return (
        sa.update(t)
        .where(
            t.c.tenant_id == sa.bindparam("c_tenant"),
            t.c.id == sa.bindparam("c_id"),
            _status_in(statuses),
        )
        .values(
            status="in_progress",
            worker_id=sa.bindparam("c_worker"),
            required_action=sa.null(),
            started_at=sa.func.coalesce(
                t.c.started_at, sa.bindparam("c_now", type_=sa.BigInteger())
            ),
            updated_at=sa.bindparam("c_now", type_=sa.BigInteger()),
            version=t.c.version + 1,
        )
        .returning(*t.c)
    )


def _fail_statement(sql: MessageSQL, of_tenant: bool, of_worker: bool) -> sa.Update:
    """Interrupted runs failed (``Runs.fail_interrupted``): of tenant ``:f_tenant`` when
    ``of_tenant``, of worker ``:f_worker`` when ``of_worker``; ``:f_error`` the error's
    JSON, ``:f_now``. Returns them."""
    now = sa.bindparam("f_now", type_=sa.BigInteger())
    fail = sa.update(t).where(_status_in(_INTERRUPTED))
    if of_tenant:
        fail = fail.where(t.c.tenant_id == sa.bindparam("f_tenant"))
    if of_worker:
        fail = fail.where(t.c.worker_id == sa.bindparam("f_worker"))
    return fail.values(
        status=const("failed"),
        last_error=sql.json_param("f_error"),
        required_action=sa.null(),
        finished_at=now,
        updated_at=now,
        version=t.c.version + 1,
    ).returning(*t.c)


def _expired_statement(all_tenants: bool) -> sa.Select[Any]:
    """Runs in ``requires_action`` whose ``extra["expires_at"]`` is at most ``:x_cutoff``
    (of tenant ``:x_tenant`` unless ``all_tenants``), the oldest ``:x_limit``."""
    where = [
        t.c.status == const("requires_action"),
        t.c.extra["expires_at"].as_float() <= sa.bindparam("x_cutoff", type_=sa.Float()),
    ]
    if not all_tenants:
        where.append(t.c.tenant_id == sa.bindparam("x_tenant"))
    return (
        sa.select(*t.c)
        .where(*where)
        .order_by(t.c.created_at, t.c.id)
        .limit(sa.bindparam("x_limit"))
        .offset(const(0))
    )


_AGENT_VERSION = sa.select(at.c.version).where(
    at.c.tenant_id == sa.bindparam("v_tenant"), at.c.id == sa.bindparam("v_id")
)
"""The current version of an agent (``Runs.create`` records it on the run)."""


def _moved(row: Row, status: str, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` with what a move of the run ``row`` to ``status`` sets, if
    ``RUN_TRANSITIONS`` allows it: the times, the version up by one, ``required_action``
    cleared off ``requires_action``."""
    current = row["status"]
    if status not in RUN_TRANSITIONS[current]:
        raise InvalidTransition("run", row["id"], current, status)
    now = utcnow_micros()
    if status != "requires_action":
        changes["required_action"] = None
    if status == "in_progress" and row["started_at"] is None:
        changes["started_at"] = now
    if status in TERMINAL_RUN_STATUSES:
        changes["finished_at"] = now
    changes.update(status=status, version=row["version"] + 1, updated_at=now)
    return changes


def to_run(row: Row) -> Run:
    data = row_times(row, "created_at", "updated_at", "started_at", "finished_at")
    data["cost_usd"] = from_nano(data.pop("cost_nano_usd"))
    return Run.model_construct(**data)


class Runs(Resource):
    """``store.runs``: executions of agents, their status, usage and queue."""

    kind = "run"

    @op
    def create(
        self,
        agent_id: str,
        *,
        session_id: str | None = None,
        status: str = "queued",
        objective: str | None = None,
        instructions: str | None = None,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        id: str | None = None,
        created_at: datetime | None = None,
        agent_version: int | None = UNSET,
    ) -> Op[Run]:
        """Create a run (queued by default); ``agent_id`` is not checked, ``session_id`` is.

        A run created past ``queued`` gets ``started_at``; a terminal one also
        ``finished_at``. ``created_at`` is for imports of runs made elsewhere.
        ``agent_version`` records the version of the agent the run is made
        with (``agents.get(agent_id, version=run.agent_version)``); by default
        the agent's current version, read in the same write, or None when
        ``agent_id`` names no agent of this tenant. One write: the session's and the
        agent's reads, then the insert.
        """
        agent_version = _agent_version(agent_version)
        status = check_choice(status, RUN_TRANSITIONS, "status")
        times = _times(status, created_at)
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "id": require_str(id, "id", max_len=64) if id is not None else new_id("run"),
            "agent_id": require_str(agent_id, "agent_id"),
            "session_id": check_text(session_id, "session_id", 64),
            "status": status,
            "objective": check_text(objective, "objective", 256_000),
            "instructions": check_text(instructions, "instructions", 256_000),
            "model": check_text(model, "model", 256),
            "tools": check_json(check_tools(tools), "tools"),
            **_NOT_STARTED,
            "metadata": check_metadata(metadata),
            "extra": check_json(check_object(extra, "extra"), "extra"),
            "version": 1,
            "agent_version": agent_version,
            "worker_id": None,
            **times,
        }
        tenant, sql = self.tenant_id, self._core.message_sql
        session_id = values["session_id"]
        check_session = session_id is not None and not self._core.is_new_session(tenant, session_id)
        params = sql.insert_params(t, values)
        for name in _SQL_NULLS:  # none yet: SQL NULL, not JSON null
            params[name] = None

        def steps() -> Steps[None]:
            # In the run's write: SQLite's transaction; PostgreSQL's foreign key guards it.
            if check_session and not (
                yield Stmt(sql.session_exists, {"t": tenant, "s": session_id})
            ):
                raise NotFound("session", session_id)
            if agent_version is UNSET:
                found = yield Stmt(
                    sql.compiled(_AGENT_VERSION), {"v_tenant": tenant, "v_id": values["agent_id"]}
                )
                values["agent_version"] = params["agent_version"] = found[0][0] if found else None
            yield Stmt(sql.insert_row(t), params, COUNT)

        yield Write("creating a run", steps)
        return to_run(values)

    @op
    def get(self, run_id: str) -> Op[Run]:
        """A run by id; one statement, compiled once per dialect."""
        check_ref(run_id, "run_id")
        return to_run((yield from self._read_row(t, run_id, "reading a run")))

    @op
    def list(
        self,
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
        status: str | Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
        sort: Literal["id", "created_at"] = "id",
        offset: int = 0,
    ) -> Op[Page[Run]]:
        """Runs, newest first by default; ``status`` is one status or a list of them.

        ``sort="created_at"`` orders by creation time (ties by id), for runs
        whose ids were given by the caller and so do not sort by time.
        ``offset`` skips that many runs first (done by the database).
        """
        sort_column = sort_key(t, sort)
        where = Filters()
        refs = ((t.c.agent_id, agent_id), (t.c.session_id, session_id))
        where.equal(*((c, None if v is None else check_ref(v, c.name)) for c, v in refs))
        if status is not None:
            where.one_of(t.c.status, "status", check_choices(status, RUN_TRANSITIONS, "status"))
        where.between(t.c.created_at, created_after, created_before)
        return (
            yield from self._page_op(
                t,
                where,
                to_run,
                what="listing runs",
                limit=limit,
                after=after,
                before=before,
                order=order,
                sort=sort_column,
                offset=offset,
            )
        )

    @op
    def active_in_session(self, session_id: str, *, kind: str | None = None) -> Op[str | None]:
        """The id of a run of the session that is active (queued, in progress,
        requires_action or cancelling), or None.

        Raises ``NotFound`` if the session does not exist, or is not of
        ``kind`` when given. One read, for both questions, compiled once per
        dialect (``MessageSQL.active_run``): the service asks it on every
        message it adds to a thread.
        """
        check_ref(session_id, "session_id")
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[str | None]:
            return sql.active_run(tenant, session_id, kind)

        run_id: str | None = yield Read("reading a session's runs", steps)
        return run_id

    @op
    def in_session(self, run_id: str, session_id: str, *, kind: str | None = None) -> Op[Run]:
        """Run ``run_id`` of session ``session_id``, in one read.

        Raises ``NotFound`` for the session if it does not exist (or is not of
        ``kind`` when given), then for the run if the session has no such run:
        what the service answers a poll of ``/v1/threads/{thread_id}/runs/{run_id}``.
        """
        return to_run((yield from self._read_in_session(t, run_id, session_id, kind)))

    @op
    def update(
        self,
        run_id: str,
        *,
        expected_version: int | None = None,
        objective: str | None = UNSET,
        instructions: str | None = UNSET,
        model: str | None = UNSET,
        tools: builtins.list[dict[str, Any]] = UNSET,
        metadata: dict[str, str] = UNSET,
        extra: dict[str, Any] = UNSET,
        iterations: int = UNSET,
        output: str | None = UNSET,
    ) -> Op[Run]:
        """Change the given fields (never the status: see :meth:`transition`)."""
        check_ref(run_id, "run_id")
        changes: dict[str, Any] = {}
        if objective is not UNSET:
            changes["objective"] = check_text(objective, "objective", 256_000)
        if instructions is not UNSET:
            changes["instructions"] = check_text(instructions, "instructions", 256_000)
        if model is not UNSET:
            changes["model"] = check_text(model, "model", 256)
        if tools is not UNSET:
            changes["tools"] = check_json(check_tools(tools), "tools")
        if metadata is not UNSET:
            changes["metadata"] = check_metadata(metadata)
        if extra is not UNSET:
            changes["extra"] = check_json(check_object(extra, "extra"), "extra")
        if iterations is not UNSET:
            changes["iterations"] = check_count(iterations, "iterations")
        if output is not UNSET:
            changes["output"] = check_text(output, "output", 4_000_000)
        _check_version(expected_version)

        def decide(row: dict[str, Any]) -> dict[str, Any]:
            return {**changes, "version": row["version"] + 1, "updated_at": utcnow_micros()}

        run, _ = yield from self._change(run_id, "updating a run", expected_version, decide)
        return run

    @op
    def transition(
        self,
        run_id: str,
        status: str,
        *,
        expected_version: int | None = None,
        last_error: dict[str, Any] | str | None = UNSET,
        output: str | None = UNSET,
        required_action: dict[str, Any] | None = UNSET,
        extra: dict[str, Any] = UNSET,
    ) -> Op[Run]:
        """Move a run to ``status`` if ``RUN_TRANSITIONS`` allows it.

        Sets ``started_at`` on the first move to ``in_progress`` and
        ``finished_at`` on a terminal status; leaving ``requires_action``
        clears ``required_action``. ``extra`` replaces the run's extra fields
        in the same write (one read of the run and one update, where
        ``update`` then ``transition`` make two of each). Moving to the status
        the run already has changes nothing and returns the run.
        """
        check_ref(run_id, "run_id")
        status = check_choice(status, RUN_TRANSITIONS, "status")
        changes: dict[str, Any] = {}
        if last_error is not UNSET:
            changes["last_error"] = check_error(last_error)
        if output is not UNSET:
            changes["output"] = check_text(output, "output", 4_000_000)
        if required_action is not UNSET:
            if required_action is not None and status != "requires_action":
                raise InvalidInput(
                    "can only be set with status 'requires_action'", field="required_action"
                )
            changes["required_action"] = _check_action(required_action)
        if extra is not UNSET:
            changes["extra"] = check_json(check_object(extra, "extra"), "extra")
        _check_version(expected_version)

        def decide(row: dict[str, Any]) -> dict[str, Any] | None:
            return None if status == row["status"] else _moved(row, status, dict(changes))

        run, _ = yield from self._change(
            run_id, "changing a run's status", expected_version, decide
        )
        return run

    @op
    def end(
        self,
        run_id: str,
        status: str,
        *,
        last_error: dict[str, Any] | str | None = None,
        required_action: dict[str, Any] | None = None,
        add_extra: dict[str, Any] | None = None,
    ) -> Op[tuple[Run, bool]]:
        """End a turn of the run's worker at ``status``, in one locked read and one update.

        ``status`` is ``completed``, ``failed``, ``incomplete`` or
        ``requires_action``. A run being cancelled becomes ``cancelled`` instead of ``completed``,
        ``incomplete`` or ``requires_action`` (then ``required_action`` and
        ``add_extra`` are dropped). A run that has ended already, or is at ``status``
        already, is left as it is.
        ``last_error`` is kept with ``failed`` only, ``required_action`` with
        ``requires_action``; ``add_extra``'s keys are set in the run's ``extra``.
        Returns the run and whether this call moved it. One read and one update.
        """
        check_ref(run_id, "run_id")
        status = check_choice(status, RUN_TRANSITIONS, "status")
        action = _check_action(required_action)
        error = check_error(last_error) if last_error is not None else None
        extra = check_json(check_object(add_extra, "add_extra") or {}, "add_extra")

        def decide(row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] in TERMINAL_RUN_STATUSES or row["status"] == status:
                return None
            target, added = status, extra
            changes: dict[str, Any] = {}
            if row["status"] == "cancelling" and target in (
                "completed",
                "requires_action",
                "incomplete",
            ):
                target, added = "cancelled", {}
            elif target == "requires_action":
                changes["required_action"] = action
            if target == "failed" and error is not None:
                changes["last_error"] = error
            if added:
                changes["extra"] = {**(row["extra"] or {}), **added}
            return _moved(row, target, changes)

        return (yield from self._change(run_id, "ending a run's turn", None, decide))

    def _change(
        self,
        run_id: str,
        what: str,
        expected_version: int | None,
        decide: Callable[[dict[str, Any]], dict[str, Any] | None],
    ) -> Op[tuple[Run, bool]]:
        """Read the run, and write what ``decide(row)`` gives (None: nothing) only while the
        run is at the version read, else read it again (then ``Conflict`` if it is no longer
        at ``expected_version``): ``Resource._change_op``. The run as it ends up, and
        whether this wrote it."""

        def checked(row: dict[str, Any]) -> dict[str, Any] | None:
            self._check_version(row, expected_version)
            return decide(row)

        row, wrote = yield from self._change_op(
            t, run_id, "reading a run", what, checked, lambda row: {"version": row["version"]}
        )
        return to_run(row), wrote

    @op
    def add_usage(
        self,
        run_id: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cost_usd: Decimal | None = None,
        iterations: int = 0,
    ) -> Op[Run]:
        """Add to a run's token counters, cost and iterations, atomically.

        ``cost_usd=None`` leaves the cost as it is (None stays unknown); a
        known cost added to an unknown one becomes that cost. Counters do not
        change ``version``, so they never make an optimistic update conflict.
        """
        check_ref(run_id, "run_id")
        deltas = {
            "input_tokens": check_count(input_tokens, "input_tokens"),
            "output_tokens": check_count(output_tokens, "output_tokens"),
            "cached_tokens": check_count(cached_tokens, "cached_tokens"),
            "reasoning_tokens": check_count(reasoning_tokens, "reasoning_tokens"),
            "iterations": check_count(iterations, "iterations"),
        }
        cost = check_cost(cost_usd)
        params: dict[str, Any] = {f"d_{name}": delta for name, delta in deltas.items()}
        params.update(
            d_cost=None if cost is None else to_nano(cost),
            d_now=utcnow_micros(),
            d_tenant=self.tenant_id,
            d_id=run_id,
        )
        sql = self._core.message_sql
        add = sql.built_once(_ADD_USAGE).stmt(params)

        def steps() -> Steps[list[Any]]:
            rows: list[Any] = yield add
            if not rows:
                raise NotFound("run", run_id)
            return rows

        rows = yield Write("adding usage to a run", steps)
        return to_run(sql.named_row(t, rows[0]))

    @op
    def delete(self, run_id: str) -> Op[None]:
        """Delete a run with its steps, events and tool calls (one statement: the
        foreign keys' cascades)."""
        check_ref(run_id, "run_id")
        yield from self._delete_row(t, run_id, "deleting a run")

    @op
    def claim_next(
        self, worker_id: str, *, statuses: Sequence[str] = ("queued",)
    ) -> Op[Run | None]:
        """Take the oldest run of this tenant in ``statuses`` and move it to ``in_progress``.

        Atomic: concurrent workers (threads or processes) never claim the same
        run. Returns None when there is nothing to claim.
        """
        runs = yield from self._claim(worker_id, statuses, self.tenant_id, 1)
        return runs[0] if runs else None

    @op
    def claim_next_any_tenant(
        self, worker_id: str, *, statuses: Sequence[str] = ("queued",)
    ) -> Op[Run | None]:
        """:meth:`claim_next` across every tenant of the database (for the service's worker)."""
        runs = yield from self._claim(worker_id, statuses, None, 1)
        return runs[0] if runs else None

    @op
    def claim_many(
        self,
        worker_id: str,
        limit: int,
        *,
        statuses: Sequence[str] = ("queued",),
        all_tenants: bool = False,
    ) -> Op[builtins.list[Run]]:
        """Up to ``limit`` of the oldest claimable runs, oldest first, as :meth:`claim_next`
        takes one: in one transaction, never a run another worker claims.

        With ``all_tenants``, across every tenant of the database.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("must be an integer from 1 to 1000", field="limit")
        if not isinstance(all_tenants, bool):
            raise InvalidInput("must be a boolean", field="all_tenants")
        tenant = None if all_tenants else self.tenant_id
        return (yield from self._claim(worker_id, statuses, tenant, limit))

    @op
    def claimable(
        self, *, statuses: Sequence[str] = ("queued",), all_tenants: bool = False
    ) -> Op[bool]:
        """Whether a run of this tenant (``all_tenants``: of any) waits in ``statuses`` to be
        claimed. A read: a worker that asks before it opens the transaction of its claims
        takes no write lock while the queue is empty."""
        wanted = check_choices(statuses, _CLAIMABLE, "statuses")
        if not isinstance(all_tenants, bool):
            raise InvalidInput("must be a boolean", field="all_tenants")
        stmt, params = self._pick(wanted, None if all_tenants else self.tenant_id, 1, locked=False)
        found = yield Read(
            "looking for a run to claim",
            single(Stmt(self._core.message_sql.compiled(stmt), params)),
        )
        return bool(found)

    @op
    def fail_interrupted(
        self,
        *,
        worker_id: str | None = None,
        message: str = INTERRUPTED_MESSAGE,
        all_tenants: bool = False,
    ) -> Op[builtins.list[Run]]:
        """Mark runs left ``in_progress`` or ``cancelling`` as ``failed`` (start-up recovery).

        Only ``worker_id``'s runs when given (so one restarting worker leaves
        its live peers alone), else every such run. ``last_error`` gets code
        ``server_error`` and ``message``. With ``all_tenants``, every tenant's
        runs, not only this tenant's. One statement.
        """
        worker = check_text(worker_id, "worker_id", 128)
        text = require_str(message, "message", max_len=4096)
        if not isinstance(all_tenants, bool):
            raise InvalidInput("must be a boolean", field="all_tenants")
        sql = self._core.message_sql
        now = utcnow_micros()
        error = dump_json({"code": "server_error", "message": text})
        params = {"f_tenant": self.tenant_id, "f_worker": worker, "f_now": now, "f_error": error}
        shape = (not all_tenants, worker is not None)
        fail = sql.shaped(("runs.fail_interrupted", *shape), lambda: _fail_statement(sql, *shape))
        rows = yield Write("failing interrupted runs", single(fail.stmt(params)))
        runs = [to_run(sql.named_row(t, r)) for r in rows]
        runs.sort(key=lambda r: (r.created_at, r.id))
        return runs

    @op
    def past_expiry(
        self, *, now: datetime | None = None, all_tenants: bool = False, limit: int = 100
    ) -> Op[builtins.list[Run]]:
        """Runs in ``requires_action`` whose ``extra["expires_at"]`` (Unix seconds) has passed.

        Oldest first, at most ``limit``; with ``all_tenants``, every tenant's. The
        service expires them (:func:`agentkeep.runner.ops.expire_run`).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("must be an integer from 1 to 1000", field="limit")
        if not isinstance(all_tenants, bool):
            raise InvalidInput("must be a boolean", field="all_tenants")
        if now is not None and not isinstance(now, datetime):
            raise InvalidInput("must be a datetime", field="now")
        micros = to_micros(now) if now is not None else None
        cutoff = (micros if micros is not None else utcnow_micros()) / 1_000_000
        sql = self._core.message_sql
        read = sql.shaped(
            ("runs.past_expiry", all_tenants), lambda: _expired_statement(all_tenants)
        )
        params = {"x_cutoff": cutoff, "x_tenant": self.tenant_id, "x_limit": limit}
        rows = yield Read("looking for runs past their expiry", single(read.stmt(params)))
        return [to_run(sql.named_row(t, r)) for r in rows]

    # -- internals ------------------------------------------------------------------

    def _claim(
        self, worker_id: str, statuses: Sequence[str], tenant_id: str | None, limit: int
    ) -> Op[builtins.list[Run]]:
        """The claims, one write: the oldest ``limit`` runs picked (``FOR UPDATE SKIP LOCKED``
        on PostgreSQL: never one another claim holds), each moved to ``in_progress``."""
        worker = require_str(worker_id, "worker_id", max_len=128)
        wanted = check_choices(statuses, _CLAIMABLE, "statuses")
        # Idle polling never takes the write lock; inside a transaction the caller chose to
        # write already.
        if not self._core.in_transaction() and not (
            yield from operation(self.claimable, statuses=wanted, all_tenants=tenant_id is None)
        ):
            return []
        sql = self._core.message_sql
        stmt, params = self._pick(wanted, tenant_id, limit, locked=self._core.dialect.skip_locked)
        claim = sql.built_once(_claim_statement(tuple(wanted)))

        def steps() -> Steps[builtins.list[Run]]:
            found = yield Stmt(sql.compiled(stmt), params)
            now = utcnow_micros()
            claimed = []
            for tenant, ident in found:
                values = {"c_tenant": tenant, "c_id": ident, "c_worker": worker, "c_now": now}
                rows = yield claim.stmt(values)
                if rows:
                    claimed.append(to_run(sql.named_row(t, rows[0])))
            return claimed

        runs: builtins.list[Run] = yield Write("claiming a run", steps, atomic=True)
        return runs

    @staticmethod
    def _pick(
        statuses: builtins.list[str], tenant_id: str | None, limit: int, *, locked: bool
    ) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The statement and parameters that read (tenant, id) of the oldest ``limit`` runs
        in ``statuses`` (of ``tenant_id``; None: of any tenant); ``locked``: skipping and
        locking rows other claims hold. The statement every worker's poll sends: built
        once per shape, to be run compiled once (the claims' and ``claimable``'s reads)."""
        params: dict[str, Any] = {"p_limit": limit}
        if tenant_id is not None:
            params["p_tenant"] = tenant_id
        return _pick_statement(tuple(statuses), tenant_id is not None, locked), params


def _check_action(required_action: Any) -> Any:
    """A run's ``required_action``: an object, or None (an empty one is None)."""
    return check_json(check_object(required_action, "required_action") or None, "required_action")


def _check_version(expected_version: Any) -> None:
    if expected_version is not None and (
        isinstance(expected_version, bool) or not isinstance(expected_version, int)
    ):
        raise InvalidInput("must be an integer", field="expected_version")
