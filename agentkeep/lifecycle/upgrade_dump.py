"""Bring a JSON Lines export or logical backup from an older schema revision to head.

The file's header names the revision it was written at. An older file is
loaded into a scratch SQLite database created at exactly that revision (its
lines checked against that revision's tables first, so a bad line is still
reported by number and field), the scratch database is upgraded to head by
the Alembic revisions themselves, so every row gets what the later revisions
do to rows (new columns' defaults, moved or reshaped values), and it is dumped
again at head. The import or restore then reads that file. A file from a
revision this agentkeep does not know (a newer agentkeep) is refused.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.store import dump, migrate
from agentkeep.store.bulk import insert_rows
from agentkeep.store.compression import DecompressError
from agentkeep.store.dialects import dialect_for_url
from agentkeep.store.dump import FORMAT

__all__ = ["at_head", "file_revision"]

_BATCH = 5000


def file_revision(path: Path) -> str | None:
    """The schema revision in an export file's header (None when it has no header or revision)."""
    try:
        with dump.open_text(path, "r") as lines:
            first = lines.readline()
    except DecompressError as exc:
        raise InvalidInput(f"cannot read {path.name} ({exc})", field="file") from exc
    try:
        header = json.loads(first)
    except ValueError:
        return None  # validation reports the bad header with its line number
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None
    revision = header.get("revision")
    return revision if isinstance(revision, str) else None


@contextmanager
def at_head(path: Path, *, tenant: str | None = None) -> Iterator[tuple[Path, str | None]]:
    """``(file at head, revision it was upgraded from or None)``; a temporary file lives for the block."""
    revision = file_revision(path)
    head = migrate.head_revision()
    if revision is None or revision == head:
        yield path, None
        return
    if not migrate._known(revision):
        raise InvalidInput(
            f"the file is at schema revision {revision!r}, unknown to this agentkeep (head "
            f"{head!r}): it was written by a newer agentkeep; import it with that one",
            field="revision",
        )
    with tempfile.TemporaryDirectory(prefix="agentkeep-upgrade-") as tmp:
        yield _upgrade(path, revision, Path(tmp), tenant), revision


def _upgrade(path: Path, revision: str, folder: Path, tenant: str | None) -> Path:
    from agentkeep.lifecycle.importer import read_rows, validate_file

    scratch = dialect_for_url(f"sqlite:///{folder / 'scratch.db'}")
    try:
        migrate.upgrade(scratch, revision, backup=False)
        with scratch.engine.connect() as conn:
            reflected = sa.MetaData()
            reflected.reflect(conn)
            tables = [
                t
                for t in reflected.sorted_tables
                if t.name not in dump._NOT_EXPORTED and t.name != "alembic_version"
            ]
        # The writer's table order may differ from the reflected one: load with
        # foreign keys off, in file order; the dump at head is in head's order.
        validate_file(path, tenant=tenant, schema=tables, ordered=False)
        with scratch.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            _load(conn, read_rows(path, tenant, tables))
            conn.commit()
        migrate.upgrade(scratch, backup=False)
        out = folder / "at_head.jsonl"
        with scratch.engine.connect() as conn, dump.open_text(out, "w") as handle:
            header = _header(path)
            selection = [(t, ()) for t in dump.tables_in(conn)]
            dump.write_dump(
                conn,
                handle,
                selection,
                {
                    "revision": migrate.head_revision(),
                    "filters": header.get("filters", {}),
                    "upgraded_from": revision,
                },
            )
        return out
    finally:
        scratch.dispose()


def _header(path: Path) -> dict[str, Any]:
    with dump.open_text(path, "r") as lines:
        header = json.loads(lines.readline())
    return header if isinstance(header, dict) else {}


def _load(conn: sa.Connection, rows: Iterator[tuple[sa.Table, dict[str, Any]]]) -> None:
    current: sa.Table | None = None
    batch: list[dict[str, Any]] = []
    for table, row in rows:
        if table is not current or len(batch) >= _BATCH:
            if current is not None and batch:
                insert_rows(conn, current, batch)
            current, batch = table, []
        batch.append(row)
    if current is not None and batch:
        insert_rows(conn, current, batch)
