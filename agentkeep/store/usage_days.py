"""The daily usage table: LLM usage rows summed per tenant, UTC day and key.

``usage_days`` holds, per tenant, UTC day, provider, model, agent, user and
status, the calls, tokens by kind, the cost of the priced calls and the count
of the unpriced ones. It is derived from ``llm_usage`` and kept right in the
same transaction as whatever writes those rows:

- ``usage.record`` adds its call (:func:`add_calls`: one upsert per day row for all the
  calls of its transaction, made just before it commits);
- ``prices.recompute`` moves a repriced call's cost (:func:`repriced`);
- ``erase_user`` recomputes the days of the rows it scrubs (:func:`refresh`);
- a copy, import or restore recomputes what it wrote (:func:`refresh`,
  :func:`refresh_all`): the table is never exported, copied or dumped.

Revision 0012 fills it from the rows already there. Rollups of whole days
read it (see :mod:`agentkeep.store.usage`); only the partial days at the
edges of a window read usage rows.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from agentkeep.store.schema import llm_usage as u
from agentkeep.store.schema import usage_days as d

__all__ = [
    "DAY_MICROS",
    "add_calls",
    "day_label",
    "day_of",
    "day_sql",
    "day_sums",
    "days_where",
    "drift",
    "refresh",
    "refresh_all",
    "repriced",
    "upsert_sql",
]

DAY_MICROS = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEYS = ("provider", "model", "agent_id", "user_id", "status")
SUMS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "unpriced_calls",
)
_BATCH = 1000
_DAYS_PER_READ = 200


def day_of(micros: int) -> int:
    """The UTC day (days since 1970-01-01) of a time in microseconds."""
    return micros // DAY_MICROS


def day_label(day: int) -> str:
    """A day number (:func:`day_of`) as its UTC date, ``YYYY-MM-DD``."""
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")


def day_sql(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """:func:`day_of` in SQL, the same on SQLite and PostgreSQL (their ``/`` truncates)."""
    per_day = sa.literal(DAY_MICROS, sa.BigInteger())
    return sa.case(
        (column >= 0, column // per_day),
        else_=(column - sa.literal(DAY_MICROS - 1, sa.BigInteger())) // per_day,
    )


def key_hash(row: Mapping[Any, Any]) -> str:
    """The key of a row's group: its provider, model, agent, user and status (None apart from '')."""
    key = json.dumps([row[k] for k in KEYS], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@functools.cache
def upsert_sql(dialect_name: str, prefix: str = "") -> Any:
    """The upsert of a group's row, built once per dialect: its values come as parameters
    (a row of :func:`day_sums`, each name after ``prefix``)."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    stmt = insert(d).values({c.name: sa.bindparam(prefix + c.name, type_=c.type) for c in d.c})
    return stmt.on_conflict_do_update(
        index_elements=[d.c.tenant_id, d.c.day, d.c.key_hash],
        set_={name: d.c[name] + stmt.excluded[name] for name in SUMS},
    )


def _upsert(conn: Connection, values: dict[str, Any]) -> None:
    """Insert a group's row, or add ``values``' sums to the row already there."""
    conn.execute(upsert_sql(conn.dialect.name), values)


def _group(row: Mapping[Any, Any]) -> dict[str, Any]:
    values = {k: row[k] for k in KEYS}
    values.update(
        tenant_id=row["tenant_id"], day=day_of(int(row["created_at"])), key_hash=key_hash(row)
    )
    return values


def day_sums(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The upserts (``upsert_sql``'s parameters) that add recorded usage rows (the values
    inserted into ``llm_usage``) to their days: one per group and day, in key order (two
    transactions adding to the same rows lock them in the same order, so they cannot
    deadlock)."""
    days: dict[tuple[str, int, str], dict[str, Any]] = {}
    for row in rows:
        cost = row["cost_nano_usd"]
        group = _group(row)
        key = (group["tenant_id"], group["day"], group["key_hash"])
        sums = days.get(key)
        if sums is None:
            sums = days[key] = {**group, **dict.fromkeys(SUMS, 0)}
        sums["calls"] += 1
        sums["input_tokens"] += row["input_tokens"]
        sums["output_tokens"] += row["output_tokens"]
        sums["cached_tokens"] += row["cached_tokens"]
        sums["reasoning_tokens"] += row["reasoning_tokens"]
        sums["cost_nano_usd"] += cost if cost is not None else 0
        sums["unpriced_calls"] += 1 if cost is None else 0
    return [days[key] for key in sorted(days)]


def add_calls(calls: Sequence[tuple[Connection, Mapping[str, Any]]]) -> None:
    """Add recorded usage rows to their days (:func:`day_sums`), for
    ``Core.gather_before_commit``: the calls of one transaction share its connection."""
    conn = calls[0][0]
    for sums in day_sums([row for _, row in calls]):
        _upsert(conn, sums)


def repriced(row: Mapping[Any, Any], new_cost: int | None) -> dict[str, Any] | None:
    """The parameters of :func:`upsert_sql` that move a usage row's cost in its day from
    ``row["cost_nano_usd"]`` to ``new_cost`` (None: nothing moves)."""
    old_cost = row["cost_nano_usd"]
    deltas = dict.fromkeys(SUMS, 0)
    deltas["cost_nano_usd"] = (new_cost or 0) - (old_cost or 0)
    deltas["unpriced_calls"] = (new_cost is None) - (old_cost is None)
    if deltas["cost_nano_usd"] or deltas["unpriced_calls"]:
        return {**_group(row), **deltas}
    return None


def _sums_sql() -> list[sa.ColumnElement[Any]]:
    f = sa.func
    return [
        f.count().label("calls"),
        f.sum(u.c.input_tokens).label("input_tokens"),
        f.sum(u.c.output_tokens).label("output_tokens"),
        f.sum(u.c.cached_tokens).label("cached_tokens"),
        f.sum(u.c.reasoning_tokens).label("reasoning_tokens"),
        f.coalesce(f.sum(u.c.cost_nano_usd), 0).label("cost_nano_usd"),
        f.sum(sa.case((u.c.cost_nano_usd.is_(None), 1), else_=0)).label("unpriced_calls"),
    ]


def _ranges(days: Collection[int]) -> Iterator[tuple[int, int]]:
    """Runs of consecutive days as ``[first, last + 1)``."""
    ordered = sorted(set(days))
    start = prev = None
    for day in ordered:
        if prev is not None and day == prev + 1:
            prev = day
            continue
        if start is not None and prev is not None:
            yield start, prev + 1
        start = prev = day
    if start is not None and prev is not None:
        yield start, prev + 1


def _groups(conn: Connection, where: list[sa.ColumnElement[bool]]) -> Iterator[dict[str, Any]]:
    """The usage rows ``where`` selects, summed per group and day: ``usage_days`` rows."""
    day = day_sql(u.c.created_at).label("day")
    keys = [u.c.tenant_id, day, *(u.c[k] for k in KEYS)]
    stmt = sa.select(*keys, *_sums_sql()).where(*where).group_by(*keys)
    for row in conn.execute(stmt).mappings():
        values = {k: row[k] for k in ("tenant_id", "day", *KEYS)}
        values.update({k: int(row[k] or 0) for k in SUMS}, key_hash=key_hash(row))
        yield values


def drift(conn: Connection, *, most: int = 20) -> tuple[int, list[str]]:
    """Where ``usage_days`` differs from the usage rows: how many groups, and ``most`` of them.

    Reads every usage row (an on-demand check: ``agentkeep doctor``). Each
    difference is named ``tenant day provider/model: what``.
    """
    stored: dict[tuple[str, int, str], dict[str, Any]] = {}
    for row in conn.execute(sa.select(d)).mappings():
        stored[(row["tenant_id"], int(row["day"]), row["key_hash"])] = dict(row)
    count = 0
    named: list[str] = []

    def note(group: Mapping[str, Any], what: str) -> None:
        nonlocal count
        count += 1
        if len(named) < most:
            label = f"{group['tenant_id']} {day_label(int(group['day']))} "
            named.append(label + f"{group['provider']}/{group['model']}: {what}")

    for group in _groups(conn, []):
        kept = stored.pop((group["tenant_id"], int(group["day"]), group["key_hash"]), None)
        if kept is None:
            note(group, "missing")
            continue
        off = [k for k in SUMS if int(kept[k] or 0) != group[k]]
        if off:
            note(group, ", ".join(f"{k} {kept[k]} (rows: {group[k]})" for k in off))
    for orphan in stored.values():
        note(orphan, "no usage rows")
    return count, named


def _insert_groups(conn: Connection, where: list[sa.ColumnElement[bool]]) -> None:
    """Sum the usage rows ``where`` selects per group and insert the groups."""
    batch: list[dict[str, Any]] = []
    for values in _groups(conn, where):
        batch.append(values)
        if len(batch) >= _BATCH:
            conn.execute(sa.insert(d), batch)
            batch = []
    if batch:
        conn.execute(sa.insert(d), batch)


def days_where(conn: Connection, where: list[sa.ColumnElement[bool]]) -> set[int]:
    """The UTC days of the usage rows ``where`` selects."""
    day = day_sql(u.c.created_at)
    return {int(r[0]) for r in conn.execute(sa.select(day).where(*where).distinct())}


def refresh(conn: Connection, tenant_id: str, days: Collection[int]) -> None:
    """Recompute ``days`` of ``tenant_id`` from its usage rows."""
    ranges = list(_ranges(days))
    for first in range(0, len(ranges), _DAYS_PER_READ):
        chunk = ranges[first : first + _DAYS_PER_READ]
        conn.execute(
            sa.delete(d).where(
                d.c.tenant_id == tenant_id, sa.or_(*(d.c.day.between(a, b - 1) for a, b in chunk))
            )
        )
        within = sa.or_(
            *(
                sa.and_(u.c.created_at >= a * DAY_MICROS, u.c.created_at < b * DAY_MICROS)
                for a, b in chunk
            )
        )
        _insert_groups(conn, [u.c.tenant_id == tenant_id, within])


def refresh_all(conn: Connection, tenants: Collection[str] | None = None) -> None:
    """Recompute every day of ``tenants`` (of every tenant when None) from the usage rows."""
    if tenants is None:
        conn.execute(sa.delete(d))
        _insert_groups(conn, [])
        return
    for tenant in sorted(set(tenants)):
        conn.execute(sa.delete(d).where(d.c.tenant_id == tenant))
        _insert_groups(conn, [u.c.tenant_id == tenant])
