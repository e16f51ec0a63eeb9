"""Erasure on every backend: the user's rows go, usage keeps its numbers, a receipt stays, no trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from _lifecycle import entity_lines, populate

import agentkeep
from agentkeep import Store

SECRET = "zebra-7741-confidential"


def test_erase_user_removes_everything_of_the_user_and_keeps_the_rest(store: Store) -> None:
    populate(store, user="alice", secret=SECRET)
    populate(store, user="bob", secret="bob keeps this")
    assert SECRET in "\n".join(entity_lines(store))
    receipt = store.erase_user("alice")
    assert receipt.counts["sessions"] == 1 and receipt.counts["messages"] == 2
    assert receipt.counts["runs"] == receipt.counts["events"] == receipt.counts["tool_calls"] == 1
    assert receipt.counts["llm_usage"] == 1 and receipt.counts["state_docs"] == 1
    assert receipt.counts["snapshots"] == receipt.counts["snapshot_messages"] == 1
    assert receipt.counts["graph_store_items"] == 1  # ("memories", "alice"), not bob's
    assert store.graph_items.get(("memories", "bob"), "profile") is not None
    text = "\n".join(entity_lines(store))
    assert SECRET not in text and "alice" not in text  # the receipt keeps a hash, not the id
    assert "bob keeps this" in text
    usage = {u.model: u for u in store.usage.list().items if u.prompt is None}
    scrubbed = usage["gpt-4o-mini"]
    assert (scrubbed.input_tokens, scrubbed.output_tokens) == (12, 3)
    assert scrubbed.response is None and scrubbed.user_id is None
    assert store.stats.get().input_tokens == 24  # cost accounting keeps both users' tokens
    again = store.erase_user("alice")
    assert again.id != receipt.id and sum(again.counts.values()) == 0


def test_on_sqlite_neither_the_database_nor_the_wal_holds_the_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/erase.db"
    with agentkeep.connect(url) as store:
        populate(store, user="alice", secret=SECRET)
        for _ in range(50):  # enough pages that deleted cells are not all rewritten anyway
            populate(store, user="bob", secret="filler " * 40)
        files = [tmp_path / "erase.db", tmp_path / "erase.db-wal"]
        assert any(SECRET.encode() in f.read_bytes() for f in files if f.exists())
        store.erase_user("alice")
        for f in files:
            if f.exists():
                assert SECRET.encode() not in f.read_bytes(), f.name
        store.messages.append(store.sessions.create().id, "user", "later writes still work")


def _pages_holding(url: str, needle: bytes) -> list[str]:
    """Relations (tables, TOAST, indexes) of which some page holds ``needle`` (pageinspect)."""
    found: list[str] = []
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        relations = conn.execute(
            "SELECT c.oid::regclass::text, pg_relation_size(c.oid) / current_setting('block_size')::int"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 't', 'i') AND n.nspname IN ('public', 'pg_toast')"
        ).fetchall()
        for name, blocks in relations:
            for block in range(int(blocks)):
                page = conn.execute("SELECT get_raw_page(%s, %s)", (name, block)).fetchone()
                assert page is not None
                if needle in bytes(page[0]):
                    found.append(name)
                    break
    return found


def test_on_postgresql_no_page_of_any_table_or_index_holds_the_text(
    postgres_server: Any,
) -> None:
    url = postgres_server.new_database()
    with agentkeep.connect(url, auto_migrate=True) as store:
        for _ in range(20):
            populate(store, user="bob", secret="filler " * 40)
        # Last in: the lowest addresses of each page's tuple area, which a plain VACUUM's
        # compaction frees without overwriting (so only a rewrite passes this test).
        populate(store, user="alice", secret=SECRET)
        assert "messages" in _pages_holding(url, SECRET.encode())
        store.erase_user("alice")
        assert _pages_holding(url, SECRET.encode()) == []
        assert _pages_holding(url, b"alice") == []  # the user id, in rows and index entries
        store.messages.append(store.sessions.create().id, "user", "later writes still work")
