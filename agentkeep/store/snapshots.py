"""Snapshots: a labelled point (``seq``) of a session's history with its state.

A snapshot does not move: its messages (``messages(snapshot_id)``) stay what
they were when it was taken, whatever is edited or deleted later (see
:mod:`agentkeep.store.snapshot_content`). Fork from one with
``store.sessions.fork(session_id, snapshot_id=...)``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models import Message, Page, Snapshot
from agentkeep.models.common import Order, check_metadata, utcnow_micros
from agentkeep.store._base import Resource, row_times
from agentkeep.store._listing import Filters
from agentkeep.store._run_checks import check_ref
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, op
from agentkeep.store._validate import check_object, opt_text, require_str
from agentkeep.store.messages import to_message
from agentkeep.store.schema import sessions as st
from agentkeep.store.schema import snapshots as t
from agentkeep.store.snapshot_content import snapshot_steps

__all__ = ["Snapshots"]


_POINT = sa.select(st.c.last_seq, st.c.state).where(
    st.c.tenant_id == sa.bindparam("t"), st.c.id == sa.bindparam("s")
)


def to_snapshot(row: Mapping[str, Any]) -> Snapshot:
    return Snapshot.model_construct(**row_times(row, "created_at"))


class Snapshots(Resource):
    """``store.snapshots``: saved points of this tenant's sessions."""

    kind = "snapshot"

    @op
    def create(
        self,
        session_id: str,
        *,
        label: str | None = None,
        state: dict[str, Any] | None = None,
        seq: int | None = None,
        metadata: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Op[Snapshot]:
        """Save a point of a session: ``seq`` (default: its last message) and a state.

        ``state`` defaults to the session's current state; ``seq`` may not be
        past the session's ``last_seq``. One write: the session's point read, then the
        snapshot inserted.
        """
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
            raise InvalidInput("must be a non-negative integer", field="seq")
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "id": require_str(id, "id", max_len=64) if id is not None else new_id("snap"),
            "session_id": require_str(session_id, "session_id", max_len=64),
            "label": opt_text(label, "label", 256),
            "metadata": check_metadata(metadata),
        }
        if state is not None:
            values["state"] = check_object(state, "state")
            try:
                json.dumps(values["state"])
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"must be JSON-serializable ({exc})", field="state") from exc
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[dict[str, Any]]:
            found = yield Stmt(sql.compiled(_POINT), {"t": tenant, "s": session_id})
            if not found:
                raise NotFound("session", session_id)
            last_seq, current = found[0]
            at = int(last_seq) if seq is None else seq
            if at > last_seq:
                raise InvalidInput(
                    f"session {session_id!r} has no message at seq {at} (last is {last_seq})",
                    field="seq",
                )
            row = {**values, "seq": at, "created_at": utcnow_micros()}
            row.setdefault("state", dict(sql.load_any(current)))
            # (no lock held between the two: on PostgreSQL's autocommit connections each
            # commits alone, as the read and insert of a transaction at READ COMMITTED would)
            yield Stmt(sql.insert_row(t), sql.insert_params(t, row), COUNT)
            return row

        created = yield Write("creating a snapshot", steps)
        return to_snapshot(created)

    @op
    def get(self, snapshot_id: str) -> Op[Snapshot]:
        """A snapshot by id; one statement, compiled once per dialect."""
        return to_snapshot((yield from self._read_row(t, snapshot_id, "reading a snapshot")))

    @op
    def messages(self, snapshot_id: str) -> Op[builtins.list[Message]]:
        """The snapshot's messages as they were when it was taken, in seq order.

        Messages edited or deleted since come back as they were; messages
        appended since are not there. One read of three statements.
        """
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[builtins.list[dict[str, Any]] | None]:
            return snapshot_steps(sql, tenant, snapshot_id)

        rows = yield Read("reading a snapshot's messages", steps)
        if rows is None:
            raise NotFound("snapshot", snapshot_id)
        return [to_message(r) for r in rows]

    @op
    def list(
        self,
        session_id: str,
        *,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
    ) -> Op[Page[Snapshot]]:
        """A session's snapshots, newest first by default.

        One read (a second for an empty first page: is there such a session), its
        statement compiled once per shape.
        """
        where = Filters()
        where.equal((t.c.session_id, check_ref(session_id, "session_id")))
        page = yield from self._page_op(
            t,
            where,
            to_snapshot,
            what="listing snapshots",
            limit=limit,
            after=after,
            before=before,
            order=order,
        )
        return (yield from self._session_page_op(session_id, page, after, before))

    @op
    def delete(self, snapshot_id: str) -> Op[None]:
        """Delete a snapshot; sessions forked from it stay."""
        yield from self._delete_row(t, snapshot_id, "deleting a snapshot")
