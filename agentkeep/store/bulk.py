"""Set-based reads and writes of many whole rows: what import, restore and copy are made of.

- :func:`stored_rows`: the stored rows of a batch of primary keys, in one
  statement per batch (PostgreSQL: a join with the keys' ``unnest`` arrays,
  which probes the primary key index once per key; SQLite: a row-value
  ``IN`` list, chunked under SQLite's parameter limit).
- :func:`insert_rows`: many whole rows in one round trip (PostgreSQL:
  ``COPY FROM STDIN`` on the transaction's own connection; SQLite: one
  ``executemany`` of a prepared statement). Values go through the columns'
  own SQLAlchemy bind processing first (JSON serialized, booleans and bytes
  as the driver wants), so a row is stored exactly as ``sa.insert`` would.
- :func:`update_rows`: many whole rows replaced by primary key, one
  ``executemany``.

Everything runs on the caller's connection, inside its transaction: a
failure anywhere rolls all of it back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect

from agentkeep.store._base import keys_in

__all__ = ["Key", "insert_rows", "key_of", "stored_rows", "update_rows"]

Key = tuple[Any, ...]
Processor = Callable[[Any], Any] | None

_SQLITE_PARAMS = 30_000  # under SQLITE_MAX_VARIABLE_NUMBER (32766 since SQLite 3.32)


def key_of(table: sa.Table, row: dict[str, Any]) -> Key:
    """The primary key values of ``row``, in the primary key's column order."""
    return tuple(row[c.name] for c in table.primary_key.columns)


def stored_rows(
    conn: Connection, table: sa.Table, keys: Sequence[Key]
) -> dict[Key, dict[str, Any]]:
    """The stored rows among ``keys`` (primary keys of ``table``), by key.

    The keys are looked up first (a narrow read, all that an import into an
    empty database needs); then the whole rows of those found are read.
    """
    found = stored_keys(conn, table, keys)
    if not found:
        return {}
    rows: dict[Key, dict[str, Any]] = {}
    pk = list(table.primary_key.columns)
    for stmt in _lookups(conn.dialect.name, sa.select(table), pk, list(found)):
        for row in conn.execute(stmt).mappings():
            values = dict(row)
            rows[key_of(table, values)] = values
    return rows


def stored_keys(conn: Connection, table: sa.Table, keys: Sequence[Key]) -> set[Key]:
    """Which of ``keys`` (primary keys of ``table``) are stored."""
    if not keys:
        return set()
    pk = list(table.primary_key.columns)
    found: set[Key] = set()
    for stmt in _lookups(conn.dialect.name, sa.select(*pk), pk, keys):
        found.update(tuple(r) for r in conn.execute(stmt))
    return found


def _lookups(
    dialect: str, select: sa.Select[Any], pk: list[sa.Column[Any]], keys: Sequence[Key]
) -> list[sa.Select[Any]]:
    """``select`` narrowed to the rows of ``keys``: one statement (SQLite: one per chunk)."""
    if dialect == "postgresql":
        names = [f"k{i}" for i in range(len(pk))]
        arrays = [
            sa.bindparam(name, [k[i] for k in keys], type_=ARRAY(col.type))
            for i, (name, col) in enumerate(zip(names, pk, strict=True))
        ]
        wanted = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="wanted")
        on = sa.and_(*(col == wanted.c[name] for name, col in zip(names, pk, strict=True)))
        return [select.join(wanted, on)]
    step = max(1, _SQLITE_PARAMS // len(pk))
    chunks = [keys[i : i + step] for i in range(0, len(keys), step)]
    return [select.where(keys_in(pk, chunk)) for chunk in chunks]


@lru_cache(maxsize=256)
def _processors(table: sa.Table, dialect: Dialect) -> tuple[tuple[str, Processor], ...]:
    """Each column's name and its bind processor for ``dialect`` (None: the value as it is)."""
    return tuple((c.name, c.type._cached_bind_processor(dialect)) for c in table.columns)


def _driver_rows(
    table: sa.Table, dialect: Dialect, rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    processors = _processors(table, dialect)
    out = []
    for row in rows:
        get = row.get
        out.append(tuple(get(name) if fn is None else fn(get(name)) for name, fn in processors))
    return out


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (whole rows: a missing column is NULL, or JSON null) into ``table``."""
    if not rows:
        return
    values = _driver_rows(table, conn.dialect, rows)
    if conn.dialect.name == "postgresql":
        _copy(conn, table, values)
        return
    conn.exec_driver_sql(_insert_sql(table, conn.dialect), values)


@lru_cache(maxsize=256)
def _insert_sql(table: sa.Table, dialect: Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in table.columns)
    marks = ", ".join("?" for _ in table.columns)
    return f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})"


def _copy(conn: Connection, table: sa.Table, values: list[tuple[Any, ...]]) -> None:
    from psycopg import sql

    columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table.name), columns)
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in values:
            copy.write_row(row)


def update_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Replace the stored rows with ``rows``' primary keys by ``rows`` (every column)."""
    if not rows:
        return
    pk = list(table.primary_key.columns)
    stmt = sa.update(table).where(*(c == sa.bindparam(f"_pk_{c.name}") for c in pk))
    names = [c.name for c in table.columns if not c.primary_key]
    params = [
        {**{n: row.get(n) for n in names}, **{f"_pk_{c.name}": row[c.name] for c in pk}}
        for row in rows
    ]
    conn.execute(stmt, params)
