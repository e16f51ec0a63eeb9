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
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.models import CompressionRecord, HistoryWindow, RecoveredFile
from agentkeep.models.common import to_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store._records import as_model, json_size, utc
from agentkeep.store._run_checks import check_ref
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


def require_session(conn: Connection, tenant_id: str, session_id: str) -> None:
    """``NotFound`` unless the session exists (records belong to one)."""
    found = conn.execute(
        sa.select(st.c.id).where(st.c.tenant_id == tenant_id, st.c.id == session_id)
    ).first()
    if found is None:
        raise NotFound("session", session_id)


class History(Resource):
    """``store.history``: a session's history windows, compression records and recovered files."""

    kind = "session record"

    def save_window(self, session_id: str, window: HistoryWindow | dict[str, Any]) -> HistoryWindow:
        """Store a history window (KODE's ``saveHistoryWindow``); the same ``id`` replaces it."""
        return self._save("history_window", HistoryWindow, session_id, window, "window")

    def windows(self, session_id: str) -> builtins.list[HistoryWindow]:
        """The session's history windows, oldest first (KODE's ``loadHistoryWindows``)."""
        return self._load("history_window", HistoryWindow, session_id)

    def save_compression(
        self, session_id: str, record: CompressionRecord | dict[str, Any]
    ) -> CompressionRecord:
        """Store a compression record (KODE's ``saveCompressionRecord``)."""
        return self._save("compression", CompressionRecord, session_id, record, "record")

    def compressions(self, session_id: str) -> builtins.list[CompressionRecord]:
        """The session's compression records, oldest first (KODE's ``loadCompressionRecords``)."""
        return self._load("compression", CompressionRecord, session_id)

    def save_recovered_file(
        self, session_id: str, file: RecoveredFile | dict[str, Any]
    ) -> RecoveredFile:
        """Store a recovered file (KODE's ``saveRecoveredFile``); the same ``path`` replaces it."""
        return self._save("recovered_file", RecoveredFile, session_id, file, "file")

    def recovered_files(self, session_id: str) -> builtins.list[RecoveredFile]:
        """The session's recovered files, oldest first (KODE's ``loadRecoveredFiles``)."""
        return self._load("recovered_file", RecoveredFile, session_id)

    def delete(self, session_id: str, *, kind: str | None = None) -> int:
        """Delete the session's records (of one ``kind`` if given); how many went."""
        check_ref(session_id, "session_id")
        where = [t.c.tenant_id == self.tenant_id, t.c.session_id == session_id]
        if kind is not None:
            if kind not in KINDS:
                raise InvalidInput(f"must be one of {', '.join(KINDS)}", field="kind")
            where.append(t.c.kind == kind)
        with self._core.write("deleting session records") as conn:
            return int(conn.execute(sa.delete(t).where(*where)).rowcount)

    # -- internals ----------------------------------------------------------------------

    def _save(self, kind: str, model: type[M], session_id: str, value: Any, field: str) -> M:
        check_ref(session_id, "session_id")
        record = as_model(model, value, field)
        data = record.model_dump(mode="json")
        size = json_size(
            data, field, self._core.limits.record_max_bytes, "AGENTKEEP_RECORD_MAX_BYTES"
        )
        ident = str(getattr(record, KINDS[kind][1]))
        recorded = to_micros(utc(cast(Any, record).timestamp))
        now = utcnow_micros()
        insert = self._core.dialect.insert(t)
        stmt = insert.values(
            tenant_id=self.tenant_id,
            session_id=session_id,
            kind=kind,
            id=ident,
            value=data,
            size_bytes=size,
            recorded_at=recorded,
            created_at=now,
            updated_at=now,
        ).on_conflict_do_update(
            index_elements=[t.c.tenant_id, t.c.session_id, t.c.kind, t.c.id],
            set_={
                "value": insert.excluded.value,
                "size_bytes": insert.excluded.size_bytes,
                "recorded_at": insert.excluded.recorded_at,
                "updated_at": insert.excluded.updated_at,
            },
        )
        with self._core.write("saving a session record") as conn:
            require_session(conn, self.tenant_id, session_id)
            conn.execute(stmt)
        return model.model_validate(data, strict=False)

    def _load(self, kind: str, model: type[M], session_id: str) -> builtins.list[M]:
        check_ref(session_id, "session_id")
        stmt = (
            sa.select(t.c.value)
            .where(t.c.tenant_id == self.tenant_id, t.c.session_id == session_id, t.c.kind == kind)
            .order_by(t.c.recorded_at, t.c.id)
        )
        with self._core.read() as conn:
            return [model.model_validate(v, strict=False) for (v,) in conn.execute(stmt)]
