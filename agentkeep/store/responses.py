"""Stored responses (the Responses API): responses, their items, their stream events.

A response row holds the request's echoed fields, its status, usage and
cost; its input and output items are rows of ``response_items`` in order
(``position``); a streamed or background response's events are rows of
``response_events`` numbered by ``sequence_number``. A chain is the list of
``previous_response_id`` links: :meth:`Responses.context` reads the items
of a whole chain with one recursive query, so continuing a chain costs the
same at every length and never copies history. A response is visible until
``expires_at``; :meth:`Responses.purge_expired` deletes the expired ones.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models.common import Order, Page, micros_to_datetime, utcnow_micros
from agentkeep.models.responses import (
    RESPONSE_STATUSES,
    TERMINAL_RESPONSE_STATUSES,
    ResponseEvent,
    StoredResponse,
)
from agentkeep.store._base import Resource, Row, check_page, keys_in, page_of, row_times
from agentkeep.store._prices import check_cost, from_nano, to_nano
from agentkeep.store._run_checks import check_choice, check_ref, check_text
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, op
from agentkeep.store._validate import check_object, require_str
from agentkeep.store.events import Notice, events_channel
from agentkeep.store.message_sql import MessageSQL, b, const
from agentkeep.store.schema import response_events as et
from agentkeep.store.schema import response_items as it
from agentkeep.store.schema import responses as t

__all__ = ["DEFAULT_TTL_SECONDS", "EndEvents", "Responses"]

DEFAULT_TTL_SECONDS = 30 * 24 * 3600.0
_OPEN = ("queued", "in_progress")

EndEvents = Callable[
    [StoredResponse, builtins.list[dict[str, Any]], int], Sequence[Mapping[str, Any]]
]
"""The last stream events of a response ended outside its run (cancelled, failed by a
sweep): given the ended response, its output items and the next ``sequence_number``."""


def to_response(row: Row) -> StoredResponse:
    data = row_times(row, "created_at", "updated_at", "completed_at", "expires_at")
    data["cost_usd"] = from_nano(data.pop("cost_nano_usd"))
    return StoredResponse.model_construct(**data)


def _notice() -> str:
    """The notice of a write of response events: bookmark 0, this process, no run."""
    return "0" + Notice.tail(())


# A response by id, its output items in order, its stream's events: the reads of the
# async path (``get``, ``retrieve``, ``events``), compiled once per dialect
# (``MessageSQL.compiled``).
_ROW = sa.select(*t.c).where(t.c.tenant_id == b("t"), t.c.id == b("r"))
_EXPIRES_AT = t.c.keys().index("expires_at")  # in a row of _ROW
_ROW_FOR_UPDATE = _ROW.with_for_update()  # (conflicts with FOR KEY SHARE; SQLite: no clause)
_EXPIRES = sa.select(t.c.expires_at).where(t.c.tenant_id == b("t"), t.c.id == b("r"))
_EXPIRES_LOCKED = _EXPIRES.with_for_update()
#: A response's events, items and row (``:t``, ``:r``), in that order.
_DELETES = tuple(
    sa.delete(table).where(table.c.tenant_id == b("t"), table.c[column] == b("r"))
    for table, column in ((et, "response_id"), (it, "response_id"), (t, "id"))
)
_EVENTS = (
    sa.select(et.c.sequence_number, et.c.type, et.c.data, et.c.created_at)
    .where(et.c.tenant_id == b("t"), et.c.response_id == b("r"), et.c.sequence_number > b("a"))
    .order_by(et.c.sequence_number)
    .limit(b("n"))
    .offset(const(0))  # else SQLite's compiler adds a parameter of its own
)
_OUTPUT = (
    sa.select(it.c.item)
    .where(it.c.tenant_id == b("t"), it.c.response_id == b("r"), it.c.kind == const("output"))
    .order_by(it.c.position)
)


def _item_of(row: Row) -> dict[str, Any]:
    return dict(row["item"])


def _require_live(response_id: str, expires_at: int | None) -> None:
    """``NotFound`` for a response that is not there (``expires_at`` None) or has expired:
    every read of one answers so."""
    if expires_at is None or expires_at <= utcnow_micros():
        raise NotFound("response", response_id)


def _live(sql: MessageSQL, tenant_id: str, response_id: str) -> Steps[dict[str, Any]]:
    """The response's row, its columns by name; ``NotFound`` as :func:`_require_live`."""
    found = yield Stmt(sql.compiled(_ROW), {"t": tenant_id, "r": response_id})
    _require_live(response_id, found[0][_EXPIRES_AT] if found else None)
    row = sql.named_row(t, found[0])
    row["background"] = bool(row["background"])  # SQLite's driver gives 0 or 1
    return row


def _items_statement(of_kind: bool) -> sa.Select[Any]:
    """A response's items in order (``:k`` their kind, when ``of_kind``)."""
    where = [it.c.tenant_id == sa.bindparam("t"), it.c.response_id == sa.bindparam("r")]
    if of_kind:
        where.append(it.c.kind == sa.bindparam("k"))
    return sa.select(it.c.item).where(*where).order_by(it.c.position)


def _context_statement() -> sa.Select[Any]:
    """The items of the chain of responses that ends with ``:r`` (back through
    ``previous_response_id`` while they live at ``:now``), oldest first."""
    mine = t.c.tenant_id == sa.bindparam("t")
    chain = (
        sa.select(t.c.id, t.c.previous_response_id, sa.literal(0).label("depth"))
        .where(mine, t.c.id == sa.bindparam("r"))
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        sa.select(t.c.id, t.c.previous_response_id, chain.c.depth + 1).where(
            mine,
            t.c.id == chain.c.previous_response_id,
            t.c.expires_at > sa.bindparam("now", type_=sa.BigInteger),
        )
    )
    return (
        sa.select(it.c.item)
        .join(chain, it.c.response_id == chain.c.id)
        .where(it.c.tenant_id == sa.bindparam("t"))
        .order_by(chain.c.depth.desc(), it.c.position)
    )


_CONTEXT = _context_statement()

#: Ids a statement of :func:`_find_statement` looks up at most (a power of two).
_FIND_MAX = 64


def _find_statement(size: int) -> sa.Select[Any]:
    """Items of live responses (at ``:now``) by id, of ``size`` ids ``:i0`` ... (``:t``)."""
    ids = [sa.bindparam(f"i{n}", type_=sa.String()) for n in range(size)]
    return (
        sa.select(it.c.id, it.c.item)
        .join(t, sa.and_(t.c.tenant_id == it.c.tenant_id, t.c.id == it.c.response_id))
        .where(
            it.c.tenant_id == sa.bindparam("t"),
            it.c.id.in_(ids),
            t.c.expires_at > sa.bindparam("now", type_=t.c.expires_at.type),
        )
    )


def _check_live(sql: MessageSQL, tenant_id: str, response_id: str) -> Steps[None]:
    """``NotFound`` as :func:`_require_live`, read from the response's expiry alone: the
    check of a read of its events or items."""
    found = yield Stmt(sql.compiled(_EXPIRES), {"t": tenant_id, "r": response_id})
    _require_live(response_id, found[0][0] if found else None)


def _events_after(
    sql: MessageSQL, tenant_id: str, response_id: str, after: int, limit: int
) -> Steps[list[Any]]:
    """The rows of a live response's events after ``after`` (``NotFound`` as ``_live``)."""
    yield from _check_live(sql, tenant_id, response_id)
    params = {"t": tenant_id, "r": response_id, "a": after, "n": limit}
    rows: list[Any] = yield Stmt(sql.compiled(_EVENTS), params)
    return rows


def _live_with_output(
    sql: MessageSQL, tenant_id: str, response_id: str
) -> Steps[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``_live`` and the response's output items (read after it: a response seen ended
    has them all, as they commit with its end)."""
    row = yield from _live(sql, tenant_id, response_id)
    found = yield Stmt(sql.compiled(_OUTPUT), {"t": tenant_id, "r": response_id})
    return row, [sql.load_any(r[0]) for r in found]


def _items(value: Any, field: str) -> list[dict[str, Any]]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidInput("must be a list of items", field=field)
    out = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidInput("must be an object", field=where)
        require_str(item.get("id"), f"{where}.id", max_len=64)
        require_str(item.get("type"), f"{where}.type", max_len=64)
        out.append(dict(item))
    return out


def _status(value: Any) -> str:
    return check_choice(value, RESPONSE_STATUSES, "status")


def _opt_object(value: Any, field: str) -> dict[str, Any] | None:
    return None if value is None else check_object(value, field)


_QUEUED = (
    sa.select(t.c.tenant_id, t.c.id)
    .where(t.c.status == const("queued"))
    .order_by(t.c.created_at, t.c.id)
    .limit(const(1))
    .offset(const(0))
)
"""The oldest queued background response: the poll of every worker, and its claim."""


class Responses(Resource):
    """``store.responses``: this tenant's stored responses."""

    kind = "response"

    def create(
        self,
        *,
        model: str,
        input_items: Sequence[Mapping[str, Any]],
        status: str = "in_progress",
        instructions: Any = None,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        background: bool = False,
        params: Mapping[str, Any] | None = None,
        output_items: Sequence[Mapping[str, Any]] = (),
        usage: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        incomplete_details: Mapping[str, Any] | None = None,
        cost_usd: Decimal | None = None,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        id: str | None = None,
        events: Sequence[Mapping[str, Any]] = (),
        worker_id: str | None = None,
    ) -> StoredResponse:
        """Store a response with its input items (and, if it already ended, its output).

        Items are wire items, each with its ``id`` and ``type``. The response
        is readable for ``ttl_seconds``. ``events``: its first stream events
        (as :meth:`append_events` takes them), stored in the same write.
        ``worker_id``: the run worker of the process answering it, so that
        :meth:`fail_abandoned` ends it if that process dies first.
        """
        now = utcnow_micros()
        status = _status(status)
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)):
            raise InvalidInput("must be a number of seconds", field="ttl_seconds")
        if ttl_seconds <= 0:
            raise InvalidInput("must be positive", field="ttl_seconds")
        if not isinstance(background, bool):
            raise InvalidInput("must be a boolean", field="background")
        cost = check_cost(cost_usd)
        row: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "id": require_str(id, "id", max_len=64) if id is not None else new_id("resp"),
            "status": status,
            "model": require_str(model, "model"),
            "instructions": instructions,
            "previous_response_id": check_text(previous_response_id, "previous_response_id", 64),
            "conversation_id": check_text(conversation_id, "conversation_id", 64),
            "background": background,
            "params": check_object(params or {}, "params"),
            "error": _opt_object(error, "error"),
            "incomplete_details": _opt_object(incomplete_details, "incomplete_details"),
            "usage": _opt_object(usage, "usage"),
            "cost_nano_usd": to_nano(cost) if cost is not None else None,
            "worker_id": check_text(worker_id, "worker_id", 128),
            "created_at": now,
            "updated_at": now,
            "completed_at": now if status == "completed" else None,
            "expires_at": now + int(ttl_seconds * 1_000_000),
        }
        inputs = _items(input_items, "input_items")
        outputs = _items(output_items, "output_items")
        event_rows = self._event_rows(row["id"], events)
        with self._core.write("storing a response") as conn:
            # The notice of its events rides in the insert of the row (no round trip).
            notice = self._notice_if(bool(event_rows))
            conn.execute(sa.insert(t).returning(*notice) if notice else sa.insert(t), row)
            self._insert_items(conn, row["id"], 0, ("input", inputs), ("output", outputs))
            if event_rows:  # the row is this write's own: no need to look for it
                self._insert_events(conn, event_rows, notified=bool(notice))
        return to_response(row)

    def _notice_if(self, wanted: bool) -> builtins.list[sa.ColumnElement[Any]]:
        """The notice of this tenant's events, when ``wanted``, as an expression a write that
        runs anyway returns (sent at commit); none where notices are not expressions (SQLite),
        or not ``wanted``: then ``_insert_events`` sends it, if anything."""
        if not wanted:
            return []
        channel, payload = events_channel(self.tenant_id), _notice()
        notice = self._core.dialect.notifying(sa.literal(channel), sa.literal(payload))
        return [] if notice is None else [notice]

    def _insert_items(
        self,
        conn: Connection,
        response_id: str,
        start: int,
        *groups: tuple[str, builtins.list[dict[str, Any]]],
    ) -> None:
        """Insert ``groups`` of items (their kind, then the items) in order from ``start``:
        one statement for them all (a response's input and output are one, not two)."""
        rows = [
            {
                "tenant_id": self.tenant_id,
                "id": item["id"],
                "response_id": response_id,
                "position": position,
                "kind": kind,
                "item": item,
            }
            for position, (kind, item) in enumerate(
                ((kind, item) for kind, items in groups for item in items), start
            )
        ]
        self._insert_rows(conn, it, rows)

    @op
    def get(self, response_id: str) -> Op[StoredResponse]:
        """The response; ``NotFound`` if there is none or it has expired."""
        check_ref(response_id, "response_id")
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[dict[str, Any]]:
            return _live(sql, tenant, response_id)

        row: dict[str, Any] = yield Read("reading a response", steps)
        return to_response(row)

    @op
    def retrieve(
        self, response_id: str
    ) -> Op[tuple[StoredResponse, builtins.list[dict[str, Any]]]]:
        """The response and its output items in order, in one read.

        What ``GET /v1/responses/{id}`` answers. ``NotFound`` as :meth:`get`.
        """
        check_ref(response_id, "response_id")
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[tuple[dict[str, Any], builtins.list[dict[str, Any]]]]:
            return _live_with_output(sql, tenant, response_id)

        row, output = yield Read("reading a response", steps)
        return to_response(row), output

    def _live_row(self, conn: Connection, response_id: str) -> Row:
        row = self._get_row(conn, t, check_ref(response_id, "response_id"))
        _require_live(response_id, row["expires_at"])
        return row

    def finish(
        self,
        response_id: str,
        *,
        status: str,
        output_items: Sequence[Mapping[str, Any]] = (),
        usage: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        incomplete_details: Mapping[str, Any] | None = None,
        cost_usd: Decimal | None = None,
        events: Callable[[StoredResponse], Sequence[Mapping[str, Any]]] | None = None,
        end_events: EndEvents | None = None,
    ) -> StoredResponse | None:
        """End a queued or in-progress response with its output items.

        Returns ``None`` (and writes nothing) when the response already ended,
        e.g. it was cancelled while the model answered. ``events``, given the
        ended response, returns its last stream events (as
        :meth:`append_events` takes them; the final one usually carries that
        response), stored in the same write. ``end_events`` (as
        :meth:`set_status` takes them): events numbered after the last one
        stored, ``events`` included, for an end whose numbers the caller does
        not know.
        """
        check_ref(response_id, "response_id")
        status = _status(status)
        outputs = _items(output_items, "output_items")
        cost = check_cost(cost_usd)
        now = utcnow_micros()
        changes = {
            "status": status,
            "usage": _opt_object(usage, "usage"),
            "error": _opt_object(error, "error"),
            "incomplete_details": _opt_object(incomplete_details, "incomplete_details"),
            "cost_nano_usd": to_nano(cost) if cost is not None else None,
            "updated_at": now,
            "completed_at": now if status == "completed" else None,
        }
        with self._core.write("finishing a response") as conn:
            # One statement ends an open, live response and locks it: it returns the row,
            # where its output items start (after the items it has) and, when it will have
            # events, their notice (no round trip of its own; sent at commit, and only then).
            items_so_far = (
                sa.select(sa.func.count())
                .where(it.c.tenant_id == self.tenant_id, it.c.response_id == response_id)
                .scalar_subquery()
            )
            notice = self._notice_if(events is not None)
            update = (
                sa.update(t)
                .where(
                    t.c.tenant_id == self.tenant_id,
                    t.c.id == response_id,
                    t.c.status.in_(_OPEN),
                    t.c.expires_at > now,
                )
                .values(changes)
                .returning(*t.c, items_so_far.label("_items"), *notice)
            )
            found = conn.execute(update).mappings().first()
            if found is None:
                self._live_row(conn, response_id)  # NotFound: it is not there, or expired
                return None  # it had ended already (cancelled, failed by a sweep)
            ended = to_response({**found, **changes})
            self._insert_items(conn, response_id, found["_items"], ("output", outputs))
            # The row is locked by this write: its events need no look for it.
            event_rows = [] if events is None else self._event_rows(response_id, events(ended))
            if event_rows:
                self._insert_events(conn, event_rows, notified=bool(notice))
            if end_events is not None:
                self._store_end_events(conn, [ended], end_events)
        return ended

    def set_status(
        self, response_id: str, status: str, *, events: EndEvents | None = None
    ) -> StoredResponse:
        """Move an open (queued or in-progress) response to ``status``; an ended one is returned unchanged.

        ``events`` (for an ending ``status``): the response's last stream
        events, stored in the same write, so that a follower of its stream
        sees it end.
        """
        status = _status(status)
        with self._core.write("changing a response's status") as conn:
            # FOR UPDATE, not FOR NO KEY UPDATE: a batch of the run's events being stored
            # holds the row FOR KEY SHARE (append_events_many), and the end event must be
            # numbered after that batch, or the batch must see the status it ended with.
            params = {"t": self.tenant_id, "r": check_ref(response_id, "response_id")}
            row = conn.execute(_ROW_FOR_UPDATE, params).mappings().first()
            _require_live(response_id, None if row is None else row["expires_at"])
            assert row is not None
            if row["status"] in TERMINAL_RESPONSE_STATUSES:
                return to_response(row)
            changes = {"status": status, "updated_at": utcnow_micros()}
            conn.execute(
                sa.update(t)
                .where(t.c.tenant_id == self.tenant_id, t.c.id == response_id)
                .values(changes)
            )
            ended = to_response({**row, **changes})
            if events is not None and status in TERMINAL_RESPONSE_STATUSES:
                self._store_end_events(conn, [ended], events)
        return ended

    @op
    def delete(self, response_id: str) -> Op[None]:
        """Delete the response, its items and its events (a later one that points here keeps its own items).

        One transaction: the response's row taken (``FOR UPDATE`` on PostgreSQL, so a
        concurrent write of its events or its end waits), then the three deletes.
        """
        check_ref(response_id, "response_id")
        sql = self._core.message_sql
        params = {"t": self.tenant_id, "r": response_id}

        def steps() -> Steps[None]:
            found = yield Stmt(sql.compiled(_EXPIRES_LOCKED), params)
            _require_live(response_id, found[0][0] if found else None)
            for stmt in _DELETES:
                yield Stmt(sql.compiled(stmt), params, COUNT)

        yield Write("deleting a response", steps, atomic=True)

    # -- items ---------------------------------------------------------------------------

    @op
    def items(
        self, response_id: str, *, kind: str | None = None
    ) -> Op[builtins.list[dict[str, Any]]]:
        """The response's items in order (``kind``: ``input``, ``output`` or both).

        One read: the response's expiry, then its items (compiled once per kind or none).
        """
        check_ref(response_id, "response_id")
        of_kind = kind is not None
        kind = check_choice(kind, ("input", "output"), "kind") if of_kind else None
        tenant, sql = self.tenant_id, self._core.message_sql
        read = sql.shaped(("response_items", of_kind), lambda: _items_statement(of_kind))
        stmt = read.stmt({"t": tenant, "r": response_id, "k": kind})
        return (yield from self._live_items(response_id, stmt, "reading response items"))

    def _live_items(
        self, response_id: str, stmt: Stmt, what: str
    ) -> Op[builtins.list[dict[str, Any]]]:
        """The items ``stmt`` reads (their JSON first), in a read that checks first that the
        response lives (``NotFound`` otherwise)."""
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[builtins.list[Any]]:
            yield from _check_live(sql, tenant, response_id)
            rows: builtins.list[Any] = yield stmt
            return rows

        rows = yield Read(what, steps)
        return [dict(sql.load_json(r[0])) for r in rows]

    @op
    def list_items(
        self,
        response_id: str,
        *,
        kind: str = "input",
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Op[Page[dict[str, Any]]]:
        """A page of the response's items of ``kind``, in item order (``desc``: last first).

        One read: the response's expiry, then the page (and a cursor's position first),
        compiled once per dialect.
        """
        kind = check_choice(kind, ("input", "output"), "kind")
        check_page(limit, 0, order)
        check_ref(response_id, "response_id")
        tenant, sql = self.tenant_id, self._core.message_sql
        where = {"response_id": response_id, "kind": kind}

        def steps() -> Steps[builtins.list[dict[str, Any]]]:
            yield from _check_live(sql, tenant, response_id)
            return (
                yield from sql.listing(
                    it,
                    tenant,
                    where,
                    "position",
                    forward=order == "asc",
                    after=after,
                    before=before,
                    limit=limit,
                )
            )

        rows = yield Read("reading response items", steps)
        return page_of(rows, limit, before is not None and after is None, _item_of)

    @op
    def context(self, response_id: str) -> Op[builtins.list[dict[str, Any]]]:
        """Every item of the chain that ends with ``response_id``, oldest first.

        The chain follows ``previous_response_id`` back to its start (or to an
        expired or deleted response); ``NotFound`` if ``response_id`` itself is gone.
        One read: the response's expiry, then the chain's items in one statement.
        """
        check_ref(response_id, "response_id")
        tenant, sql = self.tenant_id, self._core.message_sql
        stmt = sql.built_once(_CONTEXT).stmt(
            {"t": tenant, "r": response_id, "now": utcnow_micros()}
        )
        return (yield from self._live_items(response_id, stmt, "reading a response's context"))

    @op
    def find_items(self, item_ids: Iterable[str]) -> Op[dict[str, dict[str, Any]]]:
        """Stored items by id (those of live responses; unknown ids are left out).

        One read: the ids in lists of a few fixed lengths (padded with the last id), each
        length's statement compiled once.
        """
        ids = sorted({check_ref(i, "item_id") for i in item_ids})
        if not ids:
            return {}
        tenant, sql, now = self.tenant_id, self._core.message_sql, utcnow_micros()

        def steps() -> Steps[dict[str, dict[str, Any]]]:
            found: dict[str, dict[str, Any]] = {}
            for start in range(0, len(ids), _FIND_MAX):
                chunk = ids[start : start + _FIND_MAX]
                size = 1 << (len(chunk) - 1).bit_length()  # 1, 2, 4, ... _FIND_MAX
                read = sql.shaped(
                    ("response_find_items", size), functools.partial(_find_statement, size)
                )
                params: dict[str, Any] = {
                    f"i{n}": chunk[min(n, len(chunk) - 1)] for n in range(size)
                }
                rows = yield read.stmt({**params, "t": tenant, "now": now})
                found.update((ident, dict(sql.load_json(item))) for ident, item in rows)
            return found

        result: dict[str, dict[str, Any]] = yield Read("reading response items", steps)
        return result

    # -- events --------------------------------------------------------------------------

    def append_events(self, response_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Store stream events; each is the event as sent, with ``type`` and ``sequence_number``."""
        self.append_events_many({response_id: events})

    def append_events_many(self, events: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Store the stream events of several responses (response id -> its events) in one write.

        All or nothing: ``NotFound`` (and nothing stored) if any of the
        responses is gone. The events of a response that has already ended
        are dropped: its stream ended with the event stored when it ended
        (a cancel, a sweep), and a late batch of its run must not follow it
        (nor take its sequence numbers).
        """
        rows = [row for rid, batch in events.items() for row in self._event_rows(rid, batch)]
        if not rows:
            return
        ids = sorted({row["response_id"] for row in rows})
        with self._core.write("storing response events") as conn:
            # A response deleted meanwhile is NotFound (not a foreign-key Conflict);
            # FOR KEY SHARE makes a concurrent delete wait for these events, and a
            # concurrent end (set_status, fail_abandoned lock FOR UPDATE) too: then
            # this reads the status it ended with.
            parents = sa.select(t.c.id, t.c.status).where(
                t.c.tenant_id == self.tenant_id, t.c.id.in_(ids)
            )
            if self._core.dialect.skip_locked:
                parents = parents.with_for_update(read=True, key_share=True)
            # The notice of these events rides in this read (PostgreSQL: no round trip of
            # its own); sent at commit, and only then.
            notice = self._notice_if(True)
            found = {r.id: r.status for r in conn.execute(parents.add_columns(*notice))}
            for response_id in ids:
                if response_id not in found:
                    raise NotFound(self.kind, response_id)
            rows = [r for r in rows if found[r["response_id"]] not in TERMINAL_RESPONSE_STATUSES]
            if rows:
                self._insert_events(conn, rows, notified=bool(notice))

    def _event_rows(
        self,
        response_id: str,
        events: Sequence[Mapping[str, Any]],
        tenant_id: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        now = utcnow_micros()
        rows = []
        for i, event in enumerate(events):
            if not isinstance(event, Mapping):
                raise InvalidInput("must be an object", field=f"events[{i}]")
            seq = event.get("sequence_number")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise InvalidInput(
                    "must be a non-negative integer", field=f"events[{i}].sequence_number"
                )
            rows.append(
                {
                    "tenant_id": self.tenant_id if tenant_id is None else tenant_id,
                    "response_id": response_id,
                    "sequence_number": seq,
                    "type": require_str(event.get("type"), f"events[{i}].type", max_len=128),
                    "data": dict(event),
                    "created_at": now,
                }
            )
        return rows

    def _store_end_events(
        self, conn: Connection, ended: builtins.list[StoredResponse], events: EndEvents
    ) -> None:
        """Store ``events`` of each ended response (of any tenant), numbered after its last."""
        keys = [(r.tenant_id, r.id) for r in ended]
        last = dict.fromkeys(keys, -1)
        outputs: dict[tuple[str, str], builtins.list[dict[str, Any]]] = {k: [] for k in keys}
        for chunk in (keys[i : i + 100] for i in range(0, len(keys), 100)):  # bound parameters
            numbers = conn.execute(
                sa.select(et.c.tenant_id, et.c.response_id, sa.func.max(et.c.sequence_number))
                .where(keys_in((et.c.tenant_id, et.c.response_id), chunk))
                .group_by(et.c.tenant_id, et.c.response_id)
            )
            for tenant_id, response_id, number in numbers:
                last[(tenant_id, response_id)] = number
            items = conn.execute(
                sa.select(it.c.tenant_id, it.c.response_id, it.c.item)
                .where(keys_in((it.c.tenant_id, it.c.response_id), chunk), it.c.kind == "output")
                .order_by(it.c.tenant_id, it.c.response_id, it.c.position)
            )
            for tenant_id, response_id, item in items:
                outputs[(tenant_id, response_id)].append(dict(item))
        rows = []
        for response in ended:
            key = (response.tenant_id, response.id)
            made = events(response, outputs[key], last[key] + 1)
            rows += self._event_rows(response.id, made, tenant_id=response.tenant_id)
        if rows:
            self._insert_events(conn, rows)

    def _insert_events(
        self, conn: Connection, rows: builtins.list[dict[str, Any]], *, notified: bool = False
    ) -> None:
        """Insert stream event rows (of any tenant), and tell other processes' streams.

        Each tenant's events channel gets a notice that names no run
        (PostgreSQL; at commit): the listening processes wake their readers that
        are not tied to a run, the Responses streams among them, and no run's
        (``RemoteEvents``). ``notified``: this write has sent it already.
        """
        self._insert_rows(conn, et, rows)
        if not notified:
            for tenant_id in sorted({row["tenant_id"] for row in rows}):
                self._core.dialect.notify(conn, events_channel(tenant_id), _notice())

    @op
    def events(
        self, response_id: str, *, after: int = -1, limit: int = 1000
    ) -> Op[builtins.list[ResponseEvent]]:
        """Stream events with ``sequence_number > after``, in order."""
        if isinstance(after, bool) or not isinstance(after, int):
            raise InvalidInput("must be an integer", field="starting_after")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInput("must be a non-negative integer", field="limit")
        check_ref(response_id, "response_id")
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[builtins.list[Any]]:
            return _events_after(sql, tenant, response_id, after, limit)

        rows: builtins.list[Any] = yield Read("reading response events", steps)
        load = sql.load_any
        return [
            ResponseEvent.model_construct(
                response_id=response_id,
                sequence_number=number,
                type=kind,
                data=load(data),
                created_at=micros_to_datetime(created),
            )
            for number, kind, data, created in rows
        ]

    # -- the background queue and expiry --------------------------------------------------

    def claim_next_any_tenant(self, worker_id: str) -> StoredResponse | None:
        """Take the oldest queued background response of any tenant (``in_progress``, ``worker_id``)."""
        worker = require_str(worker_id, "worker_id", max_len=128)
        if self._first_compiled("looking for a response to run", _QUEUED, {}) is None:
            return None
        pick = _QUEUED
        with self._core.write("claiming a response") as conn:
            if self._core.dialect.skip_locked:
                pick = pick.with_for_update(skip_locked=True)
            found = conn.execute(pick).first()
            if found is None:
                return None
            changes = {"status": "in_progress", "worker_id": worker, "updated_at": utcnow_micros()}
            conn.execute(
                sa.update(t)
                .where(t.c.tenant_id == found.tenant_id, t.c.id == found.id)
                .values(changes)
            )
            row = conn.execute(
                sa.select(t).where(t.c.tenant_id == found.tenant_id, t.c.id == found.id)
            ).mappings()
            return to_response(row.one())

    def fail_abandoned(
        self, worker_ids: Sequence[str], message: str, *, events: EndEvents | None = None
    ) -> int:
        """Fail every tenant's in-progress responses of workers that are gone; how many.

        ``events``: each failed response's last stream events, stored in the
        same write (so a follower of its stream sees it end).
        """
        if not worker_ids:
            return 0
        pick = sa.select(t).where(t.c.status == "in_progress", t.c.worker_id.in_(list(worker_ids)))
        if self._core.dialect.skip_locked:  # exactly the rows read are failed
            pick = pick.with_for_update()
        with self._core.write("failing abandoned responses") as conn:
            rows = list(conn.execute(pick).mappings())
            if not rows:
                return 0
            changes = {
                "status": "failed",
                "error": {"code": "server_error", "message": message},
                "updated_at": utcnow_micros(),
            }
            keys = [(r["tenant_id"], r["id"]) for r in rows]
            for chunk in (keys[i : i + 100] for i in range(0, len(keys), 100)):
                conn.execute(
                    sa.update(t).where(keys_in((t.c.tenant_id, t.c.id), chunk)).values(changes)
                )
            if events is not None:
                self._store_end_events(conn, [to_response({**r, **changes}) for r in rows], events)
            return len(rows)

    def purge_expired(self, *, all_tenants: bool = False, now: datetime | None = None) -> int:
        """Delete the responses past ``expires_at`` (this tenant's, or every tenant's); how many."""
        cutoff = utcnow_micros() if now is None else int(now.timestamp() * 1_000_000)
        where = [t.c.expires_at <= cutoff]
        if not all_tenants:
            where.append(t.c.tenant_id == self.tenant_id)
        pick = sa.select(t.c.tenant_id, t.c.id).where(*where)
        with self._core.read("looking for expired responses") as conn:
            if conn.execute(pick.limit(1)).first() is None:
                return 0  # the periodic sweep never takes the write lock for nothing
        with self._core.write("purging expired responses") as conn:
            gone = list(conn.execute(pick))
            for table in (et, it):
                for tenant_id, ident in gone:
                    conn.execute(
                        sa.delete(table).where(
                            table.c.tenant_id == tenant_id, table.c.response_id == ident
                        )
                    )
            conn.execute(sa.delete(t).where(*where))
            return len(gone)
