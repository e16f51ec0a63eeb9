"""Copy a whole database to another (SQLite <-> PostgreSQL <-> memory), streaming.

The source is read from one snapshot, table by table in dependency order, in
batches; the destination is written in one transaction, and its counts are
compared with the source's before it commits. Any failure rolls the
destination back: it is left as it was (a schema created for the copy stays,
empty).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

import agentkeep
from agentkeep.errors import Conflict
from agentkeep.store import Store, migrate, usage_days
from agentkeep.store.backup_files import snapshot_connection
from agentkeep.store.bulk import insert_rows
from agentkeep.store.dialects import Dialect, dialect_for_url
from agentkeep.store.dump import Progress, count_rows, dump_tables, stream_rows
from agentkeep.store.schema import usage_days as usage_days_table

__all__ = ["CopyReport", "copy_database", "copy_into", "copy_rows", "is_empty", "wipe"]

WRITE_BATCH = 5000  # rows per insert (PostgreSQL: one COPY; SQLite: one executemany)


@dataclass
class CopyReport:
    """Rows copied per table (equal in source and destination when it returns)."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def is_empty(conn: Connection) -> bool:
    """Whether no dumped table of ``conn``'s database holds a row."""
    for table in dump_tables():
        if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None:
            return False
    return True


def wipe(conn: Connection) -> None:
    for table in reversed(dump_tables()):
        conn.execute(sa.delete(table))
    conn.execute(sa.delete(usage_days_table))  # derived from llm_usage


def copy_rows(
    source: Connection,
    target: Connection,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every dumped table's rows from ``source`` into ``target`` (both at head), checked by counts."""
    if not is_empty(target):
        if not force:
            raise Conflict("the destination database is not empty; use --force to replace its data")
        wipe(target)
    report = CopyReport()
    for table in dump_tables():
        expected = count_rows(source, table)
        batch: list[dict[str, Any]] = []
        for row in stream_rows(source, table):
            batch.append(row)
            if len(batch) >= WRITE_BATCH:
                insert_rows(target, table, batch)
                if progress is not None:
                    progress(table.name, len(batch))
                batch = []
        if batch:
            insert_rows(target, table, batch)
            if progress is not None:
                progress(table.name, len(batch))
        copied = count_rows(target, table)
        if copied != expected:
            raise Conflict(
                f"{table.name}: the source has {expected} rows, the copy {copied}; rolled back"
            )
        report.counts[table.name] = copied
    usage_days.refresh_all(target)  # derived, not copied: summed again from the copied rows
    return report


def copy_database(
    source_url: str,
    target_url: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy the database at ``source_url`` (at head) into ``target_url`` (created or upgraded)."""
    source = dialect_for_url(source_url)
    try:
        migrate.check_revision(source)
        with agentkeep.connect(target_url, auto_migrate=True) as target:
            return copy_into(source, target, force=force, progress=progress)
    finally:
        source.dispose()


def copy_into(
    source: Dialect, target: Store, *, force: bool = False, progress: Progress | None = None
) -> CopyReport:
    """Copy from one snapshot of ``source`` into ``target``, in one write transaction of it."""
    with snapshot_connection(source) as src, target._core.write("copying") as dst:
        return copy_rows(src, dst, force=force, progress=progress)
