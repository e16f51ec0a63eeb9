"""Import a JSON Lines export: every line validated first, then all of it in one transaction.

Pass one reads the whole file and checks each line (JSON, a known table in
dependency order, known columns of the right types, required values there)
and that each table has the rows the header announces (a truncated file is
refused). Any error names its line and field, and nothing is written. Pass
two writes every row in one transaction, in batches, per ``mode``:

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.errors import InvalidInput
from agentkeep.lifecycle.upgrade_dump import at_head
from agentkeep.store import Store, usage_days
from agentkeep.store.compression import DecompressError
from agentkeep.store.dump import (
    FORMAT,
    VERSION,
    Progress,
    dump_tables,
    encode,
    from_json_row,
    open_text,
    to_json_row,
)

__all__ = ["MODES", "ImportReport", "import_file", "read_rows", "validate_file"]

MODES = ("merge", "skip", "overwrite")
BATCH = 500
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


def _check_value(col: sa.Column[Any], value: Any) -> str | None:
    """What is wrong with ``value`` for ``col``, or None."""
    kind = col.type
    if value is None:
        return None if col.nullable or isinstance(kind, sa.JSON) else "must not be null"
    if isinstance(kind, sa.JSON):
        return None
    if isinstance(kind, sa.LargeBinary):
        if not isinstance(value, str):
            return "must be base64 text"
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            return "must be base64 text"
        return None
    if isinstance(kind, sa.Boolean):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(kind, sa.Integer):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if isinstance(kind, sa.String):
        if not isinstance(value, str):
            return "must be a string"
        if kind.length is not None and len(value) > kind.length:
            return f"must be at most {kind.length} characters"
    return None


def _check_row(line: int, table: sa.Table, row: Any, tenant: str | None) -> None:
    if not isinstance(row, dict):
        raise _bad(line, "must be an object", "row")
    unknown = sorted(set(row) - set(table.c.keys()))
    if unknown:
        raise _bad(
            line, f"table {table.name} has no column {unknown[0]!r}", f"{table.name}.{unknown[0]}"
        )
    for col in table.columns:
        if col.name == "tenant_id" and tenant is not None:
            continue
        if col.name not in row:
            if not col.nullable:
                raise _bad(line, "is missing", f"{table.name}.{col.name}")
            continue
        problem = _check_value(col, row[col.name])
        if problem:
            raise _bad(line, problem, f"{table.name}.{col.name}")


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
    tables = {t.name: t for t in (schema if schema is not None else dump_tables())}
    for number, text in _lines(path):
        if number == 1:
            continue
        item = json.loads(text)
        table = tables[item["table"]]
        row = {c.name: item["row"].get(c.name) for c in table.columns}
        if tenant is not None:
            row["tenant_id"] = tenant
        yield table, from_json_row(table, row)


def _key(table: sa.Table, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c.name] for c in table.primary_key.columns)


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


def _write_batch(
    conn: Connection,
    table: sa.Table,
    batch: list[dict[str, Any]],
    mode: str,
    report: ImportReport,
    touched: dict[str, set[int]],
) -> None:
    pk = list(table.primary_key.columns)
    keys = [_key(table, r) for r in batch]
    stored = {
        _key(table, dict(r)): dict(r)
        for r in conn.execute(sa.select(table).where(sa.tuple_(*pk).in_(keys))).mappings()
    }
    # Every day a row of the batch or the row it replaces is in (a day too many is recomputed
    # for nothing; none is left stale).
    _usage_days_touched(table, [*batch, *stored.values()], touched)
    fresh = [r for r, k in zip(batch, keys, strict=True) if k not in stored]
    if fresh:
        conn.execute(sa.insert(table), fresh)
    name = table.name
    report.imported[name] = report.imported.get(name, 0) + len(fresh)
    for row, key in zip(batch, keys, strict=True):
        old = stored.get(key)
        if old is None:
            continue
        if mode == "skip" or _same(table, old, row):
            report.skipped[name] = report.skipped.get(name, 0) + 1
            continue
        merge = str(table.info.get("merge", ""))
        if merge.startswith("max:"):
            column = merge[4:]
            row = {**row, column: max(row[column], old[column])}
        elif mode == "merge":
            report.conflicting[name] = report.conflicting.get(name, 0) + 1
            if len(report.conflicts) < _SHOWN_CONFLICTS:
                report.conflicts.append(f"{name} {'/'.join(map(str, key))}")
            continue
        conn.execute(
            sa.update(table).where(*(c == v for c, v in zip(pk, key, strict=True))).values(row)
        )
        report.imported[name] = report.imported.get(name, 0) + 1


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
