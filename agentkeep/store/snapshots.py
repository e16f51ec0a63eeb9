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
from agentkeep.store._steps import Op, op
from agentkeep.store._validate import check_object, opt_text, require_str
from agentkeep.store.messages import to_message
from agentkeep.store.schema import sessions as st
from agentkeep.store.schema import snapshots as t
from agentkeep.store.snapshot_content import snapshot_rows

__all__ = ["Snapshots"]


def to_snapshot(row: Mapping[str, Any]) -> Snapshot:
    return Snapshot.model_construct(**row_times(row, "created_at"))


class Snapshots(Resource):
    """``store.snapshots``: saved points of this tenant's sessions."""

    kind = "snapshot"

    def create(
        self,
        session_id: str,
        *,
        label: str | None = None,
        state: dict[str, Any] | None = None,
        seq: int | None = None,
        metadata: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Snapshot:
        """Save a point of a session: ``seq`` (default: its last message) and a state.

        ``state`` defaults to the session's current state; ``seq`` may not be
        past the session's ``last_seq``.
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
        with self._core.write("creating a snapshot") as conn:
            session = conn.execute(
                sa.select(st.c.last_seq, st.c.state).where(
                    st.c.tenant_id == self.tenant_id, st.c.id == session_id
                )
            ).first()
            if session is None:
                raise NotFound("session", session_id)
            if seq is None:
                seq = int(session.last_seq)
            elif seq > session.last_seq:
                raise InvalidInput(
                    f"session {session_id!r} has no message at seq {seq} (last is {session.last_seq})",
                    field="seq",
                )
            values["seq"] = seq
            values.setdefault("state", dict(session.state))
            values["created_at"] = utcnow_micros()
            conn.execute(sa.insert(t).values(values))
        return to_snapshot(values)

    @op
    def get(self, snapshot_id: str) -> Op[Snapshot]:
        """A snapshot by id; one statement, compiled once per dialect."""
        return to_snapshot((yield from self._read_row(t, snapshot_id, "reading a snapshot")))

    def messages(self, snapshot_id: str) -> builtins.list[Message]:
        """The snapshot's messages as they were when it was taken, in seq order.

        Messages edited or deleted since come back as they were; messages
        appended since are not there.
        """
        with self._core.read() as conn:
            self._get_row(conn, t, snapshot_id)
            return [to_message(r) for r in snapshot_rows(conn, self.tenant_id, snapshot_id)]

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
