"""``store.checkpoints.put``: new values, values stored already, and deltas over a base.

A value is stored once per (channel, version); a delta names its base and is
refused (``NotFound``, nothing written: neither the checkpoint nor any of its
values) when the base is not stored. On every backend.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from _statements import sent_statements, work
from _threads import no_worker_threads

import agentkeep
from agentkeep import AsyncStore, Store
from agentkeep.errors import InvalidInput, NotFound
from agentkeep.store.checkpoints import Blob, ChannelBlob, PendingWrite, ValuePart
from agentkeep.store.schema import graph_checkpoint_blobs as tb
from agentkeep.store.schema import graph_checkpoint_writes as tw
from agentkeep.store.schema import graph_checkpoints as tc


def _put(
    store: Store, checkpoint_id: str, blobs: list[ChannelBlob], thread: str = "t1", ns: str = ""
) -> bool:
    return store.checkpoints.put(
        thread,
        ns,
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


def _rows(store: Store, thread: str) -> dict[str, int]:
    """How many rows of each checkpoint table the thread has (the tenant's)."""
    counts = {}
    with store._core.engine.connect() as conn:
        for name, table in (("blobs", tb), ("writes", tw), ("checkpoints", tc)):
            of_thread = (table.c.tenant_id == store.tenant_id, table.c.thread_id == thread)
            counts[name] = conn.execute(sa.select(sa.func.count()).where(*of_thread)).scalar_one()
    return counts


def _writes(store: Store, thread: str, checkpoint_id: str, data: bytes, ns: str = "") -> None:
    write = PendingWrite("task", 0, "messages", Blob("bytes", data))
    store.checkpoints.put_writes(thread, ns, checkpoint_id, [write])


async def test_a_thread_is_copied_and_deleted_in_one_write_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``copy_thread`` and ``delete_thread`` of the async API run without a worker thread,
    each one statement on PostgreSQL (a statement per table on SQLite, in one write). The
    copy keeps what the target has already; other threads and tenants are untouched."""
    other = store.tenant(store.tenant_id + "_other")
    for s in (store, other):
        assert _put(s, "c1", [_full("messages", "1", b"a")])
        assert _put(s, "c2", [_delta("messages", "2", b"b", "1", 1)])
        _writes(s, "t1", "c2", b"w")
    assert _put(store, "c1", [_full("notes", "1", b"mine")], thread="t2")
    no_worker_threads(monkeypatch, "a whole-thread call")
    statements = 1 if store.url.startswith("postgresql") else 3

    with sent_statements(store) as sent:
        await astore.checkpoints.copy_thread("t1", "t2")
    assert len(work(sent)) == statements, work(sent)
    copied = await astore.checkpoints.get("t2", "", "c2")
    source = await astore.checkpoints.get("t1", "", "c2")
    assert copied is not None and source is not None
    assert (copied.channels, copied.writes) == (source.channels, source.writes)
    kept = await astore.checkpoints.get("t2", "", "c1")
    assert kept is not None and kept.channels == {
        "notes": [ValuePart("1", 0, Blob("bytes", b"mine"))]
    }

    with sent_statements(store) as sent:
        await astore.checkpoints.delete_thread("t1")
    assert len(work(sent)) == statements, work(sent)
    assert await astore.checkpoints.get("t1") is None
    assert (await astore.checkpoints.get("t2")) == copied
    assert other.checkpoints.get("t1", "", "c2") is not None
    assert _rows(store, "t1") == {"blobs": 0, "writes": 0, "checkpoints": 0}
    assert _rows(other, "t1") == {"blobs": 2, "writes": 1, "checkpoints": 2}
    with pytest.raises(InvalidInput, match="thread_id"):
        await astore.checkpoints.delete_thread("")


async def test_the_checkpoints_of_runs_are_deleted_in_one_write_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``delete_for_runs`` of the async API: the runs' checkpoints and their writes go, in
    one statement on PostgreSQL (two on SQLite, one write), without a worker thread; the
    values stay, and so do other runs' checkpoints and other tenants'."""
    other = store.tenant(store.tenant_id + "_other")
    for s in (store, other):
        for cid, run in (("c1", "r1"), ("c2", "r2"), ("c3", "r1")):
            s.checkpoints.put(
                "t1",
                "",
                cid,
                checkpoint=Blob("json", cid.encode()),
                metadata=Blob("json", b"{}"),
                channel_versions={"messages": cid},
                blobs=[_full("messages", cid, cid.encode())],
                run_id=run,
            )
            _writes(s, "t1", cid, cid.encode())
    no_worker_threads(monkeypatch, "delete_for_runs")
    with sent_statements(store) as sent:
        await astore.checkpoints.delete_for_runs(["r1", "r-none"])
        await astore.checkpoints.delete_for_runs([])
    assert len(work(sent)) == (1 if store.url.startswith("postgresql") else 2), work(sent)
    assert _rows(store, "t1") == {"blobs": 3, "writes": 1, "checkpoints": 1}
    kept = await astore.checkpoints.get("t1")
    assert kept is not None and kept.checkpoint_id == "c2" and len(kept.writes) == 1
    assert _rows(other, "t1") == {"blobs": 3, "writes": 3, "checkpoints": 3}
    with pytest.raises(InvalidInput, match="run_ids"):
        await astore.checkpoints.delete_for_runs([""])


async def test_a_listing_is_one_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``list`` of the async API gives what the sync one gives (every filter, ``before``,
    ``limit``, ``have``), without a worker thread: the page, then per thread and namespace
    in it one read of its values' chains and one of its writes."""
    for thread in ("t1", "t2"):
        for ns in ("", "sub"):
            assert _put(store, "c1", [_full("messages", "1", f"{thread}{ns}".encode())], thread, ns)
            assert _put(store, "c2", [_delta("messages", "2", b"+", "1", 1)], thread, ns)
            _writes(store, thread, "c2", f"w{thread}{ns}".encode(), ns)
    queries: list[dict[str, Any]] = [
        {},
        {"thread_id": "t1"},
        {"thread_id": "t2", "checkpoint_ns": "sub"},
        {"checkpoint_id": "c1"},
        {"thread_id": "t1", "before": "c2"},
        {"limit": 3},
        {"thread_id": "t1", "have": lambda t, ns, ch, v: v == "2"},
    ]
    expected = [store.checkpoints.list(**q) for q in queries]
    no_worker_threads(monkeypatch, "checkpoints.list")
    for q, listed in zip(queries, expected, strict=True):
        assert await astore.checkpoints.list(**q) == listed, q
    assert [(c.thread_id, c.checkpoint_ns) for c in expected[2]] == [("t2", "sub")] * 2
    newest = expected[2][0]
    assert [p.value.data for p in newest.channels["messages"]] == [b"t2sub", b"+"]
    assert [w.value.data for w in newest.writes] == [b"wt2sub"]
    held = [[p.value.data for p in c.channels.get("messages", [])] for c in expected[6]]
    assert held == [[], [], [b"t1"], [b"t1sub"]]  # version 2 held: left out

    with sent_statements(store) as sent:
        await astore.checkpoints.list(thread_id="t1")
    assert len(work(sent)) == 1 + 2 * 2, work(sent)  # the page; per namespace chains, writes
    assert await AsyncStore(store.tenant(store.tenant_id + "_x")).checkpoints.list() == []


async def test_a_prune_keeps_each_namespaces_newest_checkpoint_and_the_values_it_reads(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prune`` (the async API's, with no worker thread): of each namespace of the threads
    the newest checkpoint stays, with its writes and every value its channels are built
    from (a delta's bases too); the older checkpoints, their writes and the values nothing
    reads go. Other threads stay; ``keep_latest=False`` deletes the threads whole."""
    assert _put(store, "c1", [_full("messages", "1", b"a"), _full("count", "1", b"\x01")])
    assert _put(store, "c2", [_delta("messages", "2", b"b", "1", 1), _full("count", "2", b"\x02")])
    store.checkpoints.put(
        "t1",
        "",
        "c3",
        checkpoint=Blob("json", b"c3"),
        metadata=Blob("json", b"{}"),
        channel_versions={"messages": "3", "count": "2"},
        blobs=[_delta("messages", "3", b"c", "2", 2)],
    )
    _writes(store, "t1", "c1", b"old")
    _writes(store, "t1", "c3", b"new")
    assert _put(store, "s1", [_full("notes", "1", b"n")], ns="sub")
    assert _put(store, "c1", [_full("messages", "1", b"other")], thread="t2")
    newest = store.checkpoints.get("t1", "", "c3")
    assert newest is not None and [p.value.data for p in newest.channels["messages"]] == [
        b"a",
        b"b",
        b"c",
    ]
    no_worker_threads(monkeypatch, "checkpoints.prune")

    await astore.checkpoints.prune(["t1"])
    assert await astore.checkpoints.get("t1", "", "c3") == newest
    assert await astore.checkpoints.get("t1", "", "c2") is None
    assert await astore.checkpoints.get("t1", "", "c1") is None
    assert (await astore.checkpoints.get("t1", "sub", "s1")) is not None
    with store._core.engine.connect() as conn:
        kept = conn.execute(
            sa.select(tb.c.checkpoint_ns, tb.c.channel, tb.c.version).where(
                tb.c.tenant_id == store.tenant_id, tb.c.thread_id == "t1"
            )
        ).all()
    assert sorted(kept) == [
        ("", "count", "2"),
        ("", "messages", "1"),
        ("", "messages", "2"),
        ("", "messages", "3"),
        ("sub", "notes", "1"),
    ]
    assert _rows(store, "t1") == {"blobs": 5, "writes": 1, "checkpoints": 2}
    assert _rows(store, "t2") == {"blobs": 1, "writes": 0, "checkpoints": 1}
    await astore.checkpoints.prune(["t1"])  # again: nothing more to prune
    assert _rows(store, "t1") == {"blobs": 5, "writes": 1, "checkpoints": 2}

    await astore.checkpoints.prune(["t2"], keep_latest=False)
    assert _rows(store, "t2") == {"blobs": 0, "writes": 0, "checkpoints": 0}
    assert await astore.checkpoints.get("t1", "", "c3") == newest
    with pytest.raises(InvalidInput, match="thread_ids"):
        await astore.checkpoints.prune([""])
