"""A listing's page and filters as statements compiled once per shape.

:class:`Listing` is a page's sort key, direction, cursors, limit and offset;
:class:`Filters` its conditions. Both bind every value as a named parameter
(``sa.bindparam``), so the SELECT they build is the same text for every call of
the same shape (which filters are set, which order): ``MessageSQL.shaped``
compiles it once, and the store runs it on its own connections.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.models.common import Order, to_micros

__all__ = ["Filters", "Listing", "cursor_row", "like_escaped", "sort_key"]


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

    def metadata(self, column: sa.ColumnElement[Any], pairs: Mapping[str, str], pg: bool) -> None:
        """The JSON object ``column`` maps each key of ``pairs`` to its string value. On
        SQLite by the object's entries (``json_each``): a JSON path cannot spell a key
        holding a double quote there, so ``json_extract`` never found it."""

        def entry(k: sa.BindParameter[Any], v: sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
            entries = sa.func.json_each(column).table_valued("key", "value")
            return (
                sa.select(sa.literal(1))
                .select_from(entries)
                .where(entries.c.key == k, entries.c.value == v)
                .exists()
            )

        for i, (key, value) in enumerate(pairs.items()):
            values = {f"key{i}": key, f"value{i}": value}
            if pg:
                self.add(lambda k, v: column[k].as_string() == v, values, {f"key{i}": _JSON_KEY})
            else:
                self.add(entry, values)

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """The conditions on named parameters (their values in :attr:`params`)."""
        return self._build(lambda name: sa.bindparam(name, type_=self._types.get(name)))

    def bound(self) -> list[sa.ColumnElement[bool]]:
        """The conditions with their values in them, for a statement run through SQLAlchemy
        (each parameter unique: one statement may hold them more than once)."""
        return self._build(
            lambda name: sa.bindparam(
                name, self.params[name], type_=self._types.get(name), unique=True
            )
        )

    def _build(self, param: Callable[[str], sa.BindParameter[Any]]) -> list[sa.ColumnElement[bool]]:
        return [build(*(param(n) for n in names)) for build, names in self._built]


_JSON_KEY = sa.JSON.JSONStrIndexType()


def sort_key(table: sa.Table, sort: str) -> sa.Column[Any] | None:
    """A listing's ``sort`` argument (``"id"`` or ``"created_at"``) as :class:`Listing`'s
    ``sort``: None for the id; ``InvalidInput`` naming ``sort`` for anything else."""
    if sort not in ("id", "created_at"):
        raise InvalidInput("must be 'id' or 'created_at'", field="sort")
    return table.c.created_at if sort == "created_at" else None


def like_escaped(text: str) -> str:
    """``text`` for a LIKE pattern with ``ESCAPE '/'`` (what ``autoescape=True`` binds)."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


@functools.cache
def cursor_row(table: sa.Table) -> sa.Select[Any]:
    """Whether a cursor names a row of ``table``: its id, by tenant and id."""
    return sa.select(table.c.id).where(
        table.c.tenant_id == sa.bindparam("tenant_id"), table.c.id == sa.bindparam("id")
    )
