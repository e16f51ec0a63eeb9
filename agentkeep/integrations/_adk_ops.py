"""The ADK session service's calls as store operations (``store._steps``).

``append_event``, ``create_session`` and ``get_session`` with
``num_recent_events`` are each one unit of work on the store's own driver
connections, with statements compiled once per store:

- append: check the session is not stale, append the message, write the
  session's state and ``update_time`` and merge the app and user state
  deltas into their documents, in one transaction (one commit). On SQLite:
  the session row read in the write transaction, each document read and
  written, the store's own message statements, an UPDATE. On PostgreSQL,
  whose kept connections are autocommit: one statement (one round trip) that
  updates the session only if it is not stale, upserts each document with
  the delta merged into it (``||``, on the row as it is when the upsert
  takes it) and inserts the message from it.
- get: the session row, the app and user state documents (one statement)
  and the last n messages, in one read.
- create: the session inserted and its app and user state deltas merged
  into their documents in one transaction, the documents read back; on
  PostgreSQL one statement, the documents upserted only if the session was
  inserted.

Run by ``Core.run_op`` (sync) or ``Core.arun_op`` (async: the store's async
connections, no worker thread per call). Inside ``store.transaction()`` they
join it, as every store operation does.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from agentkeep.errors import Conflict
from agentkeep.models.common import utcnow_micros
from agentkeep.store._core import Core
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write
from agentkeep.store.dialects.postgresql import _json_param, insert_message_after
from agentkeep.store.message_sql import (
    NewRow,
    StoredRow,
    const,
    dump_json,
    full_params,
)
from agentkeep.store.schema import sessions as st
from agentkeep.store.schema import state_docs as sd

__all__ = ["MISSING", "OK", "STALE", "Found", "append_op", "create_op", "docs_op", "get_op"]

OK, MISSING, STALE = 0, 1, 2
_b = sa.bindparam


class _SQL:
    """The statements, compiled for one store's dialect."""

    def __init__(self, core: Core) -> None:
        compile_ = core.message_sql.compile
        this = (st.c.tenant_id == _b("t"), st.c.id == _b("s"))
        lock = sa.select(st.c.state, st.c.extra).where(*this)
        if core.dialect.skip_locked:
            lock = lock.with_for_update(key_share=True)  # FOR NO KEY UPDATE, as sessions.get
        self.lock = compile_(lock)
        self.session = compile_(
            sa.select(st.c.agent_id, st.c.user_id, st.c.state, st.c.extra).where(*this)
        )
        self.update = compile_(
            sa.update(st)
            .where(*this)
            .values(
                state=_b("state"),
                extra=_b("extra"),
                version=st.c.version + const(1),
                updated_at=_b("now"),
            )
        )
        self.append_pg = compile_(_append_pg()) if core.dialect.name == "postgresql" else ""
        self.append_pg_docs = (
            compile_(_append_pg(docs=True)) if core.dialect.name == "postgresql" else ""
        )
        self.create_pg = compile_(_create_pg(core)) if core.dialect.name == "postgresql" else ""
        doc = (sd.c.tenant_id == _b("t"), sd.c.namespace == _b("ns"), sd.c.key == _b("k"))
        self.doc = compile_(sa.select(sd.c.value).where(*doc))
        self.doc_insert = core.message_sql.insert_row(sd)
        self.doc_update = compile_(
            sa.update(sd)
            .where(*doc)
            .values(value=_b("v"), version=sd.c.version + const(1), updated_at=_b("now"))
        )
        self.docs = compile_(
            sa.select(sd.c.namespace, sd.c.value).where(
                sd.c.tenant_id == _b("t"),
                sa.or_(
                    sa.and_(sd.c.namespace == _b("ns1"), sd.c.key == _b("k1")),
                    sa.and_(sd.c.namespace == _b("ns2"), sd.c.key == _b("k2")),
                ),
            )
        )


def _append_pg(*, docs: bool = False) -> sa.Insert:
    """PostgreSQL: the whole append in one statement (autocommit: one round trip, atomic).

    The session row is updated only if it is an ADK session not changed since
    ``last`` (``update_time``): its counters as the store's own append does,
    its state merged with the delta (``||``: top-level keys, as a dict
    update), ``adk.update_time`` set; the message is inserted from the
    returned ``last_seq``. No row: the session is missing or stale. With
    ``docs``: the two state documents (``ns1``/``k1``/``v1``, ``ns2``/...,
    each written only where ``has1``/``has2``) upserted from the session's
    row too, each delta merged into the stored document.
    """
    f = sa.func
    update_time = st.c.extra.op("->")(const("adk")).op("->>")(const("update_time"))
    stamp = f.jsonb_build_object(
        const("adk"), f.jsonb_build_object(const("update_time"), _b("ut", type_=sa.Float))
    )
    s = (
        sa.update(st)
        .where(
            st.c.tenant_id == _b("t"),
            st.c.id == _b("s"),
            sa.cast(update_time, sa.Float) <= _b("last", type_=sa.Float),
        )
        .values(
            last_seq=st.c.last_seq + const(1),
            message_count=st.c.message_count + const(1),
            last_activity_at=_b("now"),
            state=st.c.state.op("||")(_json_param("delta")),
            extra=st.c.extra.op("||")(stamp),
            version=st.c.version + const(1),
            updated_at=_b("now"),
        )
        .returning(sa.literal_column("last_seq"))
        .cte("s")
    )
    insert = insert_message_after(s)
    if docs:
        insert = insert.add_cte(_doc_upsert(1, s), _doc_upsert(2, s))
    return insert


def _doc_upsert(n: int, s: Any) -> Any:
    """PostgreSQL: state document ``n`` (``ns<n>``, ``k<n>``) with delta ``v<n>`` merged in
    (a top-level merge, as ``dict.update``), for each row of ``s`` and if ``has<n>``."""
    now = _b("now", type_=sa.BigInteger)
    values = sa.select(
        _b("t", type_=sa.String),
        _b(f"ns{n}", type_=sa.String),
        _b(f"k{n}", type_=sa.String),
        _json_param(f"v{n}"),
        const(1),
        now,
        now,
    ).select_from(s)
    insert = pg_insert(sd).from_select(
        ["tenant_id", "namespace", "key", "value", "version", "created_at", "updated_at"],
        values.where(_b(f"has{n}", type_=sa.Boolean)),
    )
    stored = sa.case(
        (sa.func.jsonb_typeof(sd.c.value) == const("object"), sd.c.value),
        else_=sa.cast(const("{}"), JSONB),
    )
    return (
        insert.on_conflict_do_update(
            index_elements=[sd.c.tenant_id, sd.c.namespace, sd.c.key],
            set_={
                "value": stored.op("||")(insert.excluded.value),
                "version": sd.c.version + const(1),
                "updated_at": insert.excluded.updated_at,
            },
        )
        .returning(sd.c.value)
        .cte(f"d{n}")
    )


def _create_pg(core: Core) -> sa.Select[Any]:
    """PostgreSQL: a session inserted (``insert_row``'s parameters) unless its id is taken,
    the state documents upserted with their deltas (as the append's) only if it was, in one
    statement; it answers whether the session was inserted and each document's value
    after the statement (upserted, or as it was)."""
    s = core.message_sql.session_insert().returning(st.c.id).cte("s")
    d1, d2 = _doc_upsert(1, s), _doc_upsert(2, s)

    def stored(n: int) -> Any:
        return (
            sa.select(sd.c.value)
            .where(
                sd.c.tenant_id == _b("t"),
                sd.c.namespace == _b(f"ns{n}"),
                sd.c.key == _b(f"k{n}"),
            )
            .scalar_subquery()
        )

    return sa.select(
        sa.select(sa.func.count()).select_from(s).scalar_subquery(),
        sa.func.coalesce(sa.select(d1.c.value).scalar_subquery(), stored(1)),
        sa.func.coalesce(sa.select(d2.c.value).scalar_subquery(), stored(2)),
    )


_compiled: weakref.WeakKeyDictionary[Core, _SQL] = weakref.WeakKeyDictionary()


def _sql(core: Core) -> _SQL:
    found = _compiled.get(core)
    if found is None:
        found = _compiled[core] = _SQL(core)
    return found


class Found(NamedTuple):
    """What ``get_op`` read: the session row, its state documents, its last messages."""

    agent_id: str | None
    user_id: str | None
    state: dict[str, Any]
    extra: dict[str, Any]
    docs: dict[str, Any]
    """Namespace -> value of the app and user state documents that exist."""
    rows: list[StoredRow]


def append_op(
    core: Core,
    tenant_id: str,
    session_id: str,
    *,
    row: NewRow,
    ident: str,
    last_update_time: float,
    update_time: float,
    session_delta: dict[str, Any],
    doc_deltas: tuple[tuple[str, str, dict[str, Any]], ...] = (),
) -> Op[int]:
    """Append the event's message and session state if the session is not stale, and merge
    each of ``doc_deltas`` (namespace, key, delta: at most two) into its state document.

    OK, MISSING (no such session, or not the ADK service's) or STALE.
    """
    sql, msql = _sql(core), core.message_sql
    load = msql.load_json
    where = {"t": tenant_id, "s": session_id}

    def status(extra: Any) -> int:
        extra = load(extra)
        if "adk" not in extra:
            return MISSING
        return STALE if extra["adk"]["update_time"] > last_update_time else OK

    def one_statement() -> Steps[int]:
        params = full_params(row, ident, 0)
        params.update(where, now=utcnow_micros(), ut=update_time, last=last_update_time)
        params["delta"] = dump_json(session_delta)
        statement = sql.append_pg
        if doc_deltas:
            statement = sql.append_pg_docs
            pairs = tuple((ns, key) for ns, key, _ in doc_deltas)
            params.update(_doc_params(doc_deltas, (*pairs, ("", ""), ("", ""))[:2]))
        if (yield Stmt(statement, params)):
            return OK
        found = yield Stmt(sql.lock, where)  # why not: missing or stale
        return status(found[0][1]) if found else MISSING

    def steps() -> Steps[int]:
        found = yield Stmt(sql.lock, where)
        checked = status(found[0][1]) if found else MISSING
        if checked != OK:
            return checked
        state, extra = load(found[0][0]), load(found[0][1])
        yield from _merge_docs(sql, load, tenant_id, doc_deltas)
        yield from msql.append(tenant_id, session_id, [row], [ident], utcnow_micros)
        changes = {
            "state": dump_json({**state, **session_delta}),
            "extra": dump_json({**extra, "adk": {"update_time": update_time}}),
            "now": utcnow_micros(),
        }
        yield Stmt(sql.update, {**where, **changes}, COUNT)
        return OK

    done: int = yield Write("appending an ADK event", one_statement if sql.append_pg else steps)
    return done


def _merge_docs(
    sql: _SQL, load: Any, tenant_id: str, doc_deltas: tuple[tuple[str, str, dict[str, Any]], ...]
) -> Steps[None]:
    """SQLite, in a write transaction: each (namespace, key, delta) merged into its document
    (``dict.update``), created at version 1 when there is none."""
    for namespace, key, delta in doc_deltas:
        doc = {"t": tenant_id, "ns": namespace, "k": key, "now": utcnow_micros()}
        stored = yield Stmt(sql.doc, doc)
        current = load(stored[0][0]) if stored else None
        value = dump_json({**(current if isinstance(current, dict) else {}), **delta})
        if stored:
            yield Stmt(sql.doc_update, {**doc, "v": value}, COUNT)
            continue
        row = {"tenant_id": tenant_id, "namespace": namespace, "key": key, "value": value}
        yield Stmt(
            sql.doc_insert,
            {**row, "version": 1, "created_at": doc["now"], "updated_at": doc["now"]},
            COUNT,
        )


def _doc_params(
    doc_deltas: tuple[tuple[str, str, dict[str, Any]], ...], docs: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """PostgreSQL: the documents' parameters (``ns<n>``, ``k<n>``, ``v<n>``, ``has<n>``): the
    ``docs`` (namespace, key) pairs, each with its delta in ``doc_deltas`` if it has one."""
    deltas = {(ns, key): delta for ns, key, delta in doc_deltas}
    params: dict[str, Any] = {}
    for n, (namespace, key) in enumerate(docs, 1):
        delta = deltas.get((namespace, key))
        params.update(
            {f"ns{n}": namespace, f"k{n}": key, f"v{n}": dump_json(delta or {})},
            **{f"has{n}": delta is not None},
        )
    return params


def create_op(
    core: Core,
    tenant_id: str,
    values: dict[str, Any],
    *,
    doc_deltas: tuple[tuple[str, str, dict[str, Any]], ...],
    docs: tuple[tuple[str, str], tuple[str, str]],
) -> Op[dict[str, Any]]:
    """Insert a session (``session_values``) and merge ``doc_deltas`` into their state
    documents, in one transaction; then the ``docs`` (namespace -> value of those that
    exist). ``Conflict`` when the session's id is taken: then nothing is written."""
    sql, msql = _sql(core), core.message_sql
    load = msql.load_json
    params = msql.insert_params(st, values)

    def one_statement() -> Steps[dict[str, Any]]:
        found = yield Stmt(
            sql.create_pg,
            {
                **params,
                **_doc_params(doc_deltas, docs),
                "t": tenant_id,
                "now": values["created_at"],
            },
        )
        inserted, first, second = found[0]
        if not inserted:
            raise Conflict(f"session {values['id']} already exists")
        out = {}
        for (namespace, _), value in zip(docs, (first, second), strict=True):
            if value is not None:
                out[namespace] = load(value)
        return out

    def steps() -> Steps[dict[str, Any]]:
        yield from _merge_docs(sql, load, tenant_id, doc_deltas)
        yield Stmt(msql.insert_row(st), params, COUNT)
        return (yield from _docs(sql, load, tenant_id, docs))

    done: dict[str, Any] = yield Write(
        "creating an ADK session", one_statement if sql.create_pg else steps
    )
    return done


def get_op(
    core: Core,
    tenant_id: str,
    session_id: str,
    *,
    docs: tuple[tuple[str, str], tuple[str, str]],
    n: int,
) -> Op[Found | None]:
    """The session, its app and user state documents (``docs``) and its last ``n`` messages."""
    sql, msql = _sql(core), core.message_sql
    load = msql.load_json

    def steps() -> Steps[Found | None]:
        found = yield Stmt(sql.session, {"t": tenant_id, "s": session_id})
        if not found:
            return None
        agent_id, user_id, state, extra = found[0]
        values = yield from _docs(sql, load, tenant_id, docs)
        rows: list[Any] = []
        if n:
            rows = (yield from msql.recent(tenant_id, session_id, n)) or []
        return Found(
            agent_id,
            user_id,
            load(state),
            load(extra),
            values,
            [StoredRow._make(r) for r in rows],
        )

    got: Found | None = yield Read("reading an ADK session", steps)
    return got


def docs_op(
    core: Core, tenant_id: str, docs: tuple[tuple[str, str], tuple[str, str]]
) -> Op[dict[str, Any]]:
    """The app and user state documents (``docs``) alone: namespace -> value of those that
    exist (a session just created has nothing else to read)."""
    sql, load = _sql(core), core.message_sql.load_json

    def steps() -> Steps[dict[str, Any]]:
        return _docs(sql, load, tenant_id, docs)

    got: dict[str, Any] = yield Read("reading ADK state", steps)
    return got


def _docs(
    sql: _SQL, load: Any, tenant_id: str, docs: tuple[tuple[str, str], tuple[str, str]]
) -> Steps[dict[str, Any]]:
    (ns1, k1), (ns2, k2) = docs
    values = yield Stmt(sql.docs, {"t": tenant_id, "ns1": ns1, "k1": k1, "ns2": ns2, "k2": k2})
    return {ns: load(v) for ns, v in values}
