"""Import a JSON Lines export: every line validated first, then all of it in one transaction.

Pass one reads the whole file and checks each line (JSON, a known table in
dependency order, known columns of the right types, required values there)
and that each table has the rows the header announces (a truncated file is
refused). Any error names its line and field, and nothing is written. Pass
two writes every row in one transaction, in batches of ``BATCH`` rows of one
table: one read of which of the batch's keys are stored, one bulk insert of
the new rows (PostgreSQL ``COPY``, SQLite ``executemany``; see
:mod:`agentkeep.store.bulk`), one update of the rows replaced, per ``mode``:

- ``merge``: new rows are added; a stored row that is identical is skipped;
  a stored row that differs is a conflict, reported and kept as it is.
- ``skip``: new rows are added; any stored row is kept (skipped).
- ``overwrite``: new rows are added; a stored row that differs is replaced.

``dry_run`` does all of it and rolls back, so the report says exactly what
an import would do. ``tenant`` moves every row into that tenant.

A file written at an older schema revision is upgraded first
(:mod:`agentkeep.lifecycle.upgrade_dump`: loaded into a scratch database at
its revision, brought to head by the revisions themselves, dumped again), then
imported as above; one from a newer agentkeep is refused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.errors import InvalidInput
from agentkeep.lifecycle.upgrade_dump import at_head
from agentkeep.store import Store, usage_days
from agentkeep.store.bulk import Key, insert_rows, key_of, stored_rows, update_rows
from agentkeep.store.compression import DecompressError
from agentkeep.store.dump import (
    FORMAT,
    VERSION,
    Progress,
    dump_tables,
    encode,
    open_text,
    to_json_row,
)

__all__ = ["MODES", "ImportReport", "import_file", "read_rows", "validate_file"]

MODES = ("merge", "skip", "overwrite")
BATCH = 5000  # rows looked up and written together (one lookup, one insert per batch)
_SHOWN_CONFLICTS = 50


@dataclass
class ImportReport:
    """Rows imported, skipped and conflicting, per table; the first conflicts by key."""

    imported: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    conflicting: dict[str, int] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    dry_run: bool = False
    lines: int = 0
    upgraded_from: str | None = None  # the file's older schema revision, if it was upgraded

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "skipped": self.skipped,
            "conflicting": self.conflicting,
            "conflicts": self.conflicts,
            "dry_run": self.dry_run,
            "lines": self.lines,
            "upgraded_from": self.upgraded_from,
        }


class _DryRun(Exception):
    """Raised at the end of a dry run to roll the transaction back."""


def _bad(line: int, message: str, fld: str | None = None) -> InvalidInput:
    where = f"line {line}" + (f": {fld}" if fld else "")
    return InvalidInput(message, field=where)


Check = Callable[[Any], "str | None"]


def _base64(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be base64 text"
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return "must be base64 text"
    return None


def _boolean(value: Any) -> str | None:
    return None if value is True or value is False else "must be true or false"


def _integer(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else "must be an integer"


def _string(length: int | None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        if length is not None and len(value) > length:
            return f"must be at most {length} characters"
        return None

    return check


def _checker(col: sa.Column[Any]) -> Check | None:
    """The check of a non-null value of ``col`` (None: any value will do)."""
    kind = col.type
    if isinstance(kind, sa.JSON):
        return None
    if isinstance(kind, sa.LargeBinary):
        return _base64
    if isinstance(kind, sa.Boolean):
        return _boolean
    if isinstance(kind, sa.Integer):
        return _integer
    if isinstance(kind, sa.String):
        return _string(kind.length)
    return None


@lru_cache(maxsize=256)
def _plan(table: sa.Table) -> tuple[frozenset[str], tuple[tuple[str, bool, Check | None], ...]]:
    """``table``'s column names, and per column: name, whether null is allowed, its check."""
    columns = tuple(
        (c.name, bool(c.nullable) or isinstance(c.type, sa.JSON), _checker(c))
        for c in table.columns
    )
    return frozenset(table.c.keys()), columns


def _check_row(line: int, table: sa.Table, row: Any, tenant: str | None) -> None:
    if not isinstance(row, dict):
        raise _bad(line, "must be an object", "row")
    names, columns = _plan(table)
    if not row.keys() <= names:
        unknown = sorted(set(row) - names)
        raise _bad(
            line, f"table {table.name} has no column {unknown[0]!r}", f"{table.name}.{unknown[0]}"
        )
    for name, nullable, check in columns:
        if name == "tenant_id" and tenant is not None:
            continue
        if name not in row:
            if not table.c[name].nullable:
                raise _bad(line, "is missing", f"{table.name}.{name}")
            continue
        value = row[name]
        if value is None:
            problem = None if nullable else "must not be null"
        else:
            problem = None if check is None else check(value)
        if problem:
            raise _bad(line, problem, f"{table.name}.{name}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open_text(path, "r") as handle:
            yield from enumerate(handle, start=1)
    except DecompressError as exc:
        raise InvalidInput(f"cannot read {path.name} ({exc})", field="file") from exc


def _header(number: int, text: str) -> dict[str, Any]:
    try:
        header = json.loads(text)
    except ValueError as exc:
        raise _bad(number, f"is not JSON ({exc})", "header") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(number, f"the file must start with an {FORMAT} header line", "header")
    if header.get("version") != VERSION:
        raise _bad(number, f"format version {header.get('version')!r} is not {VERSION}", "version")
    if not isinstance(header.get("counts"), dict):
        raise _bad(number, "must map each table to its row count", "counts")
    return header


def validate_file(
    path: str | Path,
    *,
    tenant: str | None = None,
    schema: Sequence[sa.Table] | None = None,
    ordered: bool = True,
) -> dict[str, int]:
    """Check every line of an export; returns rows per table. ``InvalidInput`` names the first bad line.

    ``schema``: the tables to check against (default: this agentkeep's, at
    head); ``ordered``: whether tables must come parents first.
    """
    path = Path(path)
    tables = {t.name: (i, t) for i, t in enumerate(schema if schema is not None else dump_tables())}
    header: dict[str, Any] | None = None
    seen: dict[str, int] = {}
    position = 0
    for number, text in _lines(path):
        if header is None:
            header = _header(number, text)
            continue
        try:
            item = json.loads(text)
        except ValueError as exc:
            raise _bad(number, f"is not JSON ({exc})") from exc
        if not isinstance(item, dict) or set(item) != {"table", "row"}:
            raise _bad(number, 'must be an object with "table" and "row" only')
        name = item["table"]
        if name not in tables:
            raise _bad(number, f"unknown table {name!r}", "table")
        index, table = tables[name]
        if ordered and index < position:
            raise _bad(number, f"{name} comes after tables that depend on it", "table")
        position = index
        _check_row(number, table, item["row"], tenant)
        seen[name] = seen.get(name, 0) + 1
    if header is None:
        raise InvalidInput(f"{path.name} is empty", field="file")
    for name, expected in header["counts"].items():
        if seen.get(name, 0) != expected:
            raise InvalidInput(
                f"the header announces {expected} {name} rows but the file has {seen.get(name, 0)}: "
                "it is truncated or was edited",
                field="file",
            )
    extra = sorted(set(seen) - set(header["counts"]))
    if extra:
        raise InvalidInput(f"rows of {extra[0]} that the header does not announce", field="file")
    return seen


def read_rows(
    path: Path, tenant: str | None, schema: Sequence[sa.Table] | None = None
) -> Iterator[tuple[sa.Table, dict[str, Any]]]:
    """The rows of a validated export file, as ``schema``'s (default head's) tables' values."""
    tables = {t.name: (t, _layout(t)) for t in (schema if schema is not None else dump_tables())}
    for number, text in _lines(path):
        if number == 1:
            continue
        item = json.loads(text)
        table, (names, binary) = tables[item["table"]]
        given = item["row"]
        row = {name: given.get(name) for name in names}
        if tenant is not None:
            row["tenant_id"] = tenant
        for name in binary:
            if row[name] is not None:
                row[name] = base64.b64decode(row[name], validate=True)
        yield table, row


@lru_cache(maxsize=256)
def _layout(table: sa.Table) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``table``'s column names, and those of its binary columns (base64 text in a file)."""
    names = tuple(c.name for c in table.columns)
    return names, tuple(c.name for c in table.columns if isinstance(c.type, sa.LargeBinary))


def _same(table: sa.Table, stored: dict[str, Any], incoming: dict[str, Any]) -> bool:
    return encode(to_json_row(table, dict(stored))) == encode(to_json_row(table, dict(incoming)))


def _usage_days_touched(
    table: sa.Table, rows: Iterable[Mapping[str, Any]], touched: dict[str, set[int]]
) -> None:
    """Note the tenants and days of usage rows written or replaced (their usage_days change)."""
    if table.name != "llm_usage":
        return
    for row in rows:
        touched.setdefault(row["tenant_id"], set()).add(usage_days.day_of(int(row["created_at"])))


def _count(counts: dict[str, int], name: str, n: int) -> None:
    if n:
        counts[name] = counts.get(name, 0) + n


def _write_batch(
    conn: Connection,
    table: sa.Table,
    batch: list[dict[str, Any]],
    mode: str,
    report: ImportReport,
    touched: dict[str, set[int]],
) -> None:
    """One lookup of the batch's keys, one insert of its new rows, one update of those replaced."""
    keys = [key_of(table, r) for r in batch]
    stored = stored_rows(conn, table, keys)
    # Every day a row of the batch or the row it replaces is in (a day too many is recomputed
    # for nothing; none is left stale).
    _usage_days_touched(table, [*batch, *stored.values()], touched)
    fresh = [r for r, k in zip(batch, keys, strict=True) if k not in stored] if stored else batch
    insert_rows(conn, table, fresh)
    name = table.name
    _count(report.imported, name, len(fresh))
    if stored:
        replaced = _replaced(table, batch, keys, stored, mode, report)
        update_rows(conn, table, replaced)
        _count(report.imported, name, len(replaced))


def _replaced(
    table: sa.Table,
    batch: list[dict[str, Any]],
    keys: list[Key],
    stored: dict[Key, dict[str, Any]],
    mode: str,
    report: ImportReport,
) -> list[dict[str, Any]]:
    """The batch's rows that replace stored ones; the skipped and conflicting ones counted."""
    name = table.name
    merge = str(table.info.get("merge", ""))
    out = []
    for row, key in zip(batch, keys, strict=True):
        old = stored.get(key)
        if old is None:
            continue
        if mode == "skip" or _same(table, old, row):
            _count(report.skipped, name, 1)
            continue
        if merge.startswith("max:"):
            column = merge[4:]
            row = {**row, column: max(row[column], old[column])}
        elif mode == "merge":
            _count(report.conflicting, name, 1)
            if len(report.conflicts) < _SHOWN_CONFLICTS:
                report.conflicts.append(f"{name} {'/'.join(map(str, key))}")
            continue
        out.append(row)
    return out


def import_file(
    store: Store,
    path: str | Path,
    *,
    mode: str = "merge",
    tenant: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate then import an export file into ``store``'s database, all or nothing."""
    if mode not in MODES:
        raise InvalidInput(f"must be one of {', '.join(MODES)}", field="mode")
    if tenant is not None and (not isinstance(tenant, str) or not tenant or len(tenant) > 64):
        raise InvalidInput("must be a non-empty string of at most 64 characters", field="tenant")
    with at_head(Path(path), tenant=tenant) as (path, from_revision):
        counts = validate_file(path, tenant=tenant)
        report = ImportReport(
            dry_run=dry_run, lines=sum(counts.values()) + 1, upgraded_from=from_revision
        )
        try:
            with store._core.write("importing"):
                _write_all(store, path, mode, tenant, report, progress)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass
    return report


def _write_all(
    store: Store,
    path: Path,
    mode: str,
    tenant: str | None,
    report: ImportReport,
    progress: Progress | None,
) -> None:
    with store._core.write("importing") as conn:
        current: sa.Table | None = None
        batch: list[dict[str, Any]] = []
        touched: dict[str, set[int]] = {}
        for table, row in read_rows(path, tenant):
            if table is not current or len(batch) >= BATCH:
                if current is not None and batch:
                    _write_batch(conn, current, batch, mode, report, touched)
                    if progress is not None:
                        progress(current.name, len(batch))
                current, batch = table, []
            batch.append(row)
        if current is not None and batch:
            _write_batch(conn, current, batch, mode, report, touched)
            if progress is not None:
                progress(current.name, len(batch))
        for tenant_id, days in touched.items():
            usage_days.refresh(conn, tenant_id, days)
