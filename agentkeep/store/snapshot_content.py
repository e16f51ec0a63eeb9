"""What a snapshot holds, kept as it was: copy-on-write of the messages it covers.

A snapshot is a session's ``seq`` and a copy of its state. Its messages are
the session's messages up to that seq *as they were when it was taken*: before
a message that some snapshots cover (their seq is at least the message's) is
edited or deleted for the first time since each was taken, its row is copied
into ``snapshot_messages`` for each of them, in the same transaction. Reading a
snapshot takes the live messages up to its seq and puts the kept rows in their
place (and back, for deleted ones).

Why copy-on-write and not a copy of every message at snapshot time: taking a
snapshot stays one small insert however long the session is, and an edit pays
one indexed lookup of the session's snapshots (plus a row copy the first time a
snapshot sees that message change). Edits of old messages are rare next to
appends and snapshots; ``benchmarks/lifecycle.py --snapshots`` measures both
costs beside what a copy at snapshot time would cost.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agentkeep.store._steps import Steps, Stmt
from agentkeep.store.message_sql import MessageSQL
from agentkeep.store.schema import messages as mt
from agentkeep.store.schema import snapshot_messages as kt
from agentkeep.store.schema import snapshots as st

__all__ = ["KEEP_FOR_SNAPSHOTS", "messages_up_to", "snapshot_rows_at", "snapshot_steps"]

_COPIED = (
    "session_id",
    "role",
    "content",
    "content_types",
    "run_id",
    "agent_id",
    "idempotency_key",
    "metadata",
    "extra",
)


def _keep_statement() -> sa.Insert:
    """:data:`KEEP_FOR_SNAPSHOTS`: built once, its values bound at each call."""
    kept = (
        sa.select(sa.literal(1))
        .select_from(kt)
        .where(kt.c.tenant_id == st.c.tenant_id, kt.c.snapshot_id == st.c.id, kt.c.seq == mt.c.seq)
    )
    source = (
        sa.select(
            st.c.tenant_id,
            st.c.id,
            mt.c.seq,
            mt.c.id,
            *(mt.c[name] for name in _COPIED),
            mt.c.created_at,
            sa.bindparam("k_now", type_=sa.BigInteger()),
        )
        .select_from(
            mt.join(
                st, sa.and_(st.c.tenant_id == mt.c.tenant_id, st.c.session_id == mt.c.session_id)
            )
        )
        .where(
            mt.c.tenant_id == sa.bindparam("k_tenant"),
            mt.c.id == sa.bindparam("k_message"),
            st.c.seq >= mt.c.seq,
            ~sa.exists(kept),
        )
    )
    columns = [
        "tenant_id",
        "snapshot_id",
        "seq",
        "message_id",
        *_COPIED,
        "message_created_at",
        "created_at",
    ]
    return sa.insert(kt).from_select(columns, source)


#: A copy of message ``k_message`` as it is now for every snapshot covering it that lacks it,
#: made in the write about to change or delete the message (parameters ``k_tenant``,
#: ``k_message``, ``k_now``).
KEEP_FOR_SNAPSHOTS = _keep_statement()


_SNAPSHOT = sa.select(st.c.session_id, st.c.seq).where(
    st.c.tenant_id == sa.bindparam("t"), st.c.id == sa.bindparam("i")
)
#: A session's live messages up to seq ``:q`` (``:t``, ``:s``), in seq order.
MESSAGES_UP_TO = (
    sa.select(mt)
    .where(
        mt.c.tenant_id == sa.bindparam("t"),
        mt.c.session_id == sa.bindparam("s"),
        mt.c.seq <= sa.bindparam("q", type_=sa.BigInteger()),
    )
    .order_by(mt.c.seq)
)
_KEPT = sa.select(kt).where(
    kt.c.tenant_id == sa.bindparam("t"), kt.c.snapshot_id == sa.bindparam("i")
)


def messages_up_to(
    sql: MessageSQL, tenant_id: str, session_id: str, at_seq: int
) -> Steps[list[dict[str, Any]]]:
    """The rows (``messages`` columns, by name) of a session's live messages up to
    ``at_seq``, in seq order: one statement, compiled once."""
    params = {"t": tenant_id, "s": session_id, "q": at_seq}
    live = yield Stmt(sql.compiled(MESSAGES_UP_TO), params)
    return [sql.named_row(mt, values) for values in live]


def snapshot_steps(
    sql: MessageSQL, tenant_id: str, snapshot_id: str
) -> Steps[list[dict[str, Any]] | None]:
    """The message rows (``messages`` columns, by name) of a snapshot as it was taken, in
    seq order; None if there is no such snapshot. Three statements, compiled once."""
    found = yield Stmt(sql.compiled(_SNAPSHOT), {"t": tenant_id, "i": snapshot_id})
    if not found:
        return None
    session_id, at_seq = found[0]
    return (yield from snapshot_rows_at(sql, tenant_id, snapshot_id, session_id, at_seq))


def snapshot_rows_at(
    sql: MessageSQL, tenant_id: str, snapshot_id: str, session_id: str, at_seq: int
) -> Steps[list[dict[str, Any]]]:
    """:func:`snapshot_steps` for a snapshot whose session and seq were read already (a
    fork's): the live messages up to its seq, the rows it kept put in their place."""
    rows = {r["seq"]: r for r in (yield from messages_up_to(sql, tenant_id, session_id, at_seq))}
    for values in (yield Stmt(sql.compiled(_KEPT), {"t": tenant_id, "i": snapshot_id})):
        kept = sql.named_row(kt, values)
        row = {name: kept[name] for name in _COPIED}
        row.update(
            tenant_id=tenant_id,
            id=kept["message_id"],
            seq=kept["seq"],
            created_at=kept["message_created_at"],
        )
        rows[kept["seq"]] = row
    return [rows[seq] for seq in sorted(rows)]
