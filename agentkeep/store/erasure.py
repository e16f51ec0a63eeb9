"""``store.erase_user(user_id)``: delete everything of one user in this tenant.

Goes: the user's sessions and every row that belongs to them or to their
runs (messages, runs, run steps, events, tool calls, snapshots, graph
checkpoints of those runs or of threads whose id is one of those sessions',
responses in those conversations with their items and events), and the
state documents of the namespace ``user:<user_id>``, and the LangGraph
store items (``graph_store_items``) whose namespace has the user id as one
of its labels (``("memories", "<user_id>")``). Stays, scrubbed: LLM
usage rows keep tokens, latency and cost for accounting but lose prompt,
response, error text, input parameters and the user id. A receipt (id, time,
rows per table, the user as a SHA-256 of the id) is stored in ``erasures``.

On SQLite the deletes run with ``secure_delete`` (freed space overwritten)
and the WAL is checkpointed and truncated afterwards, so neither file keeps
the text; on PostgreSQL the touched tables are rewritten by ``VACUUM (FULL)``
(new files for each table, its TOAST table and indexes), so no page of the
database holds the erased rows. WAL, archives and backups are outside the
tables: README says what an operator does about them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.ids import new_id
from agentkeep.models import ErasureReceipt
from agentkeep.models.common import from_micros, utcnow_micros
from agentkeep.store import usage_days
from agentkeep.store._core import Core
from agentkeep.store._validate import require_str
from agentkeep.store.graph_items import namespace_has_label
from agentkeep.store.schema import (
    erasures,
    graph_store_items,
    llm_usage,
    metadata,
    runs,
    sessions,
    state_docs,
)
from agentkeep.store.schema import usage_days as usage_days_table

__all__ = ["erase_user", "user_hash"]

_SCRUBBED: dict[str, Any] = {
    "prompt": None,
    "response": None,
    "error_message": None,
    "input_params": {},
    "user_id": None,
}


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def _owned_tables() -> list[sa.Table]:
    """Tables whose rows belong to a session or a run, children first (not usage: it is scrubbed)."""
    skip = {sessions.name, llm_usage.name}
    return [
        table
        for table in reversed(metadata.sorted_tables)
        if table.name not in skip
        and {"session_id", "run_id", "thread_id", "conversation_id"} & set(table.c.keys())
    ]


def _belongs(table: sa.Table, session_ids: Any, run_ids: Any) -> sa.ColumnElement[bool]:
    conds = []
    if "session_id" in table.c:
        conds.append(table.c.session_id.in_(session_ids))
    if "run_id" in table.c:
        conds.append(table.c.run_id.in_(run_ids))
    if "thread_id" in table.c:  # graph checkpoints of a thread named by a session id
        conds.append(table.c.thread_id.in_(session_ids))
    if "conversation_id" in table.c:  # responses in one of the user's conversations
        conds.append(table.c.conversation_id.in_(session_ids))
    if table is runs:
        conds.append(table.c.id.in_(run_ids))
    return sa.or_(*conds)


def _erase(conn: Connection, tenant_id: str, user_id: str) -> dict[str, int]:
    mine = sa.and_(sessions.c.tenant_id == tenant_id, sessions.c.user_id == user_id)
    session_ids = sa.select(sessions.c.id).where(mine).scalar_subquery()
    run_ids = (
        sa.select(runs.c.id)
        .where(runs.c.tenant_id == tenant_id, runs.c.session_id.in_(session_ids))
        .scalar_subquery()
    )
    counts: dict[str, int] = {}
    usage = llm_usage.c
    theirs = [
        usage.tenant_id == tenant_id,
        sa.or_(
            usage.user_id == user_id,
            usage.session_id.in_(session_ids),
            usage.run_id.in_(run_ids),
        ),
    ]
    days = usage_days.days_where(conn, theirs)
    scrubbed = conn.execute(sa.update(llm_usage).where(*theirs).values(_SCRUBBED))
    counts[llm_usage.name] = scrubbed.rowcount
    usage_days.refresh(conn, tenant_id, days)  # their calls move to the group without a user
    for table in _owned_tables():
        gone = conn.execute(
            sa.delete(table).where(
                table.c.tenant_id == tenant_id, _belongs(table, session_ids, run_ids)
            )
        )
        counts[table.name] = gone.rowcount
    counts[sessions.name] = conn.execute(sa.delete(sessions).where(mine)).rowcount
    counts[state_docs.name] = conn.execute(
        sa.delete(state_docs).where(
            state_docs.c.tenant_id == tenant_id, state_docs.c.namespace == f"user:{user_id}"
        )
    ).rowcount
    items = graph_store_items.c
    counts[graph_store_items.name] = conn.execute(
        sa.delete(graph_store_items).where(
            items.tenant_id == tenant_id, namespace_has_label(items.namespace, user_id)
        )
    ).rowcount
    return counts


def erase_user(core: Core, tenant_id: str, user_id: str) -> ErasureReceipt:
    """Erase one user of ``tenant_id`` in one transaction; returns the stored receipt."""
    user_id = require_str(user_id, "user_id", max_len=256)
    dialect = core.dialect
    with core.write("erasing a user") as conn, dialect.secure_delete(conn):
        counts = _erase(conn, tenant_id, user_id)
        receipt: dict[str, Any] = {
            "tenant_id": tenant_id,
            "id": new_id("erasure"),
            "user_sha256": user_hash(user_id),
            "counts": counts,
            "created_at": utcnow_micros(),
        }
        conn.execute(sa.insert(erasures).values(receipt))
    flushed = [name for name, n in counts.items() if n]
    if counts[llm_usage.name]:  # their user's groups of usage_days were deleted
        flushed.append(usage_days_table.name)
    dialect.flush_deleted(flushed)
    return ErasureReceipt.model_validate(
        {**receipt, "created_at": from_micros(receipt["created_at"])}
    )
