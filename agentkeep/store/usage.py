"""LLM usage: one row per LLM call, its cost, listings and rollups.

Usage rows refer to agents, sessions and runs softly (no foreign keys): they
outlive what they refer to, for cost accounting. Costs are integer
nano-dollars in the database and ``Decimal | None`` in models (``None`` =
unknown, never zero); see :mod:`agentkeep.store._prices`.

Rollup semantics: each group sums its calls exactly. ``cost_usd`` is the sum
over the group's priced calls and ``unpriced_calls`` counts the calls whose
cost is unknown; ``cost_usd`` is ``None`` only when every call of the group is
unpriced (a partly priced group's cost is a lower bound, flagged by
``unpriced_calls > 0``). ``rollups`` gives several rollups from one read
(grouped by all their keys at once, then summed per key); ``latency`` gives
the latency percentiles of the calls the same filters select.

Rollups read the window's whole UTC days from the daily table (see
:mod:`agentkeep.store.usage_days`) and only its partial days at the edges from
the rows; a ``session_id`` or ``run_id`` filter (not kept per day) reads the
rows. Either way the sums are those of the rows.
"""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.ids import new_id
from agentkeep.models import LLMUsage, Page, UsageRollup
from agentkeep.models.common import Order, check_metadata, to_micros, utcnow_micros
from agentkeep.store import usage_days
from agentkeep.store._base import Resource, row_times
from agentkeep.store._listing import Filters
from agentkeep.store._prices import check_cost, from_nano, to_nano
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store._validate import check_object, opt_text, require_str
from agentkeep.store.message_sql import named
from agentkeep.store.prices import price_from, stored_price
from agentkeep.store.schema import llm_usage as t
from agentkeep.store.schema import usage_days as usage_days_t
from agentkeep.store.stats import percentiles
from agentkeep.store.usage_days import day_sql

__all__ = ["ROLLUP_KEYS", "Usage"]

RollupKey = Literal["day", "model", "agent", "user", "provider"]
ROLLUP_KEYS: tuple[str, ...] = ("day", "model", "agent", "user", "provider")
_STATUSES = ("success", "error")
_MAX_COUNT = 2**62


_KEY_COLUMNS = {"model": "model", "agent": "agent_id", "user": "user_id", "provider": "provider"}
# The filters the daily table can answer (it has no session or run).
_DAILY_FILTERS = frozenset(("agent_id", "user_id", "provider", "model", "status"))


def _rollup_key(by: str, label: str = "key", table: sa.Table = t) -> sa.ColumnElement[Any]:
    """The column a rollup groups by in ``table`` (usage rows or usage_days), labelled ``label``."""
    if by != "day":
        return table.c[_KEY_COLUMNS[by]].label(label)
    if table is usage_days_t:
        return usage_days_t.c.day.label(label)
    return day_sql(t.c.created_at).label(label)


def _sums() -> list[sa.ColumnElement[Any]]:
    """The sums of a rollup group of usage rows (the row fields of :func:`_to_rollup` but ``key``)."""
    f = sa.func
    return [
        f.count().label("calls"),
        f.sum(sa.case((t.c.status == "error", 1), else_=0)).label("error_calls"),
        f.sum(t.c.input_tokens).label("input_tokens"),
        f.sum(t.c.output_tokens).label("output_tokens"),
        f.sum(t.c.cached_tokens).label("cached_tokens"),
        f.sum(t.c.reasoning_tokens).label("reasoning_tokens"),
        f.sum(t.c.cost_nano_usd).label("cost_nano_usd"),
        f.sum(sa.case((t.c.cost_nano_usd.is_(None), 1), else_=0)).label("unpriced_calls"),
    ]


def _daily_sums() -> list[sa.ColumnElement[Any]]:
    """:func:`_sums` of the same calls, from their groups in usage_days."""
    f, d = sa.func, usage_days_t.c
    return [
        f.sum(d.calls).label("calls"),
        f.sum(sa.case((d.status == "error", d.calls), else_=0)).label("error_calls"),
        f.sum(d.input_tokens).label("input_tokens"),
        f.sum(d.output_tokens).label("output_tokens"),
        f.sum(d.cached_tokens).label("cached_tokens"),
        f.sum(d.reasoning_tokens).label("reasoning_tokens"),
        f.sum(d.cost_nano_usd).label("cost_nano_usd"),
        f.sum(d.unpriced_calls).label("unpriced_calls"),
    ]


_SUMMED = (
    "calls",
    "error_calls",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "unpriced_calls",
)


def _merge(rows: Sequence[Mapping[Any, Any]], by: str) -> builtins.list[UsageRollup]:
    """Rows grouped by several keys (and read from both tables), summed again per ``k_<by>``."""
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        raw = row[f"k_{by}"]
        group = groups.get(raw)
        if group is None:
            group = groups[raw] = {"key": raw, "cost_nano_usd": None, **dict.fromkeys(_SUMMED, 0)}
        for name in _SUMMED:
            group[name] += int(row[name] or 0)
        # A row's cost counts when it has a priced call (None or 0 otherwise): a group
        # stays unpriced (None, never $0) while none of its calls is priced.
        if int(row["calls"] or 0) > int(row["unpriced_calls"] or 0):
            group["cost_nano_usd"] = (group["cost_nano_usd"] or 0) + int(row["cost_nano_usd"] or 0)
    return _sorted([_to_rollup(g, by) for g in groups.values()])


def _sorted(rollups: builtins.list[UsageRollup]) -> builtins.list[UsageRollup]:
    rollups.sort(key=lambda r: (r.key is None, r.key or ""))
    return rollups


def _to_rollup(row: Mapping[Any, Any], by: str) -> UsageRollup:
    raw = row["key"]
    if raw is None:
        label = None
    elif by == "day":
        label = usage_days.day_label(int(raw))
    else:
        label = str(raw)
    cost = row["cost_nano_usd"]
    return UsageRollup(
        key=label,
        calls=int(row["calls"]),
        error_calls=int(row["error_calls"] or 0),
        input_tokens=int(row["input_tokens"] or 0),
        output_tokens=int(row["output_tokens"] or 0),
        cached_tokens=int(row["cached_tokens"] or 0),
        reasoning_tokens=int(row["reasoning_tokens"] or 0),
        cost_usd=from_nano(int(cost) if cost is not None else None),
        unpriced_calls=int(row["unpriced_calls"] or 0),
    )


def _check_tokens(values: dict[str, Any]) -> None:
    """Cached tokens are counted in the input, reasoning tokens in the output."""
    if values["cached_tokens"] > values["input_tokens"]:
        raise InvalidInput(
            "cannot exceed input_tokens (input_tokens counts cached tokens too)",
            field="cached_tokens",
        )
    if values["reasoning_tokens"] > values["output_tokens"]:
        raise InvalidInput(
            "cannot exceed output_tokens (output_tokens counts reasoning tokens too)",
            field="reasoning_tokens",
        )


def to_usage(row: Mapping[str, Any]) -> LLMUsage:
    data = row_times(row, "created_at")
    data["cost_usd"] = from_nano(data.pop("cost_nano_usd"))
    return LLMUsage.model_construct(**data)


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > _MAX_COUNT:
        raise InvalidInput("must be a non-negative integer", field=field)
    return value


def _opt_count(value: Any, field: str) -> int | None:
    return None if value is None else _count(value, field)


def _json_object(value: Any, field: str) -> dict[str, Any]:
    out = check_object(value, field)
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"must be JSON-serializable ({exc})", field=field) from None
    return out


def _refs(
    agent_id: str | None, session_id: str | None, run_id: str | None, user_id: str | None
) -> dict[str, str | None]:
    """What a call belongs to (soft references, not checked against their tables)."""
    return {
        "agent_id": opt_text(agent_id, "agent_id", 256),
        "session_id": opt_text(session_id, "session_id", 64),
        "run_id": opt_text(run_id, "run_id", 64),
        "user_id": opt_text(user_id, "user_id", 256),
    }


def _counts(
    input_tokens: Any,
    output_tokens: Any,
    cached_tokens: Any,
    reasoning_tokens: Any,
    latency_ms: Any,
) -> dict[str, int | None]:
    return {
        "input_tokens": _count(input_tokens, "input_tokens"),
        "output_tokens": _count(output_tokens, "output_tokens"),
        "cached_tokens": _count(cached_tokens, "cached_tokens"),
        "reasoning_tokens": _count(reasoning_tokens, "reasoning_tokens"),
        "latency_ms": _opt_count(latency_ms, "latency_ms"),
    }


def _status(status: str) -> str:
    if status not in _STATUSES:
        raise InvalidInput("must be 'success' or 'error'", field="status")
    return status


def _created_at(created_at: Any) -> int:
    """The call's time in microseconds: the one given, else now."""
    if created_at is not None and not isinstance(created_at, datetime):
        raise InvalidInput("must be a datetime", field="created_at")
    given_at = to_micros(created_at)
    return given_at if given_at is not None else utcnow_micros()


class Usage(Resource):
    """``store.usage``: the LLM calls of this tenant, with tokens, latency and cost."""

    kind = "usage"

    @op
    def record(
        self,
        *,
        provider: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        latency_ms: int | None = None,
        status: str = "success",
        error_message: str | None = None,
        prompt: str | None = None,
        response: str | None = None,
        input_params: dict[str, Any] | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        user_id: str | None = None,
        cost_usd: Decimal | None = None,
        metadata: dict[str, str] | None = None,
        id: str | None = None,
        created_at: datetime | None = None,
    ) -> Op[LLMUsage]:
        """Record one LLM call.

        Token counts follow OpenAI: ``input_tokens`` includes ``cached_tokens``
        and ``output_tokens`` includes ``reasoning_tokens``. A given
        ``cost_usd`` is stored as is (``cost_source="caller"``); otherwise the
        cost comes from the user's prices (``store.prices``, then the
        ``AGENTKEEP_PRICES`` file: ``"user"``), else the maintained price
        table for ``provider`` and ``model`` (``"price_table"``), each with
        ``price_version``, or stays ``None`` when no table knows them.

        An operation: on the store's own connections, the call and its day's totals are
        one write (one statement on PostgreSQL); inside ``store.transaction()`` the day's
        totals are added at its commit, once for all the calls it records.
        """
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "id": require_str(id, "id", max_len=64) if id is not None else new_id("usage"),
            **_refs(agent_id, session_id, run_id, user_id),
            "provider": require_str(provider, "provider", max_len=128),
            "model": require_str(model, "model", max_len=256),
            "prompt": opt_text(prompt, "prompt", 10_000_000),
            "response": opt_text(response, "response", 10_000_000),
            "input_params": _json_object(input_params, "input_params"),
            **_counts(input_tokens, output_tokens, cached_tokens, reasoning_tokens, latency_ms),
            "error_message": opt_text(error_message, "error_message", 100_000),
            "metadata": check_metadata(metadata),
            "status": _status(status),
        }
        _check_tokens(values)
        values["prompt_length"] = len(prompt) if prompt is not None else None
        values["response_length"] = len(response) if response is not None else None
        values["created_at"] = _created_at(created_at)
        given = check_cost(cost_usd)
        if given is not None:
            values.update(cost_nano_usd=to_nano(given), cost_source="caller", price_version=None)
        else:
            price = yield from self._stored_price(values["provider"], values["model"])
            values.update(price_from(price, self._core.price_file, values))
        sql = self._core.message_sql
        if self._core.in_transaction():
            insert = Stmt(sql.insert_row(t), sql.insert_params(t, values), COUNT)
            yield Write("recording LLM usage", single(insert))
            # The day's totals are a row every call of the group shares: added last, so
            # its lock is held for the commit only (concurrent runs do not queue on it),
            # and once for all the calls the transaction records.
            conn = self._core.connection()
            assert conn is not None
            self._core.gather_before_commit(usage_days.add_calls, (conn, values))
        else:  # the call and its day's totals in one write (one statement on PostgreSQL)
            yield Write("recording LLM usage", self._record_steps(values))
        return to_usage(values)

    def _stored_price(self, provider: str, model: str) -> Op[Any]:
        """The user's stored price of the call's model (None: none), read once per write of
        a transaction (``Core.known_prices``)."""
        known = self._core.known_prices()
        key = (self.tenant_id, provider, model)
        if known is not None and key in known:
            return known[key]
        sql = self._core.message_sql
        read = functools.partial(stored_price, sql, self.tenant_id, provider, model)
        row = yield Read("reading a price", read)
        if known is not None:
            known[key] = row
        return row

    def _record_steps(self, values: dict[str, Any]) -> Callable[[], Steps[None]]:
        """The statements that store a usage row and add it to its day's totals."""
        sql = self._core.message_sql
        (day,) = usage_days.day_sums([values])
        call = sql.insert_params(t, values)
        if self._core.dialect.name == "postgresql":
            both = sql.shaped(
                ("usage_record",),
                lambda: usage_days.upsert_sql("postgresql", "d_").add_cte(
                    sql.insert_of(t).cte("call")
                ),
            ).stmt({**call, **{f"d_{k}": v for k, v in day.items()}}, COUNT)
            return single(both)
        insert = Stmt(sql.insert_row(t), call, COUNT)
        upsert = Stmt(sql.compiled(usage_days.upsert_sql(self._core.dialect.name)), day, COUNT)

        def steps() -> Steps[None]:
            yield insert
            yield upsert

        return steps

    @op
    def get(self, usage_id: str) -> Op[LLMUsage]:
        """A usage row by id; one statement, compiled once per dialect."""
        return to_usage((yield from self._read_row(t, usage_id, "reading usage")))

    def _where(
        self,
        *,
        agent_id: str | None,
        session_id: str | None,
        run_id: str | None,
        user_id: str | None,
        provider: str | None,
        model: str | None,
        status: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
    ) -> Filters:
        where = Filters()
        where.equal(
            (t.c.agent_id, agent_id),
            (t.c.session_id, session_id),
            (t.c.run_id, run_id),
            (t.c.user_id, user_id),
            (t.c.provider, provider),
            (t.c.model, model),
        )
        if status is not None:
            if status not in _STATUSES:
                raise InvalidInput("must be 'success' or 'error'", field="status")
            where.add(t.c.status.__eq__, {"status": status})
        where.between(t.c.created_at, created_after, created_before)
        return where

    @op
    def list(
        self,
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        user_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
    ) -> Op[Page[LLMUsage]]:
        """Usage rows, newest first by default (in id order, which is recording order)."""
        where = self._where(
            agent_id=agent_id,
            session_id=session_id,
            run_id=run_id,
            user_id=user_id,
            provider=provider,
            model=model,
            status=status,
            created_after=created_after,
            created_before=created_before,
        )
        return (
            yield from self._page_op(
                t,
                where,
                to_usage,
                what="listing usage",
                limit=limit,
                after=after,
                before=before,
                order=order,
            )
        )

    @op
    def rollup(
        self,
        by: RollupKey,
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        user_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Op[builtins.list[UsageRollup]]:
        """Usage summed per day (UTC, ``YYYY-MM-DD``), model, agent, user or provider.

        Groups come in ascending key order, the group of rows without a key
        (``key=None``) last. See the module docstring for how costs sum.
        """
        if by not in ROLLUP_KEYS:
            raise InvalidInput(f"must be one of {', '.join(ROLLUP_KEYS)}", field="by")
        filters = {
            "agent_id": agent_id,
            "session_id": session_id,
            "run_id": run_id,
            "user_id": user_id,
            "provider": provider,
            "model": model,
            "status": status,
        }
        return (yield from self._grouped([by], filters, created_after, created_before))[by]

    @op
    def rollups(
        self,
        by: Sequence[RollupKey],
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        user_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Op[dict[str, builtins.list[UsageRollup]]]:
        """``{key: rollup(key, ...)}`` for each key of ``by``, from one read of the rows.

        The rows are grouped by all the keys at once and summed per key here:
        one scan instead of one per key (the dashboard's four charts). Each
        list equals what :meth:`rollup` returns for its key.
        """
        keys = list(dict.fromkeys(by))
        if not keys or isinstance(by, str) or any(k not in ROLLUP_KEYS for k in keys):
            raise InvalidInput(
                f"must be a list of one or more of {', '.join(ROLLUP_KEYS)}", field="by"
            )
        filters = {
            "agent_id": agent_id,
            "session_id": session_id,
            "run_id": run_id,
            "user_id": user_id,
            "provider": provider,
            "model": model,
            "status": status,
        }
        return (yield from self._grouped(keys, filters, created_after, created_before))

    def _grouped(
        self,
        keys: Sequence[str],
        filters: dict[str, str | None],
        created_after: datetime | None,
        created_before: datetime | None,
    ) -> Op[dict[str, builtins.list[UsageRollup]]]:
        """Each key's rollup: whole days from usage_days, the partial days' edges from rows.

        With a session or run filter (which usage_days does not keep) every
        call comes from the usage rows. One read.
        """
        where = self._where(**filters, created_after=None, created_before=None).bound()
        for name, value in (("created_after", created_after), ("created_before", created_before)):
            if value is not None and not isinstance(value, datetime):
                raise InvalidInput("must be a datetime", field=name)
        after, before = to_micros(created_after), to_micros(created_before)
        daily = all(v is None for k, v in filters.items() if k not in _DAILY_FILTERS)
        first = None if after is None else -(-after // usage_days.DAY_MICROS)  # the first whole day
        end = None if before is None else before // usage_days.DAY_MICROS  # the day after the last
        if first is not None and end is not None and first >= end:
            daily = False  # no whole day in the window

        def steps() -> Steps[builtins.list[dict[str, Any]]]:
            if not daily:
                return (yield from self._rows(keys, where, [(after, before)]))
            edges: builtins.list[tuple[int | None, int | None]] = []
            if after is not None and first is not None and after < first * usage_days.DAY_MICROS:
                edges.append((after, first * usage_days.DAY_MICROS))
            if before is not None and end is not None and end * usage_days.DAY_MICROS < before:
                edges.append((end * usage_days.DAY_MICROS, before))
            rows = yield from self._from_days(keys, filters, first, end)
            return rows + (yield from self._rows(keys, where, edges))

        rows = yield Read("summing usage", steps)
        return {k: _merge(rows, k) for k in keys}

    def _rows(
        self,
        keys: Sequence[str],
        where: builtins.list[sa.ColumnElement[bool]],
        spans: Sequence[tuple[int | None, int | None]],
    ) -> Steps[builtins.list[dict[str, Any]]]:
        """Usage rows in each ``[start, end)`` of micros (None: open), grouped by every key."""
        sql = self._core.message_sql
        columns = [_rollup_key(k, f"k_{k}") for k in keys]
        rows: builtins.list[dict[str, Any]] = []
        for start, end in spans:
            span = [] if start is None else [t.c.created_at >= start]
            span += [] if end is None else [t.c.created_at < end]
            stmt = (
                sa.select(*columns, *_sums())
                .where(t.c.tenant_id == self.tenant_id, *where, *span)
                .group_by(*columns)
            )
            rows += named(stmt, (yield sql.adhoc(stmt)))
        return rows

    def _from_days(
        self,
        keys: Sequence[str],
        filters: dict[str, str | None],
        first: int | None,
        end: int | None,
    ) -> Steps[builtins.list[dict[str, Any]]]:
        """The groups of usage_days in the days ``[first, end)`` (None: open), grouped by every key."""
        d = usage_days_t
        where = [d.c.tenant_id == self.tenant_id]
        where += [d.c[k] == v for k, v in filters.items() if v is not None]
        where += [] if first is None else [d.c.day >= first]
        where += [] if end is None else [d.c.day < end]
        columns = [_rollup_key(k, f"k_{k}", d) for k in keys]
        stmt = sa.select(*columns, *_daily_sums()).where(*where).group_by(*columns)
        return named(stmt, (yield self._core.message_sql.adhoc(stmt)))

    @op
    def latency(
        self,
        *,
        agent_id: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        user_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Op[dict[str, float | None]]:
        """Latency percentiles in ms (p50, p75, p90, p95, p99) of the calls the filters select.

        Over the calls that reported a latency, interpolated as ``store.stats``
        does (``percentile_cont``); each ``None`` when there is none.
        """
        where = self._where(
            agent_id=agent_id,
            session_id=session_id,
            run_id=run_id,
            user_id=user_id,
            provider=provider,
            model=model,
            status=status,
            created_after=created_after,
            created_before=created_before,
        ).bound()
        sql, column = self._core.message_sql, t.c.latency_ms
        mine = [t.c.tenant_id == self.tenant_id, *where]
        found: dict[str, float | None] = yield Read(
            "computing latency percentiles", lambda: percentiles(sql, column, mine)
        )
        return found
