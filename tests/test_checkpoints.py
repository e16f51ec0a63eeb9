"""``store.checkpoints.put``: new values, values stored already, and deltas over a base.

A value is stored once per (channel, version); a delta names its base and is
refused (``NotFound``, nothing written: neither the checkpoint nor any of its
values) when the base is not stored. On every backend.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from _statements import sent_statements, work

import agentkeep
from agentkeep import Store
from agentkeep.errors import NotFound
from agentkeep.store.checkpoints import Blob, ChannelBlob, ValuePart


def _put(store: Store, checkpoint_id: str, blobs: list[ChannelBlob], thread: str = "t1") -> bool:
    return store.checkpoints.put(
        thread,
        "",
        checkpoint_id,
        checkpoint=Blob("json", checkpoint_id.encode()),
        metadata=Blob("json", b"{}"),
        channel_versions={b.channel: b.version for b in blobs},
        blobs=blobs,
    )


def _full(channel: str, version: str, data: bytes) -> ChannelBlob:
    return ChannelBlob(channel, version, Blob("bytes", data), seq=0)


def _delta(channel: str, version: str, data: bytes, base: str, seq: int) -> ChannelBlob:
    return ChannelBlob(channel, version, Blob("bytes", data), base_version=base, seq=seq)


def test_new_values_are_stored_and_a_second_put_of_them_is_not_new(store: Store) -> None:
    first = [_full("messages", "1", b"a"), _full("count", "1", b"\x01")]
    assert _put(store, "c1", first) is True
    assert _put(store, "c1", first) is False  # the same values again: kept, not new
    half = [_full("messages", "1", b"a"), _full("count", "2", b"\x02")]
    assert _put(store, "c2", half) is False  # one of the two was stored already
    got = store.checkpoints.get("t1", "", "c2")
    assert got is not None and got.checkpoint == Blob("json", b"c2")
    assert got.channels["count"] == [ValuePart("2", 0, Blob("bytes", b"\x02"))]


def test_deltas_over_stored_bases_are_stored_with_their_chain(store: Store) -> None:
    assert _put(store, "c1", [_full("messages", "1", b"a"), _full("notes", "1", b"x")])
    deltas = [
        _delta("messages", "2", b"b", "1", 1),
        _delta("notes", "2", b"y", "1", 1),
        _full("count", "2", b"\x02"),
    ]
    assert _put(store, "c2", deltas) is True
    got = store.checkpoints.get("t1", "", "c2")
    assert got is not None
    assert [p.value.data for p in got.channels["messages"]] == [b"a", b"b"]
    assert [p.value.data for p in got.channels["notes"]] == [b"x", b"y"]
    assert got.channels["count"][0].value.data == b"\x02"


@pytest.mark.parametrize("missing", ["one of two bases", "the only base"])
def test_a_delta_over_a_missing_base_writes_nothing(store: Store, missing: str) -> None:
    assert _put(store, "c1", [_full("messages", "1", b"a")])
    blobs = [_delta("messages", "2", b"b", "1", 1), _full("count", "2", b"\x02")]
    if missing == "one of two bases":
        blobs.append(_delta("notes", "2", b"y", "1", 1))  # notes@1 was never stored
    else:
        blobs[0] = _delta("messages", "2", b"b", "9", 1)
    with pytest.raises(NotFound) as refused:
        _put(store, "c2", blobs)
    assert "@" in str(refused.value)
    assert store.checkpoints.get("t1", "", "c2") is None
    # None of the values was stored: putting them in full now stores each as new.
    assert _put(store, "c3", [_full("messages", "2", b"ab"), _full("count", "2", b"\x02")])
    latest = store.checkpoints.get("t1", "")
    assert latest is not None and latest.checkpoint_id == "c3"


def test_values_are_kept_per_thread(store: Store) -> None:
    assert _put(store, "c1", [_full("messages", "1", b"a")], thread="t1")
    assert _put(store, "c1", [_full("messages", "1", b"other")], thread="t2") is True
    with pytest.raises(NotFound):  # t1's base is not t3's
        _put(store, "c2", [_delta("messages", "2", b"b", "1", 1)], thread="t3")
    got = store.checkpoints.get("t2", "", "c1")
    assert got is not None and got.channels["messages"][0].value.data == b"other"


def test_a_put_on_sqlite_finds_each_base_by_its_key_not_among_the_threads_values(
    tmp_path: Path,
) -> None:
    """A delta's base is looked up by the value's whole primary key. A check that filtered
    the thread's values (a row-value ``IN`` did: 1.3 ms a put with 10,000 values in the
    thread, against 7 µs) made every put read all of them, so a turn cost more the longer
    the thread. Read from each statement's plan (SQLite's own)."""
    path = tmp_path / "plan.db"
    with agentkeep.connect(f"sqlite:///{path}") as store:
        assert _put(store, "c1", [_full("messages", "1", b"a"), _full("notes", "1", b"x")])
        with sent_statements(store) as sent:
            deltas = [_delta("messages", "2", b"b", "1", 1), _delta("notes", "2", b"y", "1", 1)]
            assert _put(store, "c2", deltas) is True
    conn = sqlite3.connect(path)
    try:
        plans = [row[3] for sql in work(sent) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    finally:
        conn.close()
    reads = [p for p in plans if "graph_checkpoint_blobs" in p and p.startswith(("SEARCH", "SCAN"))]
    assert len(reads) == 2, plans  # one lookup per base
    assert all(p.endswith("channel=? AND version=?)") for p in reads), reads
