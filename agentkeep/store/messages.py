"""Messages: gapless per-session ``seq``, idempotent appends, filtered reads.

Appending takes the session row (``UPDATE sessions ... RETURNING last_seq``) in
the writing transaction, so concurrent appends from any number of processes
get unique, gapless positions; it writes one row and never touches earlier
ones, so appending stays O(1) in the length of the history.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models import Message, NewMessage, Page
from agentkeep.models.common import Order, check_limit, check_metadata, from_micros, utcnow_micros
from agentkeep.store._base import Resource, Row, paginate, time_range
from agentkeep.store._content import check_role, content_types, normalize_content
from agentkeep.store._validate import UNSET, check_object, opt_text
from agentkeep.store.schema import messages as t
from agentkeep.store.schema import sessions as st

__all__ = ["Messages"]

_COLUMNS = [c for c in t.c if c.name != "content_types"]


def to_message(row: Row) -> Message:
    data = {c.name: row[c.name] for c in _COLUMNS}
    data["created_at"] = from_micros(data["created_at"])
    return Message.model_construct(**data)


class Messages(Resource):
    """``store.messages``: the messages of this tenant's sessions."""

    kind = "message"

    def _prepare(
        self, session_id: str, item: NewMessage | Mapping[str, Any], index: int | None
    ) -> dict[str, Any]:
        prefix = "" if index is None else f"messages[{index}]."
        get = item.get if isinstance(item, Mapping) else lambda k, d=None: getattr(item, k, d)
        blocks = normalize_content(get("content"), f"{prefix}content")
        key = opt_text(get("idempotency_key"), f"{prefix}idempotency_key", 256)
        ident = get("id")
        return {
            "tenant_id": self.tenant_id,
            "id": opt_text(ident, f"{prefix}id", 64) or new_id("msg"),
            "session_id": session_id,
            "role": check_role(get("role"), f"{prefix}role"),
            "content": blocks,
            "content_types": content_types(blocks),
            "run_id": opt_text(get("run_id"), f"{prefix}run_id", 64),
            "agent_id": opt_text(get("agent_id"), f"{prefix}agent_id", 256),
            "idempotency_key": key,
            "metadata": check_metadata(get("metadata"), f"{prefix}metadata"),
            "extra": check_object(get("extra"), f"{prefix}extra"),
        }

    def append(
        self,
        session_id: str,
        role: str,
        content: str | list[dict[str, Any]],
        *,
        run_id: str | None = None,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
        metadata: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Message:
        """Append one message, durably; returns it with its ``seq``.

        With an ``idempotency_key`` already used in this session, returns the
        stored message instead of writing a duplicate.
        """
        row = self._prepare(
            session_id,
            {
                "role": role,
                "content": content,
                "run_id": run_id,
                "agent_id": agent_id,
                "idempotency_key": idempotency_key,
                "metadata": metadata,
                "extra": extra,
                "id": id,
            },
            None,
        )
        return self._write([row])[0]

    def append_many(
        self, session_id: str, messages: Sequence[NewMessage | Mapping[str, Any]]
    ) -> list[Message]:
        """Append several messages in one transaction, in the given order."""
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise InvalidInput("must be a list of messages", field="messages")
        rows = [self._prepare(session_id, m, i) for i, m in enumerate(messages)]
        if not rows:
            return []
        return self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> list[Message]:
        session_id = rows[0]["session_id"]
        keys = [r["idempotency_key"] for r in rows if r["idempotency_key"] is not None]
        if len(set(keys)) != len(keys):
            raise InvalidInput("repeats an idempotency_key", field="messages")
        try:
            return self._insert(session_id, rows, keys)
        except Conflict:
            if not keys:
                raise
            # A concurrent writer stored one of these keys first: answer with what it stored.
            return self._insert(session_id, rows, keys)

    def _insert(
        self, session_id: str, rows: list[dict[str, Any]], keys: list[str]
    ) -> list[Message]:
        with self._core.write("appending a message") as conn:
            existing: dict[str, Message] = {}
            if keys:
                found = conn.execute(
                    sa.select(t).where(
                        t.c.tenant_id == self.tenant_id,
                        t.c.session_id == session_id,
                        t.c.idempotency_key.in_(keys),
                    )
                ).mappings()
                existing = {r["idempotency_key"]: to_message(r) for r in found}
            new = [
                r
                for r in rows
                if r["idempotency_key"] is None or r["idempotency_key"] not in existing
            ]
            if new:
                now = utcnow_micros()
                last = conn.execute(
                    sa.update(st)
                    .where(st.c.tenant_id == self.tenant_id, st.c.id == session_id)
                    .values(
                        last_seq=st.c.last_seq + len(new),
                        message_count=st.c.message_count + len(new),
                        last_activity_at=now,
                    )
                    .returning(st.c.last_seq)
                ).scalar()
                if last is None:
                    raise NotFound("session", session_id)
                first = last - len(new) + 1
                for i, r in enumerate(new):
                    r["seq"] = first + i
                    r["created_at"] = now
                conn.execute(sa.insert(t), new)
            return [
                existing[r["idempotency_key"]]
                if r["idempotency_key"] in existing
                else to_message(r)
                for r in rows
            ]

    def get(self, message_id: str, *, session_id: str | None = None) -> Message:
        """A message by id (and, if given, only in that session)."""
        with self._core.read() as conn:
            row = self._get_row(conn, t, message_id)
            if session_id is not None and row["session_id"] != session_id:
                raise NotFound("message", message_id)
            return to_message(row)

    def update(
        self,
        message_id: str,
        *,
        metadata: dict[str, str] = UNSET,
        extra: dict[str, Any] = UNSET,
        content: str | list[dict[str, Any]] = UNSET,
    ) -> Message:
        """Change a message's metadata, extra fields or content; its place stays."""
        changes: dict[str, Any] = {}
        if metadata is not UNSET:
            changes["metadata"] = check_metadata(metadata)
        if extra is not UNSET:
            changes["extra"] = check_object(extra, "extra")
        if content is not UNSET:
            changes["content"] = normalize_content(content)
            changes["content_types"] = content_types(changes["content"])
        with self._core.write("updating a message") as conn:
            row = self._get_row(conn, t, message_id)
            if changes:
                conn.execute(
                    sa.update(t)
                    .where(t.c.tenant_id == self.tenant_id, t.c.id == message_id)
                    .values(changes)
                )
            return to_message({**row, **changes})

    def delete(self, message_id: str) -> None:
        """Delete one message; the others keep their ``seq``."""
        with self._core.write("deleting a message") as conn:
            row = conn.execute(
                sa.delete(t)
                .where(t.c.tenant_id == self.tenant_id, t.c.id == message_id)
                .returning(t.c.session_id)
            ).first()
            if row is None:
                raise NotFound("message", message_id)
            conn.execute(
                sa.update(st)
                .where(st.c.tenant_id == self.tenant_id, st.c.id == row.session_id)
                .values(message_count=st.c.message_count - 1)
            )

    def list(
        self,
        session_id: str | None = None,
        *,
        role: str | None = None,
        content_type: str | None = None,
        run_id: str | None = None,
        agent_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after_seq: int | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "asc",
    ) -> Page[Message]:
        """Messages of a session in ``seq`` order, or across sessions (by id) when no session is given."""
        where: list[sa.ColumnElement[bool]] = []
        if session_id is not None:
            where.append(t.c.session_id == session_id)
        if role is not None:
            where.append(t.c.role == check_role(role))
        if content_type is not None:
            where.append(t.c.content_types.contains(f",{content_type},", autoescape=True))
        if run_id is not None:
            where.append(t.c.run_id == run_id)
        if agent_id is not None:
            where.append(t.c.agent_id == agent_id)
        if after_seq is not None:
            where.append(t.c.seq > after_seq)
        where += time_range(t.c.created_at, created_after, created_before)
        with self._core.read() as conn:
            page = paginate(
                conn,
                t,
                where,
                to_message,
                tenant_id=self.tenant_id,
                limit=limit,
                after=after,
                before=before,
                order=order,
                sort=t.c.seq if session_id is not None else None,
            )
            if session_id is not None and not page.items and after is None and before is None:
                self._require_session(conn, session_id)
            return page

    def recent(self, session_id: str, n: int = 20) -> builtins.list[Message]:
        """The last ``n`` messages of a session, oldest first."""
        check_limit(n, "n")
        with self._core.read() as conn:
            rows = list(
                conn.execute(
                    sa.select(t)
                    .where(t.c.tenant_id == self.tenant_id, t.c.session_id == session_id)
                    .order_by(t.c.seq.desc())
                    .limit(n)
                ).mappings()
            )
            if not rows:
                self._require_session(conn, session_id)
        rows.reverse()
        return [to_message(r) for r in rows]

    def _require_session(self, conn: sa.Connection, session_id: str) -> None:
        found = conn.execute(
            sa.select(st.c.id).where(st.c.tenant_id == self.tenant_id, st.c.id == session_id)
        ).first()
        if found is None:
            raise NotFound("session", session_id)
