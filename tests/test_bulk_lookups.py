"""``store.bulk``'s lookups by primary key (what an import reads before it writes), and
``keys_in``, the index-friendly form of ``(columns) IN keys`` they and the responses'
batch updates use. On every backend; the plans on SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa
from _statements import sent_statements, work

import agentkeep
from agentkeep import Store
from agentkeep.store import bulk
from agentkeep.store._base import keys_in
from agentkeep.store.graph_items import ItemWrite
from agentkeep.store.schema import messages, sessions


def test_stored_rows_finds_exactly_the_keys_stored_across_tenants(store: Store) -> None:
    other = store.tenant(f"{store.tenant_id}-other")
    mine = store.sessions.create().id
    theirs = other.sessions.create().id
    keys = [
        (store.tenant_id, mine),
        (other.tenant_id, theirs),
        (store.tenant_id, theirs),  # another tenant's id under this tenant: not stored
        (other.tenant_id, "sess_missing"),
    ]
    with store._core.engine.connect() as conn:
        found = bulk.stored_rows(conn, sessions, keys)
        assert set(found) == {(store.tenant_id, mine), (other.tenant_id, theirs)}
        assert found[(other.tenant_id, theirs)]["id"] == theirs
        assert bulk.stored_keys(conn, sessions, []) == set()
        none = conn.execute(sa.select(sessions.c.id).where(keys_in((sessions.c.id,), []))).all()
        assert none == []


def _plan(conn: sa.Connection, statement: sa.Executable) -> list[str]:
    sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
    return [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]


def test_lookups_by_key_search_the_index_on_sqlite(tmp_path: Path) -> None:
    """A row-value ``IN`` over a list read the whole table on SQLite: each batch an import
    looked up, and each batch of ended responses, scanned every row. Grouped by the leading
    columns, every term is one search of the primary key's index."""
    with agentkeep.connect(f"sqlite:///{tmp_path}/plan.db") as store:
        keys = [("a", "msg_1"), ("a", "msg_2"), ("b", "msg_3")]
        with store._core.engine.connect() as conn:
            for statement in bulk._lookups(
                "sqlite", sa.select(messages), list(messages.primary_key), keys
            ):
                plan = _plan(conn, statement)
                searches = [p for p in plan if p.startswith(("SEARCH", "SCAN"))]
                assert searches and all(p.startswith("SEARCH messages") for p in searches), plan
            single = sa.select(messages.c.id).where(
                keys_in((messages.c.tenant_id, messages.c.id), keys[:2])
            )
            assert _plan(conn, single)[0].startswith("SEARCH messages"), _plan(conn, single)


def test_deleting_graph_store_items_searches_each_by_its_key_on_sqlite(tmp_path: Path) -> None:
    """A batch's deletes found each item by (namespace, key) among the tenant's items: the
    statement read every item of the tenant. Read from the plan of the statement sent."""
    path = tmp_path / "items.db"
    with agentkeep.connect(f"sqlite:///{path}") as store:
        items = store.graph_items
        items.write([ItemWrite(("docs", "a"), f"k{n}", {"n": n}) for n in range(5)])
        with sent_statements(store) as sent:
            items.write(
                [ItemWrite(("docs", "a"), "k1", None), ItemWrite(("docs", "b"), "k2", None)]
            )
        assert sorted(i.key for i in items.search(("docs",), limit=10)) == ["k0", "k2", "k3", "k4"]
    deletes = [sql for sql in work(sent) if sql.startswith("DELETE")]
    conn = sqlite3.connect(path)
    try:
        plan = [row[3] for sql in deletes for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    finally:
        conn.close()
    reads = [p for p in plan if p.startswith(("SEARCH", "SCAN"))]
    assert reads and all(p.endswith("namespace=? AND key=?)") for p in reads), plan
