"""Messages: gapless per-session ``seq``, idempotent appends, filtered reads.

Appending takes the session row (``UPDATE sessions ... RETURNING last_seq``) in
the writing transaction, so concurrent appends from any number of processes
get unique, gapless positions; it writes one row and never touches earlier
ones, so appending stays O(1) in the length of the history.

``append``, ``append_many`` (and ``extend``, the same write without the
answer), ``recent`` and ``history`` each have one implementation: the
compiled statements of ``message_sql.py``, run on the current transaction's
connection inside ``store.transaction()`` and on the store's own kept
connections outside one.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from agentkeep.errors import Conflict, InvalidInput, NotFound, SessionBusy
from agentkeep.ids import new_ids
from agentkeep.models import Message, NewMessage, Page
from agentkeep.models.common import (
    EPOCH,
    MAX_LIMIT,
    Order,
    check_limit,
    check_metadata,
    from_micros,
    micros_to_datetime,
    utcnow_micros,
)
from agentkeep.models.messages import ROLES
from agentkeep.store._base import (
    Resource,
    Row,
    check_page,
)
from agentkeep.store._construct import (
    all_fields,
    constructor,
    new,
    set_dict,
    set_extra,
    set_fields_set,
    set_private,
)
from agentkeep.store._content import check_role, check_text, content_types, normalize_content
from agentkeep.store._listing import Filters, like_escaped
from agentkeep.store._steps import COUNT, Op, Read, Steps, Write, op, operation, run_steps
from agentkeep.store._validate import UNSET, check_object, json_text, opt_text, require_str
from agentkeep.store.message_sql import (
    Appended,
    Extras,
    MessageSQL,
    NewRow,
    StoredRow,
    WhileIdle,
    const,
)
from agentkeep.store.schema import messages as t
from agentkeep.store.schema import sessions as st
from agentkeep.store.sessions import session_values
from agentkeep.store.snapshot_content import KEEP_FOR_SNAPSHOTS

__all__ = ["Messages"]

_FIELDS = tuple(Message.model_fields)
_ALL_SET = all_fields(Message)
_construct = constructor(Message)


def to_message(row: Row) -> Message:
    data = {name: row[name] for name in _FIELDS}
    data["created_at"] = from_micros(data["created_at"])
    return _construct(data)


_BLANK: dict[str, Any] = dict.fromkeys(_FIELDS)


def _template(tenant_id: str, session_id: str) -> dict[str, Any]:
    """A message's values with those common to a session's messages set, in field order.

    The builders below copy it and set the rest: a copy of a dict of the same keys
    is cheaper than a new twelve-key dict per message.
    """
    values = _BLANK.copy()
    values["tenant_id"] = tenant_id
    values["session_id"] = session_id
    return values


# The datetimes of stored times read lately, by their microseconds. Building one
# (``EPOCH + timedelta``) was about a quarter of building a message; an agent reads
# the same last messages every turn, and messages appended together share their
# time. Datetimes are immutable, so messages can share one. Bounded: emptied when full.
_TIMES: dict[int, datetime] = {}
_TIMES_MAX = 4096


def _new_time(created: int) -> datetime:
    """A stored time as a datetime, kept in ``_TIMES`` for the reads to come."""
    at = EPOCH + timedelta(0, 0, created)
    if len(_TIMES) >= _TIMES_MAX:
        _TIMES.clear()
    _TIMES[created] = at
    return at


def _add_extras(values: dict[str, Any], rest: Any, sql: MessageSQL) -> None:
    """Set the usually-empty fields from a row's ``rest`` (on PostgreSQL, the content too)."""
    blocks = values["content"]
    values.update(Extras(*sql.load_json(rest))._asdict())
    if not sql.text_column:
        values["content"] = blocks


def _from_rows(
    tenant_id: str, session_id: str, rows: Iterable[StoredRow], sql: MessageSQL
) -> builtins.list[Message]:
    """Messages from stored rows (:class:`StoredRow`, as the driver returns them).

    What ``_construct`` does, inlined in one loop: this runs once per message read.
    Each message's values are one dict display in field order (cheaper than a
    copy of a template and a store per field).
    """
    load_content = sql.load_content
    head, tail, text_column = sql.text_head, sql.text_tail, sql.text_column
    cut = len(head) + len(tail)
    out: builtins.list[Message] = []
    append = out.append
    fields = _ALL_SET
    known_time = _TIMES.get
    for ident, seq, role, content, created, rest in rows:
        if text_column:  # the text of a plain message; other contents come in the rest
            blocks: Any = [{"text": content, "type": "text"}]
        # One text block with nothing to unescape (``load_content``'s fast case, inlined;
        # removeprefix/removesuffix take one argument, where startswith parses a tuple).
        elif (
            type(content) is str
            and len(text := content.removeprefix(head).removesuffix(tail)) == len(content) - cut
            and '"' not in text
            and "\\" not in text
        ):
            blocks = [{"type": "text", "text": text}]
        else:
            blocks = load_content(content)
        at = known_time(created)
        if at is None:
            at = _new_time(created)
        values = {
            "id": ident,
            "tenant_id": tenant_id,
            "session_id": session_id,
            "seq": seq,
            "role": role,
            "content": blocks,
            "run_id": None,
            "agent_id": None,
            "idempotency_key": None,
            "metadata": {},
            "extra": {},
            "created_at": at,
        }
        if rest is not None:  # the usual message has none of these
            _add_extras(values, rest, sql)
        m = new(Message)
        set_dict(m, values)
        set_fields_set(m, fields)
        set_extra(m, None)
        set_private(m, None)
        append(m)
    return out


@functools.cache
def _message_delete(pg: bool) -> tuple[Any, Any, Any]:
    """``delete``'s statements: the message copied for the snapshots that cover it, its
    DELETE (its session's id back), its session's count down by one (answering with the
    session's id). On PostgreSQL the last one holds the others as CTEs (each sees the
    message as it was), the first two then unused."""
    mine = st.c.tenant_id == sa.bindparam("k_tenant")
    gone = (
        sa.delete(t)
        .where(t.c.tenant_id == sa.bindparam("k_tenant"), t.c.id == sa.bindparam("k_message"))
        .returning(t.c.session_id)
    )
    fewer = {"message_count": st.c.message_count - const(1)}
    if pg:
        deleted = gone.cte("gone")
        count = sa.update(st).where(mine, st.c.id == deleted.c.session_id).values(fewer)
        count = count.returning(st.c.id).add_cte(KEEP_FOR_SNAPSHOTS.cte("kept"), deleted)
    else:
        count = sa.update(st).where(mine, st.c.id == sa.bindparam("k_session")).values(fewer)
    return KEEP_FOR_SNAPSHOTS, gone, count


def _field(index: int, name: str) -> str:
    """A field's name for errors: ``messages[<index>].<name>``, or ``name`` for an index of -1."""
    return name if index < 0 else f"messages[{index}].{name}"


# NewRow(...) without NamedTuple's generated __new__ (a Python call with every
# field as a keyword-able argument): half the cost, for one row per message written.
_new_row = cast(Callable[[type[NewRow], tuple[Any, ...]], NewRow], tuple.__new__)


def _chat_message(role: str, blocks: builtins.list[dict[str, Any]]) -> dict[str, Any]:
    """``{"role", "content"}``: the text for one plain text block, else the blocks."""
    if len(blocks) == 1:
        block = blocks[0]
        if len(block) == 2 and block.get("type") == "text" and type(block.get("text")) is str:
            return {"role": role, "content": block["text"]}
    return {"role": role, "content": blocks}


def _chat_from_rows(
    rows: Iterable[Sequence[Any]], sql: MessageSQL
) -> builtins.list[dict[str, Any]]:
    """Chat messages from ``MessageSQL.recent(chat=True)`` rows; one loop, as ``_from_rows``."""
    out: builtins.list[dict[str, Any]] = []
    append = out.append
    if sql.text_column:  # (role, text, None) for a plain message, else (role, _, content)
        load = sql.load_json
        for role, text, content in rows:
            if content is None:
                append({"role": role, "content": text})
            else:
                append(_chat_message(role, load(content)))
        return out
    load_content = sql.load_content
    head, tail = sql.text_head, sql.text_tail
    cut = len(head) + len(tail)
    for role, content in rows:
        if (
            type(content) is str
            and len(text := content.removeprefix(head).removesuffix(tail)) == len(content) - cut
            and '"' not in text
            and "\\" not in text
        ):
            append({"role": role, "content": text})
        else:
            append(_chat_message(role, load_content(content)))
    return out


def _created(
    tenant_id: str,
    session_id: str,
    rows: Sequence[NewRow],
    ids: Sequence[str],
    first: int,
    at: datetime,
) -> builtins.list[Message]:
    """The stored messages for validated new rows given ``seq`` from ``first`` on."""
    out: builtins.list[Message] = []
    append = out.append
    fields = _ALL_SET
    template = _template(tenant_id, session_id)
    template["created_at"] = at
    copy = template.copy
    seq = first
    for ident, row in zip(ids, rows, strict=True):
        values = copy()
        values["id"] = ident
        values["seq"] = seq
        values["role"] = row.role
        values["content"] = row.content
        values["run_id"] = row.run_id
        values["agent_id"] = row.agent_id
        values["idempotency_key"] = row.idempotency_key
        values["metadata"] = row.metadata
        values["extra"] = row.extra
        seq += 1
        m = new(Message)
        set_dict(m, values)
        set_fields_set(m, fields)
        set_extra(m, None)
        set_private(m, None)
        append(m)
    return out


def _answer(
    tenant_id: str,
    session_id: str,
    rows: Sequence[NewRow],
    ids: Sequence[str],
    existing: dict[str, Message],
    last: int,
    now: int,
) -> builtins.list[Message]:
    """What an append returns, in the order of ``rows``.

    A row whose idempotency key is in ``existing`` is answered with that stored
    message; the others were written, in order, with ``seq`` up to ``last`` and
    ``created_at`` ``now``.
    """
    new_rows, new_ids = rows, ids
    if existing:
        pairs = [
            (i, r) for i, r in zip(ids, rows, strict=True) if r.idempotency_key not in existing
        ]
        new_rows, new_ids = [r for _, r in pairs], [i for i, _ in pairs]
    created: builtins.list[Message] = []
    if new_rows:
        at = micros_to_datetime(now)
        created = _created(tenant_id, session_id, new_rows, new_ids, last - len(new_rows) + 1, at)
    if not existing:
        return created
    made = iter(created)
    return [
        existing[r.idempotency_key] if r.idempotency_key in existing else next(made) for r in rows
    ]


class Messages(Resource):
    """``store.messages``: the messages of this tenant's sessions."""

    kind = "message"

    def _prepare(self, item: NewMessage | Mapping[str, Any], index: int) -> NewRow:
        if type(item) is dict or isinstance(item, Mapping):  # a dict: no ABC check
            get = item.get
        else:
            get = lambda k, d=None: getattr(item, k, d)  # noqa: E731
        return self._row(
            get("role"),
            get("content"),
            get("run_id"),
            get("agent_id"),
            get("idempotency_key"),
            get("metadata"),
            get("extra"),
            get("id"),
            index,
        )

    def _row(
        self,
        role: Any,
        content: Any,
        run_id: Any,
        agent_id: Any,
        idempotency_key: Any,
        metadata: Any,
        extra: Any,
        ident: Any,
        index: int,
    ) -> NewRow:
        """One validated message row (everything but ``seq`` and ``created_at``).

        Every field is checked here, once; the common shape (plain text, no
        optional fields, an ``extra`` dict) skips the checkers' calls, and field
        names for errors (``messages[<index>].<field>``; the bare field for an
        ``index`` of -1) are only built when a checker runs.
        """
        if type(content) is str:
            text: str | None = content
            if "\x00" in content or not content.isascii():
                check_text(content, _field(index, "content"))
            blocks = [{"type": "text", "text": content}]
            types = ",text,"
        else:
            text = None
            blocks = normalize_content(content, _field(index, "content"))
            json_text(blocks, _field(index, "content"))
            types = content_types(blocks)
        if type(role) is not str or role not in ROLES:
            role = check_role(role, _field(index, "role"))
        if extra is None:
            extra = {}
        else:
            extra = (
                extra.copy() if type(extra) is dict else check_object(extra, _field(index, "extra"))
            )
            if extra:
                json_text(extra, _field(index, "extra"))
        return _new_row(
            NewRow,
            (
                # None (or "") is given a new id by ``_store``, all of a batch's at once.
                None if ident is None else (opt_text(ident, _field(index, "id"), 64) or None),
                role,
                blocks,
                types,
                None if run_id is None else opt_text(run_id, _field(index, "run_id"), 64),
                None if agent_id is None else opt_text(agent_id, _field(index, "agent_id"), 256),
                None
                if idempotency_key is None
                else opt_text(idempotency_key, _field(index, "idempotency_key"), 256),
                {} if metadata is None else check_metadata(metadata, _field(index, "metadata")),
                extra,
                text,
            ),
        )

    @op
    def append(
        self,
        session_id: str,
        role: str,
        content: str | builtins.list[dict[str, Any]],
        *,
        run_id: str | None = None,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
        metadata: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Op[Message]:
        """Append one message, durably; returns it with its ``seq``.

        With an ``idempotency_key`` already used in this session, returns the
        stored message instead of writing a duplicate.
        """
        row = self._row(role, content, run_id, agent_id, idempotency_key, metadata, extra, id, -1)
        written = yield from self._write(session_id, [row])
        return written[0]

    @op
    def append_if_idle(
        self,
        session_id: str,
        message: NewMessage | Mapping[str, Any],
        *,
        kind: str | None = None,
    ) -> Op[Message]:
        """Append ``message`` unless a run of the session is active: then nothing is written.

        ``message`` as ``append_many`` takes each (``{"role": ..., "content":
        ..., "idempotency_key": ...}``, or a :class:`NewMessage`).

        OpenAI's thread rule: no message is added while a run is queued, in
        progress, requires action or is cancelling (``SessionBusy`` names it).
        One write: the append takes the session's row, then checks its runs,
        and sees every run committed before it took the row (on PostgreSQL in
        the same statement, which holds the row for no round trip). ``NotFound``
        when the session is not of ``kind`` (when given); nothing is written
        then either.
        """
        row = self._prepare(message, -1)
        written = yield from self._write(session_id, [row], WhileIdle(kind))
        return written[0]

    @op
    def append_many(
        self,
        session_id: str,
        messages: Sequence[NewMessage | Mapping[str, Any]],
        *,
        kind: str | None = None,
        create: Mapping[str, Any] | None = None,
    ) -> Op[builtins.list[Message]]:
        """Append several messages in one transaction, in the given order.

        ``kind``: only to a session of this kind (checked by the write itself, as it
        takes the session), else ``NotFound`` naming the kind and nothing is written.

        ``create``: when there is no session ``session_id``, create it with
        these fields of ``sessions.create`` (``kind``, ``agent_id``,
        ``user_id``, ``title``, ``metadata``, ``traits``, ``state``,
        ``extra``; ``{}`` for none) and append to it, in the same write (on
        SQLite one transaction; on PostgreSQL outside a transaction, the
        session's INSERT and the append are each atomic). A session that
        exists is left as it is; with no messages, nothing is written. What the
        framework integrations do on a conversation's first turn, with no failed
        append first.
        """
        if create is not None and kind is not None:
            raise InvalidInput("give kind or create, not both", field="create")
        new_session = self._new_session(session_id, create)
        rows = self._prepare_all(messages)
        if new_session is not None:
            return (yield from self._write(session_id, rows, None, new_session)) if rows else []
        if kind is None:
            return (yield from self._write(session_id, rows)) if rows else []
        # With no rows the write only checks the kind, as for rows all stored already.
        return (yield from self._write(session_id, rows, WhileIdle(kind, runs=False)))

    @op
    def extend(
        self,
        session_id: str,
        messages: Sequence[NewMessage | Mapping[str, Any]],
        *,
        create: Mapping[str, Any] | None = None,
    ) -> Op[None]:
        """``append_many`` for a caller that does not use the stored messages: none is built.

        The same write (one transaction, in order, idempotency keys honoured,
        ``create`` as there); only the answer is left out, which for a batch of
        short messages is a sizeable part of the work.
        """
        new_session = self._new_session(session_id, create)
        rows = self._prepare_all(messages)
        if rows:
            yield from self._store(session_id, rows, None, new_session)

    def _new_session(self, session_id: str, create: Any) -> dict[str, Any] | None:
        """The parameters of the session ``create`` asks for (``MessageSQL.insert_session``),
        checked; None without ``create``."""
        if create is None:
            return None
        if not isinstance(create, Mapping):
            raise InvalidInput("must be an object of session fields", field="create")
        session_id = require_str(session_id, "session_id", max_len=64)
        values = session_values(self.tenant_id, session_id, create, utcnow_micros(), "create.")
        return self._core.message_sql.insert_params(st, values)

    def _prepare_all(
        self, messages: Sequence[NewMessage | Mapping[str, Any]]
    ) -> builtins.list[NewRow]:
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise InvalidInput("must be a list of messages", field="messages")
        return [self._prepare(m, i) for i, m in enumerate(messages)]

    def _write(
        self,
        session_id: str,
        rows: builtins.list[NewRow],
        idle: WhileIdle | None = None,
        new_session: dict[str, Any] | None = None,
    ) -> Op[builtins.list[Message]]:
        """Store ``rows`` and answer with their messages (those already stored, by key)."""
        done, ids = yield from self._store(session_id, rows, idle, new_session)
        tenant, sql = self.tenant_id, self._core.message_sql
        existing: dict[str, Message] = {}
        if done.found:
            for m in _from_rows(tenant, session_id, done.found, sql):
                if m.idempotency_key is not None:
                    existing[m.idempotency_key] = m
        assert done.last is not None
        return _answer(tenant, session_id, rows, ids, existing, done.last, done.now)

    def _store(
        self,
        session_id: str,
        rows: builtins.list[NewRow],
        idle: WhileIdle | None = None,
        new_session: dict[str, Any] | None = None,
    ) -> Op[tuple[Appended, builtins.list[str]]]:
        """Append ``rows`` (those whose idempotency key is not stored yet); what was done, and the ids.

        ``idle``: only while the session has no active run; ``new_session``: the
        session to create if there is none (``MessageSQL.append``).
        """
        keys = [r.idempotency_key for r in rows if r.idempotency_key is not None]
        if len(set(keys)) != len(keys):
            raise InvalidInput("repeats an idempotency_key", field="messages")
        given = [r.id for r in rows]
        unnamed = given.count(None)
        if unnamed == len(given):
            ids = new_ids("msg", unnamed)
        elif unnamed:
            fresh = iter(new_ids("msg", unnamed))
            ids = [ident if ident is not None else next(fresh) for ident in given]
        else:
            ids = [ident for ident in given if ident is not None]
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[Appended]:
            return sql.append(tenant, session_id, rows, ids, utcnow_micros, idle, new_session)

        write = Write("appending a message", steps)
        done: Appended
        try:
            done = yield write
        except Conflict as exc:
            if not keys or isinstance(exc, SessionBusy):
                raise
            # A concurrent writer stored one of these keys first: answer with what it stored.
            done = yield write
        if done.last is None:  # no session (or, when a kind is wanted, none of that kind)
            raise NotFound(idle.kind if idle is not None and idle.kind else "session", session_id)
        return done, ids

    @op
    def get(self, message_id: str, *, session_id: str | None = None) -> Op[Message]:
        """A message by id (and, if given, only in that session)."""
        row = yield from self._read_row(t, message_id, "reading a message")
        if session_id is not None and row["session_id"] != session_id:
            raise NotFound("message", message_id)
        return to_message(row)

    @op
    def in_session(
        self, message_id: str, session_id: str, *, kind: str | None = None
    ) -> Op[Message]:
        """Message ``message_id`` of session ``session_id``, in one read.

        Raises ``NotFound`` for the session if it does not exist (or is not of
        ``kind`` when given), then for the message if the session has no such
        message: what the service answers a retrieve of a thread's message or a
        conversation's item.
        """
        return to_message((yield from self._read_in_session(t, message_id, session_id, kind)))

    @op
    def update(
        self,
        message_id: str,
        *,
        metadata: dict[str, str] = UNSET,
        extra: dict[str, Any] = UNSET,
        content: str | list[dict[str, Any]] = UNSET,
    ) -> Op[Message]:
        """Change a message's metadata, extra fields or content; its place stays.

        Snapshots taken before keep the message as it was: one write, the copies for
        them and the UPDATE (one statement on PostgreSQL, two on SQLite).
        """
        changes: dict[str, Any] = {}
        if metadata is not UNSET:
            changes["metadata"] = check_metadata(metadata)
        if extra is not UNSET:
            changes["extra"] = check_object(extra, "extra")
        if content is not UNSET:
            changes["content"] = normalize_content(content)
            changes["content_types"] = content_types(changes["content"])
        if not changes:
            return to_message((yield from self._read_row(t, message_id, "reading a message")))
        sql, pg = self._core.message_sql, self._core.dialect.name == "postgresql"
        kept = {"k_tenant": self.tenant_id, "k_message": message_id, "k_now": utcnow_micros()}
        update = self._set_stmt(
            t,
            message_id,
            changes,
            {},
            before=KEEP_FOR_SNAPSHOTS if pg else None,
            before_params=kept if pg else None,
        )
        keep = None if pg else sql.built_once(KEEP_FOR_SNAPSHOTS).stmt(kept, COUNT)

        def steps() -> Steps[list[Any]]:
            if keep is not None:
                yield keep  # copies nothing when no snapshot covers it
            rows: list[Any] = yield update
            if not rows:
                raise NotFound(self.kind, message_id)
            return rows

        rows = yield Write("updating a message", steps)
        return to_message(sql.named_row(t, rows[0]))

    @op
    def delete(self, message_id: str) -> Op[None]:
        """Delete one message; the others keep their ``seq``; snapshots keep it as it was.

        One write: the copies for the snapshots that cover it, the DELETE and the
        session's count (one statement on PostgreSQL, three on SQLite).
        """
        sql, pg = self._core.message_sql, self._core.dialect.name == "postgresql"
        params = {"k_tenant": self.tenant_id, "k_message": message_id, "k_now": utcnow_micros()}
        keep, gone, count = (sql.built_once(s) for s in _message_delete(pg))

        def steps() -> Steps[None]:
            if pg:  # one statement: the copies and the DELETE are CTEs of the count's UPDATE
                found = yield count.stmt(params)
            else:
                yield keep.stmt(params, COUNT)
                found = yield gone.stmt(params)
                if found:
                    yield count.stmt({**params, "k_session": found[0][0]}, COUNT)
            if not found:
                raise NotFound(self.kind, message_id)

        yield Write("deleting a message", steps)

    @op
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
    ) -> Op[Page[Message]]:
        """Messages of a session in ``seq`` order, or across sessions (by id) when no session is given.

        One read (a second for an empty first page of a session: is there one), its
        statement compiled once per set of filters.
        """
        plain = (role, content_type, agent_id, created_after, created_before, after_seq)
        if session_id is not None and plain == (None,) * 6:  # what the service's list asks
            return (
                yield from operation(
                    self.page,
                    session_id,
                    run_id=run_id,
                    limit=limit,
                    after=after,
                    before=before,
                    order=order,
                )
            )
        where = Filters()
        where.equal((t.c.session_id, session_id), (t.c.run_id, run_id), (t.c.agent_id, agent_id))
        if role is not None:
            where.equal((t.c.role, check_role(role)))
        if content_type is not None:
            if not isinstance(content_type, str):
                raise InvalidInput("must be a string", field="content_type")
            pattern = like_escaped(f",{content_type},")
            where.add(lambda p: t.c.content_types.contains(p, escape="/"), {"ctype": pattern})
        if after_seq is not None:
            where.add(t.c.seq.__gt__, {"after_seq": after_seq})
        where.between(t.c.created_at, created_after, created_before)
        page = yield from self._page_op(
            t,
            where,
            to_message,
            what="listing messages",
            limit=limit,
            after=after,
            before=before,
            order=order,
            sort=t.c.seq if session_id is not None else None,
        )
        if session_id is None:
            return page
        return (yield from self._session_page_op(session_id, page, after, before))

    @op
    def page(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "asc",
        kind: str | None = None,
    ) -> Op[Page[Message]]:
        """One page of a session's messages in ``seq`` order, of one run at most.

        ``list`` with a session and no other filter, as the service lists a
        thread's messages; native in the async API (no worker thread). The
        statements are ``MessageSQL.page``'s, compiled once, and the messages
        are built as ``recent`` builds them. NotFound without the session, or
        when it is not of ``kind`` (when given; checked in the same read).
        """
        check_page(limit, 0, order)
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[tuple[builtins.list[StoredRow], bool, bool] | str]:
            return sql.page(
                tenant,
                session_id,
                limit,
                forward=order == "asc",
                after=after,
                before=before,
                run_id=run_id,
                kind=kind,
            )

        done: tuple[builtins.list[StoredRow], bool, bool] | str
        done = yield Read("listing messages", steps)
        if isinstance(done, str):
            cursor = after if done == "after" else before
            raise InvalidInput(f"no object with id {cursor!r} in this listing", field=done)
        rows, reverse, exists = done
        if not exists:
            raise NotFound(kind or "session", session_id)
        has_more = len(rows) > limit
        rows = rows[:limit]
        if reverse:
            rows.reverse()
        items = _from_rows(tenant, session_id, rows, sql)
        return Page(
            items=items,
            has_more=has_more,
            first_id=items[0].id if items else None,
            last_id=items[-1].id if items else None,
        )

    @op
    def recent(self, session_id: str, n: int = 20) -> Op[builtins.list[Message]]:
        """The last ``n`` messages of a session, oldest first."""
        found = yield from self._last(session_id, n, chat=False)
        return _from_rows(self.tenant_id, session_id, found, self._core.message_sql)

    @op
    def history(self, session_id: str, n: int = 20) -> Op[builtins.list[dict[str, Any]]]:
        """The last ``n`` messages as chat messages, oldest first: what a model is sent.

        Each is ``{"role": ..., "content": ...}``, the content a string for a
        message of one plain text block, else its list of blocks, as chat APIs
        take them. The read an agent makes every turn: only role and content are
        read, and no :class:`Message` is built (``recent()`` gives those).
        """
        found = yield from self._last(session_id, n, chat=True)
        return _chat_from_rows(found, self._core.message_sql)

    def _last(self, session_id: str, n: int, *, chat: bool) -> Op[builtins.list[Any]]:
        """The rows of a session's last ``n`` messages, oldest first; NotFound without the session."""
        if type(n) is not int or not 0 < n <= MAX_LIMIT:
            check_limit(n, "n")
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[builtins.list[Any] | None]:
            return sql.recent(tenant, session_id, n, chat)

        found: builtins.list[Any] | None = yield Read("reading messages", steps)
        if found is None:
            raise NotFound("session", session_id)
        return found

    def _require_session(self, session_id: str) -> None:
        tenant, sql = self.tenant_id, self._core.message_sql
        if not self._core.run_read(
            "reading a session", lambda cur: run_steps(cur, sql.exists(tenant, session_id))
        ):
            raise NotFound("session", session_id)
