"""Export a database (or a tenant, a session, a user, recent rows) as JSON Lines.

The format is :mod:`agentkeep.store.dump`'s: a header line, then every row of
every table in dependency order. It streams: rows are read in batches from one
snapshot and written as they come, so memory stays flat however many there are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.models.common import to_micros
from agentkeep.store import Store
from agentkeep.store.backup_files import revision_of, snapshot_connection
from agentkeep.store.dump import Progress, dump_tables, open_text, write_dump
from agentkeep.store.graph_items import namespace_has_label
from agentkeep.store.schema import (
    graph_store_items,
    response_events,
    response_items,
    responses,
    runs,
    sessions,
)

__all__ = ["ExportFilter", "ExportResult", "export", "export_selection"]

Where = list[sa.ColumnElement[bool]]


@dataclass(frozen=True)
class ExportFilter:
    """What to export: everything by default; each field narrows it."""

    tenant: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None

    def as_header(self) -> dict[str, Any]:
        out = {
            "tenant": self.tenant,
            "session": self.session_id,
            "user": self.user_id,
            "since": self.since.isoformat() if self.since else None,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class ExportResult:
    """Rows written per table."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _session_scope(flt: ExportFilter) -> tuple[Any, Any] | None:
    """Subqueries of the session ids and run ids a session or user filter keeps."""
    if flt.session_id is None and flt.user_id is None:
        return None
    conds: Where = []
    if flt.tenant is not None:
        conds.append(sessions.c.tenant_id == flt.tenant)
    if flt.session_id is not None:
        conds.append(sessions.c.id == flt.session_id)
    if flt.user_id is not None:
        conds.append(sessions.c.user_id == flt.user_id)
    session_ids = sa.select(sessions.c.id).where(*conds).scalar_subquery()
    run_ids = sa.select(runs.c.id).where(runs.c.session_id.in_(session_ids)).scalar_subquery()
    return session_ids, run_ids


def _scoped(table: sa.Table, scope: tuple[Any, Any], user_id: str | None) -> Where | None:
    """The condition keeping ``table``'s rows of the scoped sessions (None: the table is left out)."""
    session_ids, run_ids = scope
    if table is sessions:
        return [table.c.id.in_(session_ids)]
    ors: Where = []
    if "session_id" in table.c:
        ors.append(table.c.session_id.in_(session_ids))
    if "run_id" in table.c:
        ors.append(table.c.run_id.in_(run_ids))
    if "thread_id" in table.c:  # graph checkpoints of a thread named by a session id
        ors.append(table.c.thread_id.in_(session_ids))
    if "conversation_id" in table.c:  # responses in one of the scoped conversations
        ors.append(table.c.conversation_id.in_(session_ids))
    if table is runs:
        ors.append(table.c.id.in_(run_ids))
    if user_id is not None and "user_id" in table.c:
        ors.append(table.c.user_id == user_id)
    if user_id is not None and table is graph_store_items:  # memories under the user's id
        ors.append(namespace_has_label(table.c.namespace, user_id))
    return [sa.or_(*ors)] if ors else None


# Tables whose rows go wherever their response goes: they have no session column,
# and their own timestamps (if any) are not the response's (its events predate its end).
_OF_A_RESPONSE = (response_items, response_events)


def _of_kept_responses(table: sa.Table, kept: Where) -> Where:
    """The condition keeping ``table``'s rows of the responses that ``kept`` keeps."""
    ids = sa.select(responses.c.tenant_id, responses.c.id).where(*kept)
    return [sa.tuple_(table.c.tenant_id, table.c.response_id).in_(ids)]


def export_selection(flt: ExportFilter) -> list[tuple[sa.Table, Sequence[sa.ColumnElement[bool]]]]:
    """Each exported table with the conditions its rows must meet."""
    scope = _session_scope(flt)
    since = to_micros(flt.since) if flt.since is not None else None
    out: list[tuple[sa.Table, Sequence[sa.ColumnElement[bool]]]] = []
    kept: dict[sa.Table, Where] = {}
    for table in dump_tables():
        if table in _OF_A_RESPONSE:
            if responses not in kept:
                continue  # no response is exported (dump order puts responses first)
            where_parent = kept[responses]
            out.append((table, _of_kept_responses(table, where_parent) if where_parent else []))
            continue
        where: Where = []
        if flt.tenant is not None:
            where.append(table.c.tenant_id == flt.tenant)
        if scope is not None:
            scoped = _scoped(table, scope, flt.user_id)
            if scoped is None:
                continue
            where += scoped
        if since is not None:
            stamp = table.c.get("updated_at")
            stamp = stamp if stamp is not None else table.c.get("created_at")
            if stamp is not None:
                where.append(stamp >= since)
        kept[table] = where
        out.append((table, where))
    return out


def export(
    store: Store,
    out: str | Path | IO[str],
    flt: ExportFilter | None = None,
    *,
    progress: Progress | None = None,
    compression: str | None = None,
) -> ExportResult:
    """Write the database's rows (narrowed by ``flt``) to ``out``: a path or a text stream.

    A path ending in ``.gz`` is gzip-compressed, ``.zst`` zstd-compressed;
    ``compression`` (``gzip``, ``zstd``) compresses a path whatever its name.

    Every tenant is exported unless ``flt.tenant`` is given. One snapshot
    is read, so the header's counts are exactly the rows that follow.
    """
    flt = flt or ExportFilter()
    if flt.session_id is not None and not isinstance(flt.session_id, str):
        raise InvalidInput("must be a session id", field="session")
    selection = export_selection(flt)
    dialect = store._core.dialect
    with snapshot_connection(dialect) as conn:
        header = {"revision": revision_of(conn), "filters": flt.as_header(), "created_at": _now()}
        if isinstance(out, (str, Path)):
            staged = f"{out}.partial"  # renamed when complete: no half file under the real name
            try:
                with open_text(staged, "w", named=out, compression=compression) as handle:
                    counts = write_dump(conn, handle, selection, header, progress)
                os.replace(staged, out)
            except BaseException:
                Path(staged).unlink(missing_ok=True)
                raise
        else:
            counts = write_dump(conn, out, selection, header, progress)
    return ExportResult(counts)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
