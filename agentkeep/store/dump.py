"""The logical dump: every table's rows as JSON Lines, and the header that opens them.

Format version 1, UTF-8, one JSON object per line, keys sorted::

    {"counts": {"sessions": 2, ...}, "created_at": "...", "filters": {...},
     "format": "agentkeep-jsonl", "revision": "0002", "version": 1}
    {"row": {"id": "sess_...", "tenant_id": "default", ...}, "table": "sessions"}
    ...

Tables come in dependency order (parents first), rows in primary-key order,
so the same database always gives the same lines. Which tables are dumped is
read from the schema's ``MetaData`` (every table whose ``info`` does not say
``export: False``), so a new table is included without code changes. A file
name ending in ``.gz`` is gzip-compressed, ``.zst`` zstd-compressed (reading
goes by the file's first bytes). Binary columns are written as base64 text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.errors import Conflict
from agentkeep.store.compression import compression_of_file, compression_of_name
from agentkeep.store.compression import open_text as compression_open
from agentkeep.store.schema import metadata

__all__ = [
    "FORMAT",
    "VERSION",
    "Progress",
    "count_rows",
    "dump_tables",
    "encode",
    "from_json_row",
    "open_text",
    "stream_rows",
    "tables_in",
    "to_json_row",
    "write_dump",
]

FORMAT = "agentkeep-jsonl"
VERSION = 1
BATCH = 1000

Progress = Callable[[str, int], None]
"""Called as ``progress(table, rows_done_in_this_call)`` while rows stream."""

_NOT_EXPORTED = frozenset(t.name for t in metadata.sorted_tables if t.info.get("export") is False)


def dump_tables() -> list[sa.Table]:
    """The tables a dump holds, parents before children."""
    return [t for t in metadata.sorted_tables if t.name not in _NOT_EXPORTED]


def tables_in(conn: Connection) -> list[sa.Table]:
    """The dumpable tables as they exist in ``conn``'s database (any schema revision)."""
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names())
    declared = [t for t in dump_tables() if t.name in names]
    if {t.name for t in declared} == names - _NOT_EXPORTED - {"alembic_version"} and all(
        # an older revision may lack a column a later one added to the table
        {c.name for c in t.columns} == {c["name"] for c in inspector.get_columns(t.name)}
        for t in declared
    ):
        return declared
    reflected = sa.MetaData()
    reflected.reflect(conn)
    return [
        t
        for t in reflected.sorted_tables
        if t.name not in _NOT_EXPORTED and t.name != "alembic_version"
    ]


def _binary(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, sa.LargeBinary)]


def to_json_row(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON values: binary columns as base64 text."""
    for name in _binary(table):
        if row.get(name) is not None:
            row[name] = base64.b64encode(bytes(row[name])).decode("ascii")
    return row


def from_json_row(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_json_row` (base64 text back to bytes)."""
    for name in _binary(table):
        if row.get(name) is not None:
            row[name] = base64.b64decode(row[name], validate=True)
    return row


def encode(value: Any) -> str:
    """One line's JSON: sorted keys, no spaces, UTF-8 text kept as it is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def open_text(
    path: str | Path,
    mode: str,
    *,
    named: str | Path | None = None,
    compression: str | None = None,
) -> IO[str]:
    """A text file (``mode``: r, w), compressed or not.

    Writing: ``compression`` (``gzip``, ``zstd``), else what the name (or
    ``named``) ends in: ``.gz`` gzip, ``.zst``/``.zstd`` zstd. Reading: what
    the file's first bytes show, whatever its name.
    """
    if mode == "r":
        return compression_open(path, "r", compression_of_file(path))
    chosen = compression or compression_of_name(named if named is not None else path)
    return compression_open(path, mode, chosen)


def _order(table: sa.Table) -> list[sa.Column[Any]]:
    pk = list(table.primary_key.columns)
    return pk or list(table.columns)


def stream_rows(
    conn: Connection,
    table: sa.Table,
    where: Sequence[sa.ColumnElement[bool]] = (),
) -> Iterator[dict[str, Any]]:
    """The rows of ``table`` matching ``where``, in primary-key order, fetched in batches."""
    stmt = sa.select(table).where(*where).order_by(*_order(table))
    result = conn.execute(stmt.execution_options(yield_per=BATCH))
    for row in result.mappings():
        yield dict(row)


def count_rows(
    conn: Connection, table: sa.Table, where: Sequence[sa.ColumnElement[bool]] = ()
) -> int:
    found = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()
    return int(found or 0)


def write_dump(
    conn: Connection,
    out: IO[str],
    selection: Sequence[tuple[sa.Table, Sequence[sa.ColumnElement[bool]]]],
    header: Mapping[str, Any],
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write the header and every selected row to ``out``; returns rows per table.

    ``conn`` should read one snapshot (``dialect.consistent_read``), so the
    counts in the header are the rows that follow; if a table's rows are not
    the ones counted, :class:`~agentkeep.errors.Conflict` (the output is
    incomplete).
    """
    counts = {table.name: count_rows(conn, table, where) for table, where in selection}
    out.write(encode({**header, "format": FORMAT, "version": VERSION, "counts": counts}) + "\n")
    for table, where in selection:
        done = 0
        for row in stream_rows(conn, table, where):
            out.write(encode({"table": table.name, "row": to_json_row(table, row)}) + "\n")
            done += 1
            if progress is not None and done % BATCH == 0:
                progress(table.name, BATCH)
        if progress is not None and done % BATCH:
            progress(table.name, done % BATCH)
        if done != counts[table.name]:
            raise Conflict(
                f"the dump is not one snapshot of the database: {table.name} had "
                f"{counts[table.name]} rows when counted and {done} when read (it changed "
                "during the dump, which was not read in one transaction); the dump is "
                "incomplete: take it again"
            )
    return counts
