"""Shared SQL helpers for the entity stores: rows to models, pages, filters."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.models.common import Order, Page, check_limit, from_micros, to_micros, utcnow_micros
from agentkeep.store._listing import Filters, Listing, cursor_row
from agentkeep.store._run_checks import check_ref
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, single
from agentkeep.store.message_sql import columns_of, dump_json

if TYPE_CHECKING:
    from agentkeep.store._core import Core

__all__ = [
    "Resource",
    "Row",
    "json_texts",
    "keys_in",
    "page_of",
    "row_by_id",
    "row_times",
    "time_range",
]

Row = Mapping[Any, Any]
"""A result row as a mapping (``conn.execute(...).mappings()``)."""

T = TypeVar("T")


def keys_in(
    columns: Sequence[sa.ColumnElement[Any]], keys: Sequence[Sequence[Any]]
) -> sa.ColumnElement[bool]:
    """The rows whose ``columns`` hold one of ``keys``, found by an index on the columns.

    ``(a, b) IN (VALUES ...)`` reads the whole table on SQLite (its planner does
    not search an index with a row-value list), so a batch of lookups cost as
    much as the table was large. Here: for each distinct value of the leading
    columns, the last column ``IN`` its values (SQLite: one index search per
    group, OR-ed; PostgreSQL alike).
    """
    *lead, last = columns
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for key in keys:
        groups.setdefault(tuple(key[:-1]), []).append(key[-1])
    terms = [
        sa.and_(*(c == v for c, v in zip(lead, head, strict=True)), last.in_(tails))
        for head, tails in groups.items()
    ]
    if not terms:
        return sa.false()
    return terms[0] if len(terms) == 1 else sa.or_(*terms)


def json_texts(table: sa.Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (columns of ``table`` by name) with its JSON columns as their text
    (:func:`dump_json`, as a ``MessageSQL.json_param`` takes them), None as SQL NULL: a
    nullable JSON column left empty must be NULL for ``IS NULL`` filters, not JSON null."""
    json_names = columns_of(table)[1]
    return {n: dump_json(v) if n in json_names and v is not None else v for n, v in values.items()}


def row_times(row: Row, *names: str) -> dict[str, Any]:
    """A row as a dict, with the named microsecond columns as datetimes."""
    data = dict(row)
    for name in names:
        data[name] = from_micros(data[name])
    return data


def time_range(
    column: sa.ColumnElement[Any], after: datetime | None, before: datetime | None
) -> list[sa.ColumnElement[bool]]:
    """Conditions for ``after <= column < before`` on a microsecond column."""
    out: list[sa.ColumnElement[bool]] = []
    if after is not None:
        out.append(column >= to_micros(after))
    if before is not None:
        out.append(column < to_micros(before))
    return out


def page_of(
    found: Sequence[Row], limit: int, reverse: bool, to_model: Callable[[Row], T]
) -> Page[T]:
    """The page of a listing's ``rows`` (``limit + 1`` read: one more means more), put back
    in the listing's order if they were read in ``reverse``."""
    has_more = len(found) > limit
    rows = list(found[:limit])
    if reverse:
        rows.reverse()
    return Page(
        items=[to_model(r) for r in rows],
        has_more=has_more,
        first_id=rows[0]["id"] if rows else None,
        last_id=rows[-1]["id"] if rows else None,
    )


def check_page(limit: int, offset: int, order: str) -> None:
    check_limit(limit)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("must be a non-negative integer", field="offset")
    if order not in ("asc", "desc"):
        raise InvalidInput("must be 'asc' or 'desc'", field="order")


@functools.cache
def row_by_id(table: sa.Table, for_update: bool) -> sa.Select[Any]:
    """A row of ``table`` by tenant and id, built once per table (values bound at each call)."""
    stmt = sa.select(table).where(
        table.c.tenant_id == sa.bindparam("tenant_id"), table.c.id == sa.bindparam("id")
    )
    if for_update:
        # FOR NO KEY UPDATE: foreign-key checks of rows that point here
        # (FOR KEY SHARE) do not wait for us, so appending an event or a
        # message never deadlocks with a status change of its parent.
        stmt = stmt.with_for_update(key_share=True)
    return stmt


@functools.cache
def _delete_by_id(table: sa.Table, of_kind: bool = False) -> sa.Delete:
    """A DELETE of a row of ``table`` by tenant and id (and ``kind``, a parameter too, with
    ``of_kind``), built once per table."""
    stmt = sa.delete(table).where(
        table.c.tenant_id == sa.bindparam("tenant_id"), table.c.id == sa.bindparam("id")
    )
    return stmt.where(table.c.kind == sa.bindparam("kind")) if of_kind else stmt


@functools.cache
def _copy_of(table: sa.Table, keep: sa.Table, dialect: Any) -> Any:
    """An INSERT into ``keep`` of row ``:u_id`` of ``table`` at version ``:m_version``,
    nothing if ``keep`` has that version already (its content is the same)."""
    columns = [c.name for c in table.c]
    row = sa.select(table).where(
        table.c.tenant_id == sa.bindparam("u_tenant"),
        table.c.id == sa.bindparam("u_id"),
        table.c.version == sa.bindparam("m_version", type_=table.c.version.type),
    )
    return dialect.insert(keep).from_select(columns, row).on_conflict_do_nothing()


@functools.cache
def _version_of(table: sa.Table) -> sa.Select[Any]:
    """A row's version (and kind, for a table with one) by tenant and id."""
    kind = [table.c.kind] if "kind" in table.c else []
    return sa.select(table.c.version, *kind).where(
        table.c.tenant_id == sa.bindparam("tenant_id"), table.c.id == sa.bindparam("id")
    )


class Resource:
    """Base of the entity stores: the core and the tenant they act for."""

    kind = "object"

    def __init__(self, core: Core, tenant_id: str) -> None:
        self._core = core
        self.tenant_id = tenant_id

    def _get_row(
        self, conn: Connection, table: sa.Table, ident: str, *, for_update: bool = False
    ) -> Row:
        stmt = row_by_id(table, for_update and self._core.dialect.skip_locked)
        row = conn.execute(stmt, {"tenant_id": self.tenant_id, "id": ident}).mappings().first()
        if row is None:
            raise NotFound(self.kind, ident)
        return row

    def _read_row(
        self, table: sa.Table, ident: str, what: str, *, lock: bool = False
    ) -> Op[dict[str, Any]]:
        """``_get_row`` as an operation: one statement, compiled once per dialect, the row's
        columns by name (JSON ones loaded); with ``lock``, a write that takes the row as
        ``_get_row(for_update=True)`` does. ``NotFound`` (of ``kind``) if there is none."""
        sql = self._core.message_sql
        stmt = sql.compiled(row_by_id(table, lock and self._core.dialect.skip_locked))
        params = {"tenant_id": self.tenant_id, "id": ident}

        def steps() -> Steps[list[Any]]:
            found: list[Any] = yield Stmt(stmt, params)
            if not found:  # in the read: counted as its error, as the other reads count it
                raise NotFound(self.kind, ident)
            return found

        found = yield (Write(what, steps) if lock else Read(what, steps))
        return sql.named_row(table, found[0])

    def _delete_row(
        self, table: sa.Table, ident: str, what: str, kind: str | None = None
    ) -> Op[None]:
        """Delete row ``ident`` of ``table`` (what points to it goes by its foreign keys'
        ``ON DELETE``) as an operation: one statement, compiled once per dialect.
        ``NotFound`` (of this resource's ``kind``) if there is none; with ``kind``, only
        a row of that ``kind`` column (else ``NotFound`` of that kind)."""
        stmt = self._core.message_sql.compiled(_delete_by_id(table, kind is not None))
        params = {"tenant_id": self.tenant_id, "id": ident, "kind": kind}

        def steps() -> Steps[None]:
            if not (yield Stmt(stmt, params, COUNT)):
                raise NotFound(kind or self.kind, ident)

        yield Write(what, steps, cascades=True)

    def _page_op(
        self,
        table: sa.Table,
        filters: Filters,
        to_model: Callable[[Row], T],
        *,
        what: str,
        limit: int,
        after: str | None,
        before: str | None,
        order: Order,
        sort: sa.Column[Any] | None = None,
        offset: int = 0,
    ) -> Op[Page[T]]:
        """One page of this tenant's rows of ``table`` in ``sort`` order (default: id), with
        id cursors, as an operation: one read, its statement compiled once per shape
        (filters set, sort, cursors).

        ``after`` continues past an id in the listing's order; ``before`` returns the page
        that comes just before an id. ``offset`` skips that many rows first, in the
        database (for APIs that page by offset, like curio's)."""
        check_page(limit, offset, order)
        sql = self._core.message_sql
        listing = Listing(table, sort, order, after, before, offset)
        page = sql.shaped(
            ("page", table.name, filters.shape(), listing.shape()),
            lambda: listing.select(filters.conditions()),
        ).stmt({**filters.params, **listing.params(self.tenant_id, limit)})
        check, tenant, cursors = sql.compiled(cursor_row(table)), self.tenant_id, listing.cursors()

        def steps() -> Steps[list[Any]]:
            for field, ident in cursors:
                if not (yield Stmt(check, {"tenant_id": tenant, "id": ident})):
                    raise listing.unknown(field, ident)
            rows: list[Any] = yield page
            return rows

        rows = yield Read(what, steps)
        return page_of([sql.named_row(table, r) for r in rows], limit, listing.reverse, to_model)

    def _session_page_op(
        self, session_id: str, page: Page[T], after: str | None, before: str | None
    ) -> Op[Page[T]]:
        """``page``, a listing's page of one session's rows; when it is an empty first page,
        after a read that the session exists (``NotFound`` otherwise)."""
        if not page.items and after is None and before is None:
            tenant, sql = self.tenant_id, self._core.message_sql
            if not (yield Read("reading a session", lambda: sql.exists(tenant, session_id))):
                raise NotFound("session", session_id)
        return page

    def _count_op(self, table: sa.Table, filters: Filters, what: str) -> Op[int]:
        """How many of this tenant's rows of ``table`` pass ``filters``: one read."""

        def build() -> sa.Select[Any]:
            mine = table.c.tenant_id == sa.bindparam("tenant_id")
            return sa.select(sa.func.count()).select_from(table).where(mine, *filters.conditions())

        sql = self._core.message_sql
        count = sql.shaped(("count", table.name, filters.shape()), build).stmt(
            {**filters.params, "tenant_id": self.tenant_id}
        )

        def steps() -> Steps[int]:
            rows: list[Any] = yield count
            return int(rows[0][0])

        found: int = yield Read(what, steps)
        return found

    def _set_stmt(
        self,
        table: sa.Table,
        ident: str,
        changes: Mapping[str, Any],
        match: Mapping[str, Any],
        *,
        bump: bool = False,
        before: Any = None,
        before_params: Mapping[str, Any] | None = None,
    ) -> Stmt:
        """An UPDATE ... RETURNING of row ``ident`` of ``table`` that sets ``changes`` (with
        ``bump``, also the version up by one and ``updated_at`` now) only while its columns
        hold ``match``'s values; compiled once per shape (the columns set and matched).

        A JSON column is bound as its text (:meth:`MessageSQL.json_param`), None as SQL
        NULL (so ``IS NULL`` filters find it), as rows are inserted. ``before``: a
        data-modifying statement (built once; its parameters ``before_params``) made a
        CTE of the UPDATE on PostgreSQL, where the own connections are in autocommit
        (it sees the row as it was); elsewhere the caller runs it first, in the write."""
        names, matched = tuple(sorted(changes)), tuple(sorted(match))
        sql, pg = self._core.message_sql, self._core.dialect.name == "postgresql"

        def build() -> sa.Update:
            where = [
                table.c.tenant_id == sa.bindparam("u_tenant"),
                table.c.id == sa.bindparam("u_id"),
            ]
            where += [table.c[m] == sa.bindparam(f"m_{m}", type_=table.c[m].type) for m in matched]
            values: dict[str, Any] = {
                n: sql.json_param(f"v_{n}")
                if isinstance(table.c[n].type, sa.JSON)
                else sa.bindparam(f"v_{n}", type_=table.c[n].type)
                for n in names
            }
            if bump:
                values["version"] = table.c.version + 1
                values["updated_at"] = sa.bindparam("u_now", type_=sa.BigInteger)
            stmt = sa.update(table).where(*where).values(values).returning(*table.c)
            if before is not None and pg:
                stmt = stmt.add_cte(before.cte("before"))
            return stmt

        params = {f"v_{n}": v for n, v in json_texts(table, changes).items()}
        params.update({f"m_{m}": v for m, v in match.items()})
        params.update(u_tenant=self.tenant_id, u_id=ident, u_now=utcnow_micros())
        params.update(before_params or {})
        key = ("set", table.name, names, matched, bump, before if pg else None)
        return sql.shaped(key, build).stmt(params)

    def _copy_stmt(self, table: sa.Table, keep: sa.Table, ident: str, version: int) -> Stmt:
        """A copy of row ``ident`` of ``table`` at ``version`` into ``keep`` (none if it is
        at another; nothing if ``keep`` has it already)."""
        copy = _copy_of(table, keep, self._core.dialect)
        params = {"u_tenant": self.tenant_id, "u_id": ident, "m_version": version}
        return self._core.message_sql.built_once(copy).stmt(params, COUNT)

    def _change_op(
        self,
        table: sa.Table,
        ident: str,
        reading: str,
        writing: str,
        decide: Callable[[dict[str, Any]], dict[str, Any] | None],
        seen: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Op[tuple[dict[str, Any], bool]]:
        """Read row ``ident`` of ``table``, and write what ``decide(row)`` gives (None:
        nothing) only while the row still holds ``seen(row)``'s values (its version, say);
        when another write came first, read it again and decide anew. The row as it ends
        up (its columns by name), and whether this wrote it.

        A read and an update, without a lock held between them (PostgreSQL's own
        connections are in autocommit): two racing changes cannot both apply."""
        sql = self._core.message_sql
        while True:
            row = yield from self._read_row(table, ident, reading)
            changes = decide(row)
            if changes is None:
                return row, False
            update = self._set_stmt(table, ident, changes, seen(row))
            rows = yield Write(writing, single(update))
            if rows:
                return sql.named_row(table, rows[0]), True

    def _update_op(
        self,
        table: sa.Table,
        ident: str,
        what: str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        kind: str | None = None,
        keep: sa.Table | None = None,
    ) -> Op[dict[str, Any]]:
        """Set ``changes`` on a row with a version, bumped and stamped, as an operation: one
        UPDATE ... RETURNING (:meth:`_set_stmt`, the kind and version matched when given);
        the row as updated, its columns by name.

        ``keep``: a table with the same columns that gets the row as it was (its
        history), in the same write: then the row's version is read first when none is
        expected, and the update made only at that version (read again if another write
        came first), so each version is kept once.

        ``NotFound`` (of ``kind``, else of this resource's kind) without such a row, or one
        of another ``kind``; ``Conflict`` when it is not at ``expected_version`` (then a
        second statement reads its version, in the same write)."""
        sql, pg = self._core.message_sql, self._core.dialect.name == "postgresql"
        current = Stmt(sql.compiled(_version_of(table)), {"tenant_id": self.tenant_id, "id": ident})

        def check(found: list[Any]) -> int:
            if not found or (kind is not None and found[0][1] != kind):
                raise NotFound(kind or self.kind, ident)
            return int(found[0][0])

        while True:
            seen = expected_version
            if keep is not None and seen is None:
                seen = check((yield Read(what, single(current))))
            match = {"kind": kind, "version": seen}
            update = self._set_stmt(
                table,
                ident,
                changes,
                {k: v for k, v in match.items() if v is not None},
                bump=True,
                before=None if keep is None else _copy_of(table, keep, self._core.dialect),
            )
            copy = None
            if keep is not None and not pg:
                assert seen is not None
                copy = self._copy_stmt(table, keep, ident, seen)

            def steps(update: Stmt = update, copy: Stmt | None = copy) -> Steps[list[Any]]:
                if copy is not None:
                    yield copy
                rows: list[Any] = yield update
                if rows or (expected_version is None and keep is not None):
                    return rows  # (none: another write came first; read the version again)
                version = check((yield current))
                self._check_version({"id": ident, "version": version}, expected_version)
                raise AssertionError("the UPDATE found the row it reads")  # pragma: no cover

            rows = yield Write(what, steps)
            if rows:
                return sql.named_row(table, rows[0])

    def _read_in_session(
        self, table: sa.Table, ident: str, session_id: str, kind: str | None
    ) -> Op[dict[str, Any]]:
        """Row ``ident`` of ``table`` in session ``session_id``, read beside the session's
        kind in one statement (``MessageSQL.row_of_session``): ``NotFound`` for the session
        (or one not of ``kind``), then for the row (of this resource's ``kind``)."""
        check_ref(ident, f"{self.kind}_id")
        check_ref(session_id, "session_id")
        tenant, sql, what = self.tenant_id, self._core.message_sql, self.kind

        def steps() -> Steps[dict[str, Any]]:
            return sql.row_of_session(table, what, tenant, session_id, ident, kind)

        row: dict[str, Any] = yield Read(f"reading a {what}", steps)
        return row

    def _check_version(self, row: Row, expected_version: int | None) -> None:
        """``Conflict`` unless the row is at ``expected_version`` (None: any)."""
        if expected_version is not None and row["version"] != expected_version:
            raise Conflict(
                f"{self.kind} {row['id']!r} is at version {row['version']}, not {expected_version}; "
                "reload and retry",
                current_version=row["version"],
                requested_version=expected_version,
            )
