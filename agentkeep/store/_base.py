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
from agentkeep.store._run_checks import check_ref
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write

if TYPE_CHECKING:
    from agentkeep.store._core import Core

__all__ = [
    "Resource",
    "Row",
    "keys_in",
    "page_of",
    "paginate",
    "row_by_id",
    "row_times",
    "time_range",
    "update_row",
    "update_row_returning",
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


def paginate(
    conn: Connection,
    table: sa.Table,
    where: Sequence[sa.ColumnElement[bool]],
    to_model: Callable[[Row], T],
    *,
    tenant_id: str,
    limit: int,
    after: str | None,
    before: str | None,
    order: Order,
    sort: sa.Column[Any] | None = None,
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
    offset: int = 0,
) -> Page[T]:
    """One page of ``table`` in ``sort`` order (default: id) with id cursors.

    ``after`` continues past an id in the listing's order; ``before`` returns
    the page that comes just before an id. ``offset`` skips that many rows
    first, in the database (for APIs that page by offset, like curio's).
    """
    check_page(limit, offset, order)
    listing = Listing(table, sort, order, after, before, offset)
    params = listing.params(tenant_id, limit)
    for field, ident in listing.cursors():
        if conn.execute(cursor_row(table), {"tenant_id": tenant_id, "id": ident}).first() is None:
            raise listing.unknown(field, ident)
    stmt = listing.select(where, columns)
    return page_of(list(conn.execute(stmt, params).mappings()), limit, listing.reverse, to_model)


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


class Listing:
    """The shape of one page's read of a listing: its sort key, direction and cursors.

    :meth:`select` builds the SELECT with the tenant, the cursors, the limit and
    the offset as named parameters (:meth:`params`), so one compile serves every
    page of the same shape (:meth:`shape`).
    """

    def __init__(
        self,
        table: sa.Table,
        sort: sa.Column[Any] | None,
        order: Order,
        after: str | None,
        before: str | None,
        offset: int,
    ) -> None:
        self.table = table
        self.key: sa.Column[Any] = sort if sort is not None else table.c.id
        self.tie = self.key is not table.c.id  # a sort key that may repeat: ties by id
        self.forward = order == "asc"
        self.after, self.before, self.offset = after, before, offset
        # ``before`` alone: the items closest to it, read in reverse, put back in order.
        self.reverse = before is not None and after is None

    def shape(self) -> tuple[Any, ...]:
        has = (self.after is not None, self.before is not None, self.offset > 0)
        return (self.key.name, self.forward, *has)

    def cursors(self) -> list[tuple[str, str]]:
        """The cursors that must name a row of the listing (those of a sort key with
        ties, where the cursor's place is its row's key): (field, id)."""
        if not self.tie:
            return []
        named = (("after", self.after), ("before", self.before))
        return [(field, ident) for field, ident in named if ident is not None]

    @staticmethod
    def unknown(field: str, ident: str) -> InvalidInput:
        return InvalidInput(f"no object with id {ident!r} in this listing", field=field)

    def params(self, tenant_id: str, limit: int) -> dict[str, Any]:
        return {
            "tenant_id": tenant_id,
            "page_limit": limit + 1,  # one more: whether there are more
            "page_after": self.after,
            "page_before": self.before,
            "page_offset": self.offset,
        }

    def _position(self, name: str) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
        """The listing's sort key and the place of the cursor (parameter ``name``) in it."""
        table, cursor = self.table, sa.bindparam(name, type_=sa.String())
        if not self.tie:
            return self.key, cursor
        sub = (
            sa.select(self.key)
            .where(table.c.tenant_id == sa.bindparam("tenant_id"), table.c.id == cursor)
            .scalar_subquery()
        )
        return sa.tuple_(self.key, table.c.id), sa.tuple_(sub, cursor)

    def select(
        self,
        where: Sequence[sa.ColumnElement[bool]],
        columns: Sequence[sa.ColumnElement[Any]] | None = None,
    ) -> sa.Select[Any]:
        table, forward = self.table, self.forward
        conds = [table.c.tenant_id == sa.bindparam("tenant_id"), *where]
        if self.after is not None:
            lhs, rhs = self._position("page_after")
            conds.append(lhs > rhs if forward else lhs < rhs)
        if self.before is not None:
            lhs, rhs = self._position("page_before")
            conds.append(lhs < rhs if forward else lhs > rhs)
        ascending = forward != self.reverse
        keys = [self.key, table.c.id] if self.tie else [self.key]
        stmt = (
            sa.select(*(columns if columns is not None else [table]))
            .where(*conds)
            .order_by(*(k.asc() if ascending else k.desc() for k in keys))
            .limit(sa.bindparam("page_limit", type_=sa.Integer()))
        )
        if self.offset > 0:
            stmt = stmt.offset(sa.bindparam("page_offset", type_=sa.Integer()))
        return stmt


class Filters:
    """A listing's filters as conditions on named parameters, so that the statement is
    compiled once per :meth:`shape` (which filters are set) whatever their values."""

    def __init__(self) -> None:
        self._built: list[tuple[Callable[..., sa.ColumnElement[bool]], tuple[str, ...]]] = []
        self._types: dict[str, Any] = {}
        self.params: dict[str, Any] = {}

    def add(
        self,
        build: Callable[..., sa.ColumnElement[bool]],
        values: Mapping[str, Any],
        types: Mapping[str, Any] | None = None,
    ) -> None:
        """A condition: ``build`` called with a ``sa.bindparam`` per value (by name), in order.

        Names are unique within a listing; a parameter takes its type from its use
        unless ``types`` gives it (a JSON key: ``sa.JSON.JSONStrIndexType()``).
        """
        self._built.append((build, tuple(values)))
        self._types.update(types or {})
        self.params.update(values)

    def equal(self, *pairs: tuple[sa.Column[Any], Any]) -> None:
        """``column == value`` for each (column, value) whose value is not None (the
        parameter named as the column)."""
        for column, value in pairs:
            if value is not None:
                self.add(column.__eq__, {column.name: value})

    def one_of(self, column: sa.ColumnElement[Any], name: str, values: Sequence[Any]) -> None:
        """``column`` is one of ``values`` (a parameter each: their number is the shape)."""
        self.add(lambda *p: column.in_(p), {f"{name}{i}": v for i, v in enumerate(values)})

    def between(
        self, column: sa.ColumnElement[Any], after: datetime | None, before: datetime | None
    ) -> None:
        """``after <= column < before`` on a microsecond column (either bound may be None)."""
        if after is not None:
            self.add(column.__ge__, {f"{column.name}_from": to_micros(after)})
        if before is not None:
            self.add(column.__lt__, {f"{column.name}_to": to_micros(before)})

    def shape(self) -> tuple[Any, ...]:
        return tuple(names for _, names in self._built)

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        def param(name: str) -> sa.BindParameter[Any]:
            return sa.bindparam(name, type_=self._types.get(name))

        return [build(*(param(n) for n in names)) for build, names in self._built]

    def bound(self) -> list[sa.ColumnElement[bool]]:
        """The conditions with their values in them, for a statement run through SQLAlchemy
        (each parameter unique: one statement may hold them more than once)."""

        def param(name: str) -> sa.BindParameter[Any]:
            value, type_ = self.params[name], self._types.get(name)
            return sa.bindparam(name, value, type_=type_, unique=True)

        return [build(*(param(n) for n in names)) for build, names in self._built]


def metadata_is(
    column: sa.ColumnElement[Any], pg: bool, key_name: str, key: str, value_name: str, value: str
) -> tuple[Callable[..., sa.ColumnElement[bool]], dict[str, str], dict[str, Any]]:
    """:meth:`Filters.add`'s arguments for "the JSON object ``column`` maps ``key`` to the
    string ``value``". On SQLite by the object's entries (``json_each``): a JSON path
    cannot spell a key holding a double quote there, so ``json_extract`` never found it."""
    values = {key_name: key, value_name: value}
    if pg:
        return (lambda k, v: column[k].as_string() == v), values, {key_name: _JSON_KEY}

    def entry(k: sa.BindParameter[Any], v: sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
        entries = sa.func.json_each(column).table_valued("key", "value")
        return (
            sa.select(sa.literal(1))
            .select_from(entries)
            .where(entries.c.key == k, entries.c.value == v)
            .exists()
        )

    return entry, values, {}


_JSON_KEY = sa.JSON.JSONStrIndexType()


def like_escaped(text: str) -> str:
    """``text`` for a LIKE pattern with ``ESCAPE '/'`` (what ``autoescape=True`` binds)."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


@functools.cache
def cursor_row(table: sa.Table) -> sa.Select[Any]:
    """Whether a cursor names a row of ``table``: its id, by tenant and id."""
    return sa.select(table.c.id).where(
        table.c.tenant_id == sa.bindparam("tenant_id"), table.c.id == sa.bindparam("id")
    )


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
def _delete_by_id(table: sa.Table) -> sa.Delete:
    """A DELETE of a row of ``table`` by tenant and id, built once per table."""
    return sa.delete(table).where(
        table.c.tenant_id == sa.bindparam("tenant_id"), table.c.id == sa.bindparam("id")
    )


@functools.cache
def _update_by_id(table: sa.Table) -> sa.Update:
    """An UPDATE of a row of ``table`` by tenant and id, built once per table.

    Its SET clause is the columns of the parameters it is executed with (each
    set of columns compiled once, then cached by SQLAlchemy).
    """
    return sa.update(table).where(
        table.c.tenant_id == sa.bindparam("u_tenant"), table.c.id == sa.bindparam("u_id")
    )


def update_row(
    conn: Connection, table: sa.Table, tenant_id: str, ident: str, changes: Mapping[str, Any]
) -> int:
    """Set ``changes`` (column: value; ``sa.null()`` for SQL NULL) on one row; rows changed.

    The statement is built once per table: building and keying an UPDATE for
    every call costs more than running it.
    """
    params = {**changes, "u_tenant": tenant_id, "u_id": ident}
    return int(conn.execute(_update_by_id(table), params).rowcount)


@functools.cache
def _update_by_id_returning(table: sa.Table) -> sa.Update:
    """:func:`_update_by_id` giving back the row as updated."""
    return _update_by_id(table).returning(*table.c)


def update_row_returning(
    conn: Connection, table: sa.Table, tenant_id: str, ident: str, changes: Mapping[str, Any]
) -> Row | None:
    """:func:`update_row` that answers with the whole row as updated (None: no such row)."""
    params = {**changes, "u_tenant": tenant_id, "u_id": ident}
    return conn.execute(_update_by_id_returning(table), params).mappings().first()


class Resource:
    """Base of the entity stores: the core and the tenant they act for."""

    kind = "object"

    def __init__(self, core: Core, tenant_id: str) -> None:
        self._core = core
        self.tenant_id = tenant_id

    def _insert_rows(
        self, conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert ``rows`` (a value for every column of ``table``, by name) in the write of
        ``conn``, as the dialect's one-row INSERT of the table compiled once, its JSON
        columns bound as their text.

        For the rows every run and response writes (usage, events, items): a driver SQL
        statement skips SQLAlchemy's per-call compile-cache lookup and bind processing
        (measured on SQLite: 21 µs a row against 39 for ``conn.execute(insert(table))``),
        and is still seen by SQLAlchemy's events and counted as a statement.
        """
        if rows:
            sql = self._core.message_sql
            params = [sql.insert_params(table, row) for row in rows]
            conn.exec_driver_sql(sql.insert_row(table), params)

    def _run_compiled(
        self, conn: Connection, stmt: sa.ClauseElement, params: Mapping[str, Any] | None = None
    ) -> sa.CursorResult[*tuple[Any, ...]]:
        """``stmt`` on ``conn``, compiled once for the dialect and sent as driver SQL (still
        seen by SQLAlchemy's events): for the statements every run sends (its events, the
        worker's claims), where SQLAlchemy's per-call cache lookup, and the new rendering
        an expanding parameter takes, cost more than the statement."""
        return conn.exec_driver_sql(self._core.message_sql.compiled(stmt), params)

    def _first_compiled(self, what: str, stmt: sa.ClauseElement, params: Mapping[str, Any]) -> Any:
        """The first row of ``stmt``, compiled once, read on the store's own connections (a
        transaction's, inside one), as the message reads are: no pool checkout, ``BEGIN``
        and ``ROLLBACK`` around it. For the polls every worker makes after each run."""
        sql = self._core.message_sql.compiled(stmt)
        return self._core.run_read(what, lambda cur: cur.execute(sql, params).fetchone())

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

    def _delete_row(self, table: sa.Table, ident: str, what: str) -> Op[None]:
        """Delete row ``ident`` of ``table`` (what points to it goes by its foreign keys'
        ``ON DELETE``) as an operation: one statement, compiled once per dialect.
        ``NotFound`` (of ``kind``) if there is none."""
        stmt = self._core.message_sql.compiled(_delete_by_id(table))
        params = {"tenant_id": self.tenant_id, "id": ident}

        def steps() -> Steps[None]:
            if not (yield Stmt(stmt, params, COUNT)):
                raise NotFound(self.kind, ident)

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
        """One page of this tenant's rows of ``table`` (see :func:`paginate`) as an operation:
        one read, its statement compiled once per shape (filters set, sort, cursors)."""
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

    def _update_versioned(
        self,
        conn: Connection,
        table: sa.Table,
        ident: str,
        expected_version: int | None,
        changes: dict[str, Any],
        *,
        keep: sa.Table | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes`` to a row with a version: checked, bumped, stamped; returns the new row.

        ``keep``: a table with the same columns that gets the row as it was (its history).
        """
        row = self._get_row(conn, table, ident, for_update=True)
        self._check_version(row, expected_version)
        if keep is not None:
            conn.execute(sa.insert(keep).values(dict(row)))
        changes = {**changes, "version": row["version"] + 1, "updated_at": utcnow_micros()}
        update_row(conn, table, self.tenant_id, ident, changes)
        return {**row, **changes}
