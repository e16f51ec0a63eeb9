"""Erasure on every backend: the user's rows go, usage keeps its numbers, a receipt stays, no trace."""

from __future__ import annotations

from pathlib import Path

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
