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
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models.common import Order, Page, micros_to_datetime, utcnow_micros
from agentkeep.models.responses import (
    RESPONSE_STATUSES,
    TERMINAL_RESPONSE_STATUSES,
    ResponseEvent,
    StoredResponse,
)
from agentkeep.store._base import Resource, Row, check_page, page_of, row_times
from agentkeep.store._prices import check_cost, from_nano, to_nano
from agentkeep.store._run_checks import check_choice, check_ref, check_text
from agentkeep.store._steps import COUNT, MANY, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store._validate import check_object, require_str
from agentkeep.store.events import Notice, events_channel, notify_statement
from agentkeep.store.message_sql import MessageSQL, Shaped, b, const, dump_json
from agentkeep.store.schema import response_events as et
from agentkeep.store.schema import response_items as it
from agentkeep.store.schema import responses as t

__all__ = ["DEFAULT_TTL_SECONDS", "EndEvents", "Responses"]

DEFAULT_TTL_SECONDS = 30 * 24 * 3600.0
_TTL_MAX_S = 100 * 365 * 24 * 3600  # a hundred years: past it, a time is not a BIGINT of µs
_OPEN = ("queued", "in_progress")
T = TypeVar("T")

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


_COLUMNS = len(t.c)
_LAST_EVENT = sa.select(sa.func.max(et.c.sequence_number)).where(
    et.c.tenant_id == b("t"), et.c.response_id == b("r")
)


def _changed(**values: Any) -> sa.Update:
    """The response ``:t``, ``:r`` changed to ``values`` at ``:v_now``."""
    mine = (t.c.tenant_id == b("t"), t.c.id == b("r"))
    return sa.update(t).where(*mine).values(updated_at=b("v_now", type_=sa.BigInteger), **values)


#: A response's status changed (``:v_status``).
_SET_STATUS = _changed(status=b("v_status"))
#: A queued response taken by a worker (``:v_worker``): its row.
_CLAIM = _changed(status=const("in_progress"), worker_id=b("v_worker")).returning(*t.c)
#: A JSON column's parameter, bound as its JSON text (``MessageSQL.json_param``).
JsonParam = Callable[[str], sa.ColumnElement[Any]]


def _fail_statement(json: JsonParam) -> sa.Update:
    """A response failed by a sweep (``:v_error`` its JSON)."""
    return _changed(status=const("failed"), error=json("v_error"))


def _finish_statement(json: JsonParam, notice: sa.ColumnElement[Any] | None) -> sa.Update:
    """The end of an open, live response (``:t``, ``:r``, at ``:v_now``; its new values
    ``:v_*``, JSON ones as their text): its row, where its output items start (after the
    items it has), and ``notice`` when given (sent at commit)."""
    items_so_far = (
        sa.select(sa.func.count())
        .where(it.c.tenant_id == b("t"), it.c.response_id == b("r"))
        .scalar_subquery()
    )
    now = b("v_now", type_=sa.BigInteger)
    returned = [*t.c, items_so_far.label("_items")]
    return (
        sa.update(t)
        .where(
            t.c.tenant_id == b("t"),
            t.c.id == b("r"),
            t.c.status.in_([const(s) for s in _OPEN]),
            t.c.expires_at > now,
        )
        .values(
            status=b("v_status"),
            usage=json("v_usage"),
            error=json("v_error"),
            incomplete_details=json("v_incomplete"),
            cost_nano_usd=b("v_cost", type_=sa.BigInteger),
            updated_at=now,
            completed_at=b("v_completed", type_=sa.BigInteger),
        )
        .returning(*returned, *([] if notice is None else [notice]))
    )


def _parents_statement(size: int, notice: sa.ColumnElement[Any] | None) -> sa.Select[Any]:
    """The id and status of ``size`` responses ``:i0`` ... (``:t``), taken ``FOR KEY SHARE``
    (PostgreSQL: a delete waits for the events written after this, and an end, which locks
    ``FOR UPDATE``, too); ``notice`` when given."""
    ids = [sa.bindparam(f"i{n}", type_=sa.String()) for n in range(size)]
    stmt = sa.select(t.c.id, t.c.status).where(t.c.tenant_id == b("t"), t.c.id.in_(ids))
    if notice is not None:
        stmt = stmt.add_columns(notice)
    return stmt.with_for_update(read=True, key_share=True)


def _abandoned_statement(size: int) -> sa.Select[Any]:
    """Every tenant's in-progress responses of ``size`` workers ``:w0`` ..., locked (exactly
    the rows read are failed)."""
    workers = [sa.bindparam(f"w{n}", type_=sa.String()) for n in range(size)]
    return (
        sa.select(*t.c)
        .where(t.c.status == const("in_progress"), t.c.worker_id.in_(workers))
        .with_for_update()
    )


def _expired_statement(all_tenants: bool, first: bool) -> sa.Select[Any]:
    """The responses past ``:cut`` (of tenant ``:t`` unless ``all_tenants``): the first
    one (a look before the write), or all of them, locked (another sweep skips them)."""
    stmt = sa.select(t.c.tenant_id, t.c.id).where(t.c.expires_at <= b("cut", type_=sa.BigInteger))
    if not all_tenants:
        stmt = stmt.where(t.c.tenant_id == b("t"))
    if first:
        return stmt.limit(const(1)).offset(const(0))
    return stmt.with_for_update(skip_locked=True)


def _padded(prefix: str, values: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """``values`` (at most ``_FIND_MAX``) as the parameters ``prefix0`` ... of a list of a
    power-of-two length, padded with the last value: that length and the parameters."""
    size = 1 << (len(values) - 1).bit_length()
    return size, {f"{prefix}{n}": values[min(n, len(values) - 1)] for n in range(size)}


def _chunks(values: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    return (values[i : i + size] for i in range(0, len(values), size))


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
    return _response_row(sql, found[0])


def _response_row(sql: MessageSQL, values: Sequence[Any]) -> dict[str, Any]:
    """A response's row as the driver returned it (every column, then perhaps more: those
    are left out), its columns by name."""
    row = sql.named_row(t, values[:_COLUMNS])
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


def _check_ttl(value: Any) -> int:
    """A time to live in seconds, as microseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput("must be a number of seconds", field="ttl_seconds")
    if not 0 < value <= _TTL_MAX_S:  # (NaN too)
        raise InvalidInput(f"must be positive, at most {_TTL_MAX_S}", field="ttl_seconds")
    return int(value * 1_000_000)


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
_QUEUED_LOCKED = _QUEUED.with_for_update(skip_locked=True)


class Responses(Resource):
    """``store.responses``: this tenant's stored responses."""

    kind = "response"

    @op
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
    ) -> Op[StoredResponse]:
        """Store a response with its input items (and, if it already ended, its output).

        Items are wire items, each with its ``id`` and ``type``. The response
        is readable for ``ttl_seconds``. ``events``: its first stream events
        (as :meth:`append_events` takes them), stored in the same write.
        ``worker_id``: the run worker of the process answering it, so that
        :meth:`fail_abandoned` ends it if that process dies first.
        """
        now = utcnow_micros()
        status = _status(status)
        ttl = _check_ttl(ttl_seconds)
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
            "expires_at": now + ttl,
        }
        inputs = _items(input_items, "input_items")
        outputs = _items(output_items, "output_items")
        event_rows = self._event_rows(row["id"], events)
        steps = functools.partial(self._insert_steps, row, inputs, outputs, event_rows)
        yield Write("storing a response", steps, atomic=True)
        return to_response(row)

    def _insert_steps(
        self,
        row: dict[str, Any],
        inputs: builtins.list[dict[str, Any]],
        outputs: builtins.list[dict[str, Any]],
        event_rows: builtins.list[dict[str, Any]],
    ) -> Steps[None]:
        """A new response's row, then its items and its first events."""
        sql = self._core.message_sql
        # The notice of its events rides in the insert of the row (no round trip).
        insert = self._notifying(("responses.insert",), sql.insert_of(t).returning)
        notified = insert is not None and bool(event_rows)
        params = sql.insert_params(t, row)
        if insert is not None and notified:
            yield insert.stmt({**params, **self._notice_params(self.tenant_id)})
        else:
            yield Stmt(sql.insert_row(t), params, COUNT)
        yield from self._item_steps(row["id"], 0, ("input", inputs), ("output", outputs))
        if event_rows:  # the row is this write's own: no need to look for it
            yield from self._event_steps(event_rows, notified=notified)

    def _notifying(
        self, key: Hashable, returning: Callable[..., sa.ClauseElement]
    ) -> Shaped | None:
        """The statement ``returning(notice)`` makes, the notice of this tenant's events
        (``:n_channel``, ``:n_payload``: :meth:`_notice_params`) its expression, compiled
        once per ``key``; None where notices are not expressions (SQLite)."""
        channel = sa.bindparam("n_channel", type_=sa.String())
        notice = self._core.dialect.notifying(channel, sa.bindparam("n_payload", type_=sa.Text()))
        if notice is None:
            return None
        return self._core.message_sql.shaped(key, lambda: returning(notice))

    @staticmethod
    def _notice_params(tenant_id: str) -> dict[str, str]:
        return {"n_channel": events_channel(tenant_id), "n_payload": _notice()}

    def _item_steps(
        self,
        response_id: str,
        start: int,
        *groups: tuple[str, builtins.list[dict[str, Any]]],
    ) -> Steps[None]:
        """Insert ``groups`` of items (their kind, then the items) in order from ``start``."""
        sql = self._core.message_sql
        rows = [
            sql.insert_params(
                it,
                {
                    "tenant_id": self.tenant_id,
                    "id": item["id"],
                    "response_id": response_id,
                    "position": position,
                    "kind": kind,
                    "item": item,
                },
            )
            for position, (kind, item) in enumerate(
                ((kind, item) for kind, items in groups for item in items), start
            )
        ]
        if rows:
            yield Stmt(sql.insert_row(it), rows, MANY)

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

    @op
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
    ) -> Op[StoredResponse | None]:
        """End a queued or in-progress response with its output items.

        Returns ``None`` (and writes nothing) when the response already ended,
        e.g. it was cancelled while the model answered. ``events``, given the
        ended response, returns its last stream events (as
        :meth:`append_events` takes them; the final one usually carries that
        response), stored in the same write. ``end_events`` (as
        :meth:`set_status` takes them): events numbered after the last one
        stored, ``events`` included, for an end whose numbers the caller does
        not know.

        One write: one statement ends the response and locks it, returning its row,
        where its output items start and (PostgreSQL, with ``events``) the notice of
        its events; then the items and the events.
        """
        check_ref(response_id, "response_id")
        status = _status(status)
        outputs = _items(output_items, "output_items")
        cost = check_cost(cost_usd)
        now = utcnow_micros()
        params = {
            "t": self.tenant_id,
            "r": response_id,
            "v_status": status,
            "v_usage": dump_json(_opt_object(usage, "usage")),
            "v_error": dump_json(_opt_object(error, "error")),
            "v_incomplete": dump_json(_opt_object(incomplete_details, "incomplete_details")),
            "v_cost": to_nano(cost) if cost is not None else None,
            "v_now": now,
            "v_completed": now if status == "completed" else None,
        }
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[StoredResponse | None]:
            build = functools.partial(_finish_statement, sql.json_param)
            end = self._notifying(("responses.finish",), build) if events else None
            notified = end is not None
            if end is None:
                end = sql.shaped(("responses.finish", None), lambda: build(None))
                found = yield end.stmt(params)
            else:
                found = yield end.stmt({**params, **self._notice_params(tenant)})
            if not found:
                yield from _check_live(sql, tenant, response_id)  # NotFound: gone, expired
                return None  # it had ended already (cancelled, failed by a sweep)
            ended = to_response(_response_row(sql, found[0]))
            yield from self._item_steps(response_id, found[0][_COLUMNS], ("output", outputs))
            # The row is locked by this write: its events need no look for it.
            event_rows = [] if events is None else self._event_rows(response_id, events(ended))
            if event_rows:
                yield from self._event_steps(event_rows, notified=notified)
            if end_events is not None:
                yield from self._end_event_steps([ended], end_events)
            return ended

        ended: StoredResponse | None = yield Write("finishing a response", steps, atomic=True)
        return ended

    @op
    def set_status(
        self, response_id: str, status: str, *, events: EndEvents | None = None
    ) -> Op[StoredResponse]:
        """Move an open (queued or in-progress) response to ``status``; an ended one is returned unchanged.

        ``events`` (for an ending ``status``): the response's last stream
        events, stored in the same write, so that a follower of its stream
        sees it end.
        """
        status = _status(status)
        tenant, sql = self.tenant_id, self._core.message_sql
        params = {"t": tenant, "r": check_ref(response_id, "response_id")}

        def steps() -> Steps[StoredResponse]:
            # FOR UPDATE, not FOR NO KEY UPDATE: a batch of the run's events being stored
            # holds the row FOR KEY SHARE (append_events_many), and the end event must be
            # numbered after that batch, or the batch must see the status it ended with.
            found = yield Stmt(sql.compiled(_ROW_FOR_UPDATE), params)
            _require_live(response_id, found[0][_EXPIRES_AT] if found else None)
            row = _response_row(sql, found[0])
            if row["status"] in TERMINAL_RESPONSE_STATUSES:
                return to_response(row)
            changes = {"status": status, "updated_at": utcnow_micros()}
            values = {"v_status": status, "v_now": changes["updated_at"]}
            yield Stmt(sql.compiled(_SET_STATUS), {**params, **values}, COUNT)
            ended = to_response({**row, **changes})
            if events is not None and status in TERMINAL_RESPONSE_STATUSES:
                yield from self._end_event_steps([ended], events)
            return ended

        ended: StoredResponse = yield Write("changing a response's status", steps, atomic=True)
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
            for chunk in _chunks(ids, _FIND_MAX):
                size, params = _padded("i", chunk)  # size: 1, 2, 4, ... _FIND_MAX
                read = sql.shaped(
                    ("response_find_items", size), functools.partial(_find_statement, size)
                )
                rows = yield read.stmt({**params, "t": tenant, "now": now})
                found.update((ident, dict(sql.load_json(item))) for ident, item in rows)
            return found

        result: dict[str, dict[str, Any]] = yield Read("reading response items", steps)
        return result

    # -- events --------------------------------------------------------------------------

    @op
    def append_events(self, response_id: str, events: Sequence[Mapping[str, Any]]) -> Op[None]:
        """Store stream events; each is the event as sent, with ``type`` and ``sequence_number``."""
        yield from self._append_events({response_id: events})

    @op
    def append_events_many(self, events: Mapping[str, Sequence[Mapping[str, Any]]]) -> Op[None]:
        """Store the stream events of several responses (response id -> its events) in one write.

        All or nothing: ``NotFound`` (and nothing stored) if any of the
        responses is gone. The events of a response that has already ended
        are dropped: its stream ended with the event stored when it ended
        (a cancel, a sweep), and a late batch of its run must not follow it
        (nor take its sequence numbers).

        One write: the responses' status (a statement per 64, which on PostgreSQL also
        sends the notice of the events at commit), then the events.
        """
        yield from self._append_events(events)

    def _append_events(self, events: Mapping[str, Sequence[Mapping[str, Any]]]) -> Op[None]:
        rows = [row for rid, batch in events.items() for row in self._event_rows(rid, batch)]
        if not rows:
            return
        ids = sorted({row["response_id"] for row in rows})
        tenant, sql = self.tenant_id, self._core.message_sql

        def steps() -> Steps[None]:
            # A response deleted meanwhile is NotFound (not a foreign-key Conflict); the
            # rows are taken FOR KEY SHARE: then a concurrent end is read as it ended.
            found: dict[str, str] = {}
            notified = False
            for chunk in _chunks(ids, _FIND_MAX):
                size, params = _padded("i", chunk)
                read = self._notifying(
                    ("responses.parents", size), functools.partial(_parents_statement, size)
                )
                notified = read is not None
                if read is None:
                    read = sql.shaped(
                        ("responses.parents", size, None),
                        functools.partial(_parents_statement, size, None),
                    )
                else:
                    params.update(self._notice_params(tenant))
                found.update((r[0], r[1]) for r in (yield read.stmt({**params, "t": tenant})))
            for response_id in ids:
                if response_id not in found:
                    raise NotFound(self.kind, response_id)
            live = [r for r in rows if found[r["response_id"]] not in TERMINAL_RESPONSE_STATUSES]
            if live:
                yield from self._event_steps(live, notified=notified)

        yield Write("storing response events", steps, atomic=True)

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

    def _end_event_steps(
        self, ended: builtins.list[StoredResponse], events: EndEvents
    ) -> Steps[None]:
        """Store ``events`` of each ended response (of any tenant), numbered after its last."""
        sql = self._core.message_sql
        rows = []
        for response in ended:
            params = {"t": response.tenant_id, "r": response.id}
            last = yield Stmt(sql.compiled(_LAST_EVENT), params)
            found = yield Stmt(sql.compiled(_OUTPUT), params)
            outputs = [dict(sql.load_any(r[0])) for r in found]
            number = -1 if last[0][0] is None else int(last[0][0])
            made = events(response, outputs, number + 1)
            rows += self._event_rows(response.id, made, tenant_id=response.tenant_id)
        if rows:
            yield from self._event_steps(rows)

    def _event_steps(
        self, rows: builtins.list[dict[str, Any]], *, notified: bool = False
    ) -> Steps[None]:
        """Insert stream event rows (of any tenant), and tell other processes' streams.

        Each tenant's events channel gets a notice that names no run
        (PostgreSQL; at commit): the listening processes wake their readers that
        are not tied to a run, the Responses streams among them, and no run's
        (``RemoteEvents``). ``notified``: this write has sent it already.
        """
        sql = self._core.message_sql
        yield Stmt(sql.insert_row(et), [sql.insert_params(et, r) for r in rows], MANY)
        notify = None if notified else notify_statement(self._core.dialect.notifying)
        if notify is not None:
            for tenant_id in sorted({row["tenant_id"] for row in rows}):
                yield Stmt(sql.compiled(notify), self._notice_params(tenant_id))

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

    @op
    def claim_next_any_tenant(self, worker_id: str) -> Op[StoredResponse | None]:
        """Take the oldest queued background response of any tenant (``in_progress``, ``worker_id``).

        A read first (the poll every worker makes takes no write lock for nothing), then
        one write: the response picked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and taken.
        """
        worker = require_str(worker_id, "worker_id", max_len=128)
        sql = self._core.message_sql
        if not (
            yield Read("looking for a response to run", single(Stmt(sql.compiled(_QUEUED), {})))
        ):
            return None

        def steps() -> Steps[StoredResponse | None]:
            found = yield Stmt(sql.compiled(_QUEUED_LOCKED), {})
            if not found:
                return None
            tenant, ident = found[0]
            params = {"t": tenant, "r": ident, "v_worker": worker, "v_now": utcnow_micros()}
            row = yield Stmt(sql.compiled(_CLAIM), params)
            return to_response(_response_row(sql, row[0]))

        claimed: StoredResponse | None = yield Write("claiming a response", steps, atomic=True)
        return claimed

    @op
    def fail_abandoned(
        self, worker_ids: Sequence[str], message: str, *, events: EndEvents | None = None
    ) -> Op[int]:
        """Fail every tenant's in-progress responses of workers that are gone; how many.

        ``events``: each failed response's last stream events, stored in the
        same write (so a follower of its stream sees it end).
        """
        workers = sorted({require_str(w, "worker_id", max_len=128) for w in worker_ids})
        if not workers:
            return 0
        sql = self._core.message_sql
        error = {"code": "server_error", "message": message}

        def steps() -> Steps[int]:
            rows: builtins.list[dict[str, Any]] = []
            for chunk in _chunks(workers, _FIND_MAX):
                size, params = _padded("w", chunk)
                read = sql.shaped(
                    ("responses.abandoned", size), functools.partial(_abandoned_statement, size)
                )
                rows += [_response_row(sql, r) for r in (yield read.stmt(params))]
            if not rows:
                return 0
            now = utcnow_micros()
            values = {"v_error": dump_json(error), "v_now": now}
            fails = [{"t": r["tenant_id"], "r": r["id"], **values} for r in rows]
            fail = sql.shaped("responses.fail", lambda: _fail_statement(sql.json_param))
            yield Stmt(fail.sql, fails, MANY)
            if events is not None:
                changes = {"status": "failed", "error": error, "updated_at": now}
                failed = [to_response({**r, **changes}) for r in rows]
                yield from self._end_event_steps(failed, events)
            return len(rows)

        failed: int = yield Write("failing abandoned responses", steps, atomic=True)
        return failed

    @op
    def purge_expired(self, *, all_tenants: bool = False, now: datetime | None = None) -> Op[int]:
        """Delete the responses past ``expires_at`` (this tenant's, or every tenant's); how many.

        A read first (the periodic sweep never takes the write lock for nothing); then one
        write: the expired responses (those another sweep holds skipped), and each one's
        events, items and row deleted by its key.
        """
        cutoff = utcnow_micros() if now is None else int(now.timestamp() * 1_000_000)
        sql = self._core.message_sql
        params = {"cut": cutoff, "t": self.tenant_id}
        first = sql.shaped(
            ("responses.expired", all_tenants, True),
            functools.partial(_expired_statement, all_tenants, True),
        )
        if not (yield Read("looking for expired responses", single(first.stmt(params)))):
            return 0

        def steps() -> Steps[int]:
            pick = sql.shaped(
                ("responses.expired", all_tenants, False),
                functools.partial(_expired_statement, all_tenants, False),
            )
            gone = [{"t": tenant, "r": ident} for tenant, ident in (yield pick.stmt(params))]
            if gone:
                for stmt in _DELETES:
                    yield Stmt(sql.compiled(stmt), gone, MANY)
            return len(gone)

        purged: int = yield Write("purging expired responses", steps, atomic=True)
        return purged
