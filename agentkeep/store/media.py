"""``store.media``: KODE's media cache of a session, with the files' bytes as bytes.

One row per (session, ``key``) in ``media_cache``: the provider, MIME type,
size, the provider's file id or URI, and optionally the file's bytes in a
BLOB (SQLite) or bytea (PostgreSQL) column, never base64 in JSON. Bytes over
``AGENTKEEP_MEDIA_MAX_BYTES`` (20 MiB) are refused, naming the record's
``data``, and nothing is written. Listings leave the bytes out unless asked
(``with_data=True``); :meth:`MediaCache.get` returns them. The cache goes with
its session (deleted with it, erased with its user; exports carry the bytes
as base64 text, as they carry every binary column).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.models import MediaCacheRecord
from agentkeep.models.common import from_micros, to_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store._records import as_model, check_size, utc
from agentkeep.store._run_checks import check_ref
from agentkeep.store._steps import COUNT, MANY, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store.history import upsert_in_session
from agentkeep.store.schema import media_cache as t

__all__ = ["MediaCache"]

_LISTED = [c for c in t.c if c.name != "data"]
_KEYS = ("tenant_id", "session_id", "key")
_OF_SESSION = (
    t.c.tenant_id == sa.bindparam("tenant_id"),
    t.c.session_id == sa.bindparam("session_id"),
)
_LIST = sa.select(*_LISTED).where(*_OF_SESSION).order_by(t.c.created_at, t.c.key)
_LIST_WITH_DATA = sa.select(*t.c).where(*_OF_SESSION).order_by(t.c.created_at, t.c.key)
_OF_KEY = (*_OF_SESSION, t.c.key == sa.bindparam("key"))
_GET = sa.select(*t.c).where(*_OF_KEY)
_DELETE = sa.delete(t).where(*_OF_KEY)
_CLEAR = sa.delete(t).where(*_OF_SESSION)


def _to_record(row: Mapping[Any, Any], *, with_data: bool = True) -> MediaCacheRecord:
    data = row.get("data") if with_data else None
    return MediaCacheRecord.model_construct(
        key=row["key"],
        provider=row["provider"],
        mime_type=row["mime_type"],
        size_bytes=row["size_bytes"],
        file_id=row["file_id"],
        file_uri=row["file_uri"],
        created_at=from_micros(row["created_at"]),
        data=None if data is None else bytes(data),
    )


class MediaCache(Resource):
    """``store.media``: media files a session's agent used, with their bytes when kept here."""

    kind = "media cache record"

    @op
    def save(
        self, session_id: str, records: Sequence[MediaCacheRecord | dict[str, Any]]
    ) -> Op[builtins.list[MediaCacheRecord]]:
        """Replace the session's whole cache with ``records`` (KODE's ``saveMediaCache``).

        Every record is checked before anything is written; one transaction (the
        session's check, the delete and the insert).
        """
        check_ref(session_id, "session_id")
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
            raise InvalidInput("must be a list of media cache records", field="records")
        rows = [self._row(session_id, r, f"records[{i}]") for i, r in enumerate(records)]
        keys = [row["key"] for row in rows]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise InvalidInput(f"key {dup!r} is given twice", field="records")
        sql = self._core.message_sql
        mine = {"tenant_id": self.tenant_id, "session_id": session_id}

        def steps() -> Steps[None]:
            found = yield Stmt(sql.session_exists, {"t": self.tenant_id, "s": session_id})
            if not found:
                raise NotFound("session", session_id)
            yield sql.built_once(_CLEAR).stmt(mine, COUNT)
            if rows:
                yield Stmt(sql.insert_row(t), [sql.insert_params(t, r) for r in rows], MANY)

        yield Write("saving a media cache", steps, atomic=True)
        return [_to_record(row) for row in rows]

    @op
    def put(
        self, session_id: str, record: MediaCacheRecord | dict[str, Any]
    ) -> Op[MediaCacheRecord]:
        """Add one record, or replace the one with its ``key``: one statement, made only
        while the session exists."""
        check_ref(session_id, "session_id")
        row = self._row(session_id, record, "record")
        yield from upsert_in_session(self._core, t, _KEYS, row, "saving a media cache record")
        return _to_record(row)

    @op
    def list(
        self, session_id: str, *, with_data: bool = False
    ) -> Op[builtins.list[MediaCacheRecord]]:
        """The session's records, oldest first (KODE's ``loadMediaCache``); bytes only if asked."""
        check_ref(session_id, "session_id")
        if not isinstance(with_data, bool):
            raise InvalidInput("must be a boolean", field="with_data")
        sql = self._core.message_sql
        listing = _LIST_WITH_DATA if with_data else _LIST
        params = {"tenant_id": self.tenant_id, "session_id": session_id}
        rows = yield Read("reading a media cache", single(sql.built_once(listing).stmt(params)))
        names = listing.selected_columns.keys()
        return [_to_record(dict(zip(names, r, strict=True)), with_data=with_data) for r in rows]

    @op
    def get(self, session_id: str, key: str) -> Op[MediaCacheRecord]:
        """One record with its bytes; ``NotFound`` if there is none."""
        check_ref(session_id, "session_id")
        check_ref(key, "key")
        sql = self._core.message_sql
        params = {"tenant_id": self.tenant_id, "session_id": session_id, "key": key}
        rows = yield Read("reading a media cache record", single(sql.built_once(_GET).stmt(params)))
        if not rows:
            raise NotFound("media cache record", f"{session_id}/{key}")
        return _to_record(sql.named_row(t, rows[0]))

    @op
    def delete(self, session_id: str, key: str) -> Op[None]:
        """Delete one record; ``NotFound`` if there is none."""
        check_ref(session_id, "session_id")
        check_ref(key, "key")
        sql = self._core.message_sql
        params = {"tenant_id": self.tenant_id, "session_id": session_id, "key": key}
        gone = yield Write(
            "deleting a media cache record", single(sql.built_once(_DELETE).stmt(params, COUNT))
        )
        if gone == 0:
            raise NotFound("media cache record", f"{session_id}/{key}")

    def _row(self, session_id: str, value: Any, field: str) -> dict[str, Any]:
        record = as_model(MediaCacheRecord, value, field)
        size = record.size_bytes
        if record.data is not None:
            limit = self._core.limits.media_max_bytes
            check_size(len(record.data), limit, f"{field}.data", "AGENTKEEP_MEDIA_MAX_BYTES")
            if size is None:
                size = len(record.data)
            elif size != len(record.data):
                raise InvalidInput(
                    f"is {size} but data is {len(record.data)} bytes", field=f"{field}.size_bytes"
                )
        elif size is None:
            raise InvalidInput("is required when there is no data", field=f"{field}.size_bytes")
        now = utcnow_micros()
        created = to_micros(utc(record.created_at)) if record.created_at is not None else now
        return {
            "tenant_id": self.tenant_id,
            "session_id": session_id,
            "key": record.key,
            "provider": record.provider,
            "mime_type": record.mime_type,
            "size_bytes": size,
            "file_id": record.file_id,
            "file_uri": record.file_uri,
            "data": record.data,
            "created_at": created,
            "updated_at": now,
        }
