"""``store.history``: KODE's history windows, compression records and recovered files.

Typed records of a session (KODE's ``agentId``), one row each in
``session_records`` (``kind``: ``history_window``, ``compression``,
``recovered_file``) with the record as JSON. A record is keyed by its ``id``
(a recovered file by its ``path``) within its session and kind: saving it
again replaces it. Listings come oldest first (by the record's
``timestamp``). The records go with their session (deleted with it, erased
with its user, exported with it). A record whose JSON is over
``AGENTKEEP_RECORD_MAX_BYTES`` (8 MiB) is refused, naming its largest field,
and nothing is written.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from pydantic import BaseModel

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.models import CompressionRecord, HistoryWindow, RecoveredFile
from agentkeep.models.common import to_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store._core import Core
from agentkeep.store._records import as_model, json_size, utc
from agentkeep.store._run_checks import check_ref
from agentkeep.store._steps import COUNT, Op, Read, Write, op, single
from agentkeep.store.message_sql import MessageSQL, dump_json
from agentkeep.store.schema import session_records as t
from agentkeep.store.schema import sessions as st

__all__ = ["KINDS", "History"]

M = TypeVar("M", bound=BaseModel)

KINDS: dict[str, tuple[type[BaseModel], str]] = {
    "history_window": (HistoryWindow, "id"),
    "compression": (CompressionRecord, "id"),
    "recovered_file": (RecoveredFile, "path"),
}
"""Each kind of record: its model and the field that keys it."""


def _session_upsert(
    sql: MessageSQL,
    dialect_insert: Callable[[sa.Table], Any],
    table: sa.Table,
    keys: Sequence[str],
) -> sa.ClauseElement:
    """An upsert of one row of a session's ``table`` (each column bound by its name, JSON
    ones as their text), made only while the session exists: it returns a row, else none
    (``NotFound``). One statement, so one write on PostgreSQL's autocommit connections;
    the row with the same ``keys`` is replaced but for its ``created_at``."""
    exists = sa.exists().where(
        st.c.tenant_id == sa.bindparam("tenant_id"), st.c.id == sa.bindparam("session_id")
    )
    names = [c.name for c in table.c]
    values = [
        sql.json_param(c.name)
        if isinstance(c.type, sa.JSON)
        else sa.bindparam(c.name, type_=c.type)
        for c in table.c
    ]
    insert = dialect_insert(table).from_select(names, sa.select(*values).where(exists))
    same = [*keys, "created_at"]
    upsert: sa.ClauseElement = insert.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={n: insert.excluded[n] for n in names if n not in same},
    ).returning(sa.literal_column("1"))
    return upsert


def upsert_in_session(
    core: Core, table: sa.Table, keys: Sequence[str], row: dict[str, Any], what: str
) -> Op[None]:
    """Write ``row`` of a session's ``table`` by :func:`_session_upsert` (compiled once per
    table; the row with the same ``keys`` replaced but for when it was first stored):
    ``NotFound`` if the session is not there."""
    sql, insert = core.message_sql, core.dialect.insert
    shape = sql.shaped(
        ("session_upsert", table.name),
        lambda: _session_upsert(sql, insert, table, keys),
    )
    saved = yield Write(what, single(shape.stmt(row)))
    if not saved:
        raise NotFound("session", row["session_id"])


class History(Resource):
    """``store.history``: a session's history windows, compression records and recovered files."""

    kind = "session record"

    @op
    def save_window(
        self, session_id: str, window: HistoryWindow | dict[str, Any]
    ) -> Op[HistoryWindow]:
        """Store a history window (KODE's ``saveHistoryWindow``); the same ``id`` replaces it."""
        return (
            yield from self._save(HistoryWindow, "history_window", session_id, window, "window")
        )

    @op
    def windows(self, session_id: str) -> Op[builtins.list[HistoryWindow]]:
        """The session's history windows, oldest first (KODE's ``loadHistoryWindows``)."""
        return (yield from self._load(HistoryWindow, "history_window", session_id))

    @op
    def save_compression(
        self, session_id: str, record: CompressionRecord | dict[str, Any]
    ) -> Op[CompressionRecord]:
        """Store a compression record (KODE's ``saveCompressionRecord``)."""
        return (
            yield from self._save(CompressionRecord, "compression", session_id, record, "record")
        )

    @op
    def compressions(self, session_id: str) -> Op[builtins.list[CompressionRecord]]:
        """The session's compression records, oldest first (KODE's ``loadCompressionRecords``)."""
        return (yield from self._load(CompressionRecord, "compression", session_id))

    @op
    def save_recovered_file(
        self, session_id: str, file: RecoveredFile | dict[str, Any]
    ) -> Op[RecoveredFile]:
        """Store a recovered file (KODE's ``saveRecoveredFile``); the same ``path`` replaces it."""
        return (yield from self._save(RecoveredFile, "recovered_file", session_id, file, "file"))

    @op
    def recovered_files(self, session_id: str) -> Op[builtins.list[RecoveredFile]]:
        """The session's recovered files, oldest first (KODE's ``loadRecoveredFiles``)."""
        return (yield from self._load(RecoveredFile, "recovered_file", session_id))

    @op
    def delete(self, session_id: str, *, kind: str | None = None) -> Op[int]:
        """Delete the session's records (of one ``kind`` if given); how many went."""
        check_ref(session_id, "session_id")
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"must be one of {', '.join(KINDS)}", field="kind")
        sql = self._core.message_sql
        shape = sql.shaped(
            ("session_records_delete", kind is not None),
            functools.partial(_delete, kind is not None),
        )
        params = {"tenant_id": self.tenant_id, "session_id": session_id, "kind": kind}
        gone: int = yield Write("deleting session records", single(shape.stmt(params, COUNT)))
        return gone

    # -- the operations (the async API runs them too) ------------------------------------

    def _save(self, model: type[M], kind: str, session_id: str, value: Any, field: str) -> Op[M]:
        """Store a record of ``kind``: one statement, made only while the session exists."""
        check_ref(session_id, "session_id")
        record = as_model(model, value, field)
        data = record.model_dump(mode="json")
        size = json_size(
            data, field, self._core.limits.record_max_bytes, "AGENTKEEP_RECORD_MAX_BYTES"
        )
        now = utcnow_micros()
        params = {
            "tenant_id": self.tenant_id,
            "session_id": session_id,
            "kind": kind,
            "id": str(getattr(record, KINDS[kind][1])),
            "value": dump_json(data),
            "size_bytes": size,
            "recorded_at": to_micros(utc(cast(Any, record).timestamp)),
            "created_at": now,
            "updated_at": now,
        }
        yield from upsert_in_session(self._core, t, _KEYS, params, "saving a session record")
        return model.model_validate(data, strict=False)

    def _load(self, model: type[M], kind: str, session_id: str) -> Op[builtins.list[M]]:
        """The session's records of ``kind``, oldest first (none without the session)."""
        check_ref(session_id, "session_id")
        sql = self._core.message_sql
        params = {"tenant_id": self.tenant_id, "session_id": session_id, "kind": kind}
        rows = yield Read("reading session records", single(sql.built_once(_LOAD).stmt(params)))
        return [model.model_validate(sql.load_json(v), strict=False) for (v,) in rows]


_KEYS = ("tenant_id", "session_id", "kind", "id")
_OF_SESSION = (
    t.c.tenant_id == sa.bindparam("tenant_id"),
    t.c.session_id == sa.bindparam("session_id"),
)
_LOAD = (
    sa.select(t.c.value)
    .where(*_OF_SESSION, t.c.kind == sa.bindparam("kind"))
    .order_by(t.c.recorded_at, t.c.id)
)


def _delete(of_kind: bool) -> sa.Delete:
    """A session's records (of ``:kind`` when ``of_kind``)."""
    stmt = sa.delete(t).where(*_OF_SESSION)
    return stmt.where(t.c.kind == sa.bindparam("kind")) if of_kind else stmt
