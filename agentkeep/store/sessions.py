"""Sessions (threads, conversations): create, list without payloads, update, delete, fork."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models import Page, Session
from agentkeep.models.common import Order, check_metadata, utcnow_micros
from agentkeep.store._base import Resource, Row, row_by_id, row_times
from agentkeep.store._listing import Filters, like_escaped, sort_key
from agentkeep.store._steps import COUNT, MANY, Op, Read, Steps, Stmt, Write, op
from agentkeep.store._validate import UNSET, check_object, opt_text, require_str
from agentkeep.store.schema import messages as mt
from agentkeep.store.schema import sessions as t
from agentkeep.store.schema import snapshots as snap_t
from agentkeep.store.snapshot_content import messages_up_to, snapshot_rows_at

__all__ = ["SESSION_FIELDS", "Sessions", "session_values"]

_KIND_PREFIX = {"session": "sess", "thread": "thread", "conversation": "conv"}
_FORK_FIELDS = frozenset(("session_id", "at_seq", "snapshot_id", "title", "metadata"))
_MAX_FORKS = 1000
#: A fork to make: session id, at_seq, snapshot id, title, metadata, the field prefix.
_ForkPlan = tuple[str, int | None, str | None, Any, dict[str, str] | None, str]
#: A snapshot's seq, state and session (``:t``, ``:i``).
_SNAPSHOT_POINT = sa.select(snap_t.c.seq, snap_t.c.state, snap_t.c.session_id).where(
    snap_t.c.tenant_id == sa.bindparam("t"), snap_t.c.id == sa.bindparam("i")
)


def _fork_point(at_seq: Any, snapshot_id: Any, where: str) -> tuple[int | None, str | None]:
    """A fork's ``at_seq`` and ``snapshot_id``, checked (``where``: the field prefix)."""
    if at_seq is not None and snapshot_id is not None:
        raise InvalidInput("give at_seq or snapshot_id, not both", field=where + "at_seq")
    if at_seq is not None and (
        isinstance(at_seq, bool) or not isinstance(at_seq, int) or at_seq < 0
    ):
        raise InvalidInput("must be a non-negative integer", field=where + "at_seq")
    if snapshot_id is not None:
        snapshot_id = require_str(snapshot_id, where + "snapshot_id", max_len=64)
    return at_seq, snapshot_id


#: The fields a new session takes (``Sessions.create``'s, but its id).
SESSION_FIELDS = frozenset(
    ("kind", "agent_id", "user_id", "title", "metadata", "traits", "state", "extra")
)


def session_values(
    tenant_id: str,
    session_id: str | None,
    fields: Mapping[str, Any],
    now: int,
    where: str = "",
) -> dict[str, Any]:
    """A new session's row: ``fields`` (of :data:`SESSION_FIELDS`) checked, each named
    ``where + field`` in an error; a new id of its kind when ``session_id`` is None."""
    unknown = sorted(set(fields) - SESSION_FIELDS)
    if unknown:
        raise InvalidInput("is not a field of a session", field=where + unknown[0])
    kind = fields.get("kind", "session")
    if not isinstance(kind, str) or kind not in _KIND_PREFIX:
        raise InvalidInput(f"must be one of {', '.join(_KIND_PREFIX)}", field=where + "kind")
    get = fields.get
    return {
        "tenant_id": tenant_id,
        "id": require_str(session_id, where + "id", max_len=64)
        if session_id is not None
        else new_id(_KIND_PREFIX[kind]),
        "kind": kind,
        "agent_id": opt_text(get("agent_id"), where + "agent_id", 64),
        "user_id": opt_text(get("user_id"), where + "user_id", 256),
        "title": opt_text(get("title"), where + "title", 1024),
        "metadata": check_metadata(get("metadata"), where + "metadata"),
        "traits": check_object(get("traits"), where + "traits"),
        "state": check_object(get("state"), where + "state"),
        "extra": check_object(get("extra"), where + "extra"),
        "parent_id": None,
        "fork_seq": None,
        "message_count": 0,
        "last_seq": 0,
        "last_activity_at": now,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


def to_session(row: Row) -> Session:
    return Session.model_construct(**row_times(row, "created_at", "updated_at", "last_activity_at"))


class Sessions(Resource):
    """``store.sessions``: threads, conversations and chats of this tenant."""

    kind = "session"

    @op
    def create(
        self,
        *,
        kind: str = "session",
        agent_id: str | None = None,
        user_id: str | None = None,
        title: str | None = None,
        metadata: dict[str, str] | None = None,
        traits: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Op[Session]:
        """Create a session; ``kind`` is ``session``, ``thread`` or ``conversation``."""
        fields = {
            "kind": kind,
            "agent_id": agent_id,
            "user_id": user_id,
            "title": title,
            "metadata": metadata,
            "traits": traits,
            "state": state,
            "extra": extra,
        }
        values = session_values(self.tenant_id, id, fields, utcnow_micros())
        sql = self._core.message_sql
        params = sql.insert_params(t, values)

        def steps() -> Steps[None]:
            yield Stmt(sql.insert_row(t), params, COUNT)

        yield Write("creating a session", steps)
        self._core.note_new_session(self.tenant_id, values["id"])
        return to_session(values)

    @op
    def exists(self, session_id: str, *, kind: str | None = None) -> Op[bool]:
        """Whether this tenant has a session ``session_id``, of ``kind`` when given.

        One indexed read of its kind, compiled once per dialect.
        """
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[str | None]:
            return sql.kind(tenant, session_id)

        found: str | None = yield Read("reading a session", steps)
        return found is not None and (kind is None or found == kind)

    @op
    def get(self, session_id: str, *, lock: bool = False) -> Op[Session]:
        """A session by id.

        ``lock=True`` inside ``store.transaction()`` holds the session until the
        transaction ends: appends to it and other locking reads wait, so a
        check made on the session's contents stays true until commit.
        One statement, compiled once per dialect.
        """
        what = "locking a session" if lock else "reading a session"
        return to_session((yield from self._read_row(t, session_id, what, lock=lock)))

    @op
    def update(
        self,
        session_id: str,
        *,
        expected_version: int | None = None,
        kind: str | None = None,
        title: str | None = UNSET,
        metadata: dict[str, str] = UNSET,
        traits: dict[str, Any] = UNSET,
        state: dict[str, Any] = UNSET,
        extra: dict[str, Any] = UNSET,
        agent_id: str | None = UNSET,
        user_id: str | None = UNSET,
    ) -> Op[Session]:
        """Change the given fields; with ``expected_version``, only if nobody changed it since.

        One statement, compiled once per set of fields. With ``kind``, only a session of
        that kind (``NotFound`` of that kind otherwise: a thread is not a conversation).
        """
        changes: dict[str, Any] = {}
        if title is not UNSET:
            changes["title"] = opt_text(title, "title", 1024)
        if metadata is not UNSET:
            changes["metadata"] = check_metadata(metadata)
        if traits is not UNSET:
            changes["traits"] = check_object(traits, "traits")
        if state is not UNSET:
            changes["state"] = check_object(state, "state")
        if extra is not UNSET:
            changes["extra"] = check_object(extra, "extra")
        if agent_id is not UNSET:
            changes["agent_id"] = opt_text(agent_id, "agent_id", 64)
        if user_id is not UNSET:
            changes["user_id"] = opt_text(user_id, "user_id", 256)
        row = yield from self._update_op(
            t,
            session_id,
            "updating a session",
            changes,
            expected_version=expected_version,
            kind=kind,
        )
        return to_session(row)

    @op
    def delete(self, session_id: str, *, kind: str | None = None) -> Op[None]:
        """Delete a session with its messages, runs, steps, events, tool calls and snapshots.

        One statement (its rows go by the foreign keys' cascades); LLM usage rows
        stay, keeping the session id. With ``kind``, only a session of that kind
        (``NotFound`` of that kind otherwise: a thread is not a conversation).
        """
        yield from self._delete_row(t, session_id, "deleting a session", kind)

    def _where(
        self,
        *,
        kind: str | None,
        agent_id: str | None,
        user_id: str | None,
        metadata: dict[str, str] | None,
        parent_id: str | None,
        title_contains: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        active_after: datetime | None,
        active_before: datetime | None,
        id_prefix: str | None = None,
    ) -> Filters:
        where = Filters()
        if id_prefix is not None:
            prefix = require_str(id_prefix, "id_prefix", max_len=64)
            where.add(
                lambda p: t.c.id.startswith(p, escape="/"), {"id_prefix": like_escaped(prefix)}
            )
        where.equal(
            (t.c.kind, kind),
            (t.c.agent_id, agent_id),
            (t.c.user_id, user_id),
            (t.c.parent_id, parent_id),
        )
        if title_contains is not None:
            text = require_str(title_contains, "title_contains", max_len=1024)
            where.add(lambda p: t.c.title.icontains(p, escape="/"), {"title": like_escaped(text)})
        pg = self._core.dialect.name == "postgresql"
        where.metadata(t.c.metadata, check_metadata(metadata, "metadata"), pg)
        where.between(t.c.created_at, created_after, created_before)
        where.between(t.c.last_activity_at, active_after, active_before)
        return where

    @op
    def list(
        self,
        *,
        kind: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, str] | None = None,
        parent_id: str | None = None,
        title_contains: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        active_after: datetime | None = None,
        active_before: datetime | None = None,
        id_prefix: str | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
        sort: Literal["id", "created_at"] = "id",
    ) -> Op[Page[Session]]:
        """Sessions, newest first by default; never reads message payloads.

        ``title_contains`` keeps sessions whose title contains the text,
        ignoring case (ASCII case on SQLite). ``sort="created_at"`` orders by
        creation time (ties by id) across kinds, whose id prefixes differ.
        ``id_prefix``: only sessions whose id starts with it (a range of the
        primary key, as KODE's prefix listing).
        """
        sort_column = sort_key(t, sort)
        where = self._where(
            kind=kind,
            agent_id=agent_id,
            user_id=user_id,
            metadata=metadata,
            parent_id=parent_id,
            title_contains=title_contains,
            created_after=created_after,
            created_before=created_before,
            active_after=active_after,
            active_before=active_before,
            id_prefix=id_prefix,
        )
        return (
            yield from self._page_op(
                t,
                where,
                to_session,
                what="listing sessions",
                limit=limit,
                after=after,
                before=before,
                order=order,
                sort=sort_column,
            )
        )

    @op
    def count(
        self,
        *,
        kind: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, str] | None = None,
        parent_id: str | None = None,
        title_contains: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        active_after: datetime | None = None,
        active_before: datetime | None = None,
        id_prefix: str | None = None,
    ) -> Op[int]:
        """How many sessions ``list`` with the same filters would page through."""
        where = self._where(
            kind=kind,
            agent_id=agent_id,
            user_id=user_id,
            metadata=metadata,
            parent_id=parent_id,
            title_contains=title_contains,
            created_after=created_after,
            created_before=created_before,
            active_after=active_after,
            active_before=active_before,
            id_prefix=id_prefix,
        )
        return (yield from self._count_op(t, where, "counting sessions"))

    @op
    def fork(
        self,
        session_id: str,
        *,
        at_seq: int | None = None,
        snapshot_id: str | None = None,
        title: str | None = UNSET,
        metadata: dict[str, str] | None = None,
    ) -> Op[Session]:
        """A new session holding the history up to ``at_seq``, or a snapshot's messages.

        With neither, the whole history. The parent is not changed and later
        appends to either do not reach the other; ``parent_id`` and
        ``fork_seq`` record the lineage. A snapshot's state becomes the
        fork's state, and its messages are the snapshot's as they were when
        it was taken, whatever was edited or deleted since. One transaction.
        """
        point = _fork_point(at_seq, snapshot_id, "")
        plan = (session_id, *point, title, metadata, "")
        made = yield from self._forks([plan], "forking a session")
        return made[0]

    @op
    def fork_many(self, forks: Sequence[Mapping[str, Any]]) -> Op[builtins.list[Session]]:
        """Fork several sessions in one transaction: all of them, or none.

        Each item takes ``fork``'s arguments: ``{"session_id": ..., "at_seq":
        ..., "snapshot_id": ..., "title": ..., "metadata": ...}`` (only
        ``session_id`` is required); a session may be forked more than once.
        The forks come back in the order asked. A bad item raises
        ``InvalidInput`` naming it (``forks[2].at_seq``), a missing session
        or snapshot ``NotFound``; either way nothing is written.
        """
        if not isinstance(forks, Sequence) or isinstance(forks, (str, bytes)):
            raise InvalidInput("must be a list of forks", field="forks")
        if len(forks) > _MAX_FORKS:
            raise InvalidInput(f"at most {_MAX_FORKS} forks in one call", field="forks")
        plans: builtins.list[_ForkPlan] = []
        for i, item in enumerate(forks):
            where = f"forks[{i}]."
            if not isinstance(item, Mapping):
                raise InvalidInput("must be an object", field=f"forks[{i}]")
            unknown = set(item) - _FORK_FIELDS
            if unknown:
                raise InvalidInput("is not a fork argument", field=where + sorted(unknown)[0])
            session_id = require_str(item.get("session_id"), where + "session_id", max_len=64)
            point = _fork_point(item.get("at_seq"), item.get("snapshot_id"), where)
            title = item.get("title", UNSET)
            plans.append((session_id, *point, title, item.get("metadata"), where))
        return (yield from self._forks(plans, "forking sessions"))

    def _forks(self, plans: Sequence[_ForkPlan], what: str) -> Op[builtins.list[Session]]:
        """Write every fork of ``plans`` in one transaction (``Write.atomic``)."""

        def steps() -> Steps[builtins.list[dict[str, Any]]]:
            made = []
            for plan in plans:
                made.append((yield from self._fork(*plan)))
            return made

        made: builtins.list[dict[str, Any]] = yield Write(what, steps, atomic=True)
        return [to_session(row) for row in made]

    def _fork(
        self,
        session_id: str,
        at_seq: int | None,
        snapshot_id: str | None,
        title: str | None,
        metadata: dict[str, str] | None,
        where: str,
    ) -> Steps[dict[str, Any]]:
        """One fork of ``session_id`` in the open transaction: its row.

        The parent is read ``FOR NO KEY UPDATE`` on PostgreSQL (its messages do not
        change under the copy); then the snapshot's point, the messages (the
        snapshot's as taken, else the live ones up to ``at_seq``), the fork's row and
        the copies, with ids of their own.
        """
        sql, tenant = self._core.message_sql, self.tenant_id
        parent_of = sql.compiled(row_by_id(t, self._core.dialect.skip_locked))
        found = yield Stmt(parent_of, {"tenant_id": tenant, "id": session_id})
        if not found:
            raise NotFound(self.kind, session_id)
        parent = sql.named_row(t, found[0])
        state = dict(parent["state"])
        if snapshot_id is not None:
            point = yield Stmt(sql.compiled(_SNAPSHOT_POINT), {"t": tenant, "i": snapshot_id})
            if not point or point[0][2] != session_id:
                raise NotFound("snapshot", snapshot_id)
            at_seq, state = int(point[0][0]), dict(sql.load_any(point[0][1]))
        if at_seq is None:
            at_seq = parent["last_seq"]
        if at_seq > parent["last_seq"]:
            raise InvalidInput(
                f"session {session_id!r} has no message at seq {at_seq} (last is {parent['last_seq']})",
                field=where + "at_seq",
            )
        if snapshot_id is not None:  # (its point read above: not read again)
            rows = yield from snapshot_rows_at(sql, tenant, snapshot_id, session_id, at_seq)
        else:
            rows = yield from messages_up_to(sql, tenant, session_id, at_seq)
        now = utcnow_micros()
        child: dict[str, Any] = {
            **parent,
            "id": new_id(_KIND_PREFIX[parent["kind"]]),
            "title": parent["title"] if title is UNSET else opt_text(title, where + "title", 1024),
            "metadata": check_metadata(metadata, where + "metadata")
            if metadata is not None
            else parent["metadata"],
            "state": state,
            "parent_id": session_id,
            "fork_seq": at_seq,
            "last_seq": at_seq,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "last_activity_at": now,
            "message_count": len(rows),
        }
        yield Stmt(sql.insert_row(t), sql.insert_params(t, child), COUNT)
        for r in rows:
            r["id"] = new_id("msg")
            r["session_id"] = child["id"]
        if rows:
            yield Stmt(sql.insert_row(mt), [sql.insert_params(mt, r) for r in rows], MANY)
        return child
