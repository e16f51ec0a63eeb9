"""KODE's history windows, compression records, recovered files and media cache, on every backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from _statements import sent_statements, work
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, NotFound, Store
from agentkeep.config import RecordLimits, Settings
from agentkeep.models import (
    CompressionConfig,
    CompressionRecord,
    HistoryStats,
    HistoryWindow,
    MediaCacheRecord,
    RecoveredFile,
)
from agentkeep.store.schema import media_cache, session_records

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256))


def _window(ident: str, at: datetime, text: str = "hello") -> HistoryWindow:
    return HistoryWindow(
        id=ident,
        messages=[{"role": "user", "content": [{"type": "text", "text": text}]}],
        events=[{"cursor": 1, "bookmark": {"seq": 1}, "event": {"type": "text_chunk"}}],
        stats=HistoryStats(message_count=1, token_count=3, event_count=1),
        timestamp=at,
    )


def _compression(ident: str, recovered_files: list[str] | None = None) -> CompressionRecord:
    return CompressionRecord(
        id=ident,
        window_id="w1",
        config=CompressionConfig(model="gpt-4o-mini", prompt="Summarize", threshold=0.8),
        summary="They talked.",
        ratio=0.25,
        recovered_files=recovered_files or [],
        timestamp=T0,
    )


@pytest.fixture
def session_id(store: Store) -> str:
    return store.sessions.create(user_id="ada").id


@pytest.fixture
def limits(store: Store) -> Iterator[Any]:
    """Set the store's size limits for a test (restored after: the PostgreSQL store is shared)."""
    core = store._core
    saved = core.limits

    def set_limits(**values: int) -> None:
        core.limits = dataclasses.replace(saved, **values)

    yield set_limits
    core.limits = saved


def test_history_windows_round_trip_in_time_order(store: Store, session_id: str) -> None:
    second = store.history.save_window(session_id, _window("w2", T0 + timedelta(minutes=1)))
    first = store.history.save_window(session_id, _window("w1", T0).model_dump())  # a dict too
    assert isinstance(first, HistoryWindow) and first.timestamp == T0
    assert store.history.windows(session_id) == [first, second]
    # The same id replaces the window.
    store.history.save_window(session_id, _window("w1", T0, text="edited"))
    (w1, _) = store.history.windows(session_id)
    assert w1.messages[0]["content"][0]["text"] == "edited"
    assert store.history.windows(store.sessions.create().id) == []


def test_compressions_and_recovered_files(store: Store, session_id: str) -> None:
    record = _compression("c1", ["src/app.py"])
    assert store.history.save_compression(session_id, record) == record
    assert store.history.compressions(session_id) == [record]
    file = RecoveredFile(path="src/app.py", content="print('hi')\n", mtime=T0, timestamp=T0)
    store.history.save_recovered_file(session_id, file)
    newer = file.model_copy(update={"content": "print('bye')\n", "timestamp": T0 + timedelta(1)})
    store.history.save_recovered_file(session_id, newer)  # keyed by path: replaced
    assert store.history.recovered_files(session_id) == [newer]
    assert store.history.delete(session_id, kind="compression") == 1
    assert store.history.compressions(session_id) == []
    assert store.history.recovered_files(session_id) == [newer]
    assert store.history.delete(session_id) == 1


def test_bad_records_name_their_field_and_write_nothing(store: Store, session_id: str) -> None:
    good = _window("w1", T0).model_dump()
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "stats": {**good["stats"], "message_count": "1"}}, "window.stats.message_count"),
        ({**good, "timestamp": "yesterday"}, "window.timestamp"),
        ({**good, "id": ""}, "window.id"),
        ({**good, "extra": 1}, "window.extra"),
        ({k: v for k, v in good.items() if k != "messages"}, "window.messages"),
    ]
    for bad, field in cases:
        with pytest.raises(InvalidInput) as caught:
            store.history.save_window(session_id, bad)
        assert caught.value.field == field, bad
    with pytest.raises(InvalidInput) as caught:
        store.history.save_window(session_id, "w1")  # type: ignore[arg-type]
    assert caught.value.field == "window"
    with pytest.raises(NotFound):
        store.history.save_window("sess_missing", good)
    with pytest.raises(InvalidInput) as caught:
        store.history.delete(session_id, kind="todos")
    assert caught.value.field == "kind"
    assert store.history.windows(session_id) == []


def test_a_record_over_the_size_limit_is_refused(
    store: Store, session_id: str, limits: Any
) -> None:
    limits(record_max_bytes=2000)
    store.history.save_window(session_id, _window("w1", T0, text="x" * 1000))
    with pytest.raises(InvalidInput) as caught:
        store.history.save_window(session_id, _window("w1", T0, text="y" * 3000))
    assert caught.value.field == "window.messages"
    assert "AGENTKEEP_RECORD_MAX_BYTES" in str(caught.value)
    file = {"path": "big.txt", "content": "z" * 3000, "mtime": T0, "timestamp": T0}
    with pytest.raises(InvalidInput) as caught:
        store.history.save_recovered_file(session_id, file)
    assert caught.value.field == "file.content"
    (kept,) = store.history.windows(session_id)
    assert kept.messages[0]["content"][0]["text"] == "x" * 1000  # unchanged
    assert store.history.recovered_files(session_id) == []


def test_media_bytes_are_stored_as_bytes(store: Store, session_id: str) -> None:
    saved = store.media.save(
        session_id,
        [
            MediaCacheRecord(key="img", provider="openai", mime_type="image/png", data=PNG),
            {
                "key": "doc",
                "provider": "gemini",
                "mime_type": "application/pdf",
                "size_bytes": 123456,
                "file_uri": "https://files.example/doc",
                "created_at": T0,
            },
        ],
    )
    assert [r.size_bytes for r in saved] == [len(PNG), 123456]
    got = store.media.get(session_id, "img")
    assert got.data == PNG and got.size_bytes == len(PNG) and got.mime_type == "image/png"
    listed = store.media.list(session_id)
    assert [r.key for r in listed] == ["doc", "img"]  # oldest first
    assert all(r.data is None for r in listed)  # listings leave the bytes out
    assert [r.data for r in store.media.list(session_id, with_data=True)] == [None, PNG]
    # In the database: a binary column holding the raw bytes, not base64 text.
    with store._core.engine.connect() as conn:
        raw = conn.execute(
            sa.select(media_cache.c.data).where(
                media_cache.c.tenant_id == store.tenant_id, media_cache.c.key == "img"
            )
        ).scalar_one()
    assert isinstance(raw, (bytes, memoryview)) and bytes(raw) == PNG
    # save() replaces the whole cache; put() one record.
    store.media.save(session_id, [{"key": "new", "provider": "p", "mime_type": "a/b", "data": b""}])
    assert [r.key for r in store.media.list(session_id)] == ["new"]
    store.media.put(session_id, {"key": "new", "provider": "p", "mime_type": "a/c", "data": b"1"})
    assert store.media.get(session_id, "new").mime_type == "a/c"
    store.media.delete(session_id, "new")
    with pytest.raises(NotFound):
        store.media.get(session_id, "new")
    with pytest.raises(NotFound):
        store.media.delete(session_id, "new")


def test_media_over_the_limit_or_malformed_is_refused_whole(
    store: Store, session_id: str, limits: Any
) -> None:
    limits(media_max_bytes=1024)
    store.media.save(
        session_id, [{"key": "kept", "provider": "p", "mime_type": "a/b", "data": b"1"}]
    )
    ok = {"key": "a", "provider": "p", "mime_type": "image/png", "data": b"x" * 1024}
    cases: list[tuple[list[Any], str]] = [
        ([ok, {**ok, "key": "b", "data": b"x" * 1025}], "records[1].data"),
        ([{**ok, "size_bytes": 3}], "records[0].size_bytes"),
        ([{k: v for k, v in ok.items() if k != "data"}], "records[0].size_bytes"),
        ([{**ok, "data": "not bytes"}], "records[0].data"),
        ([{**ok, "mime_type": ""}], "records[0].mime_type"),
        ([ok, ok], "records"),
    ]
    for records, field in cases:
        with pytest.raises(InvalidInput) as caught:
            store.media.save(session_id, records)
        assert caught.value.field == field, records
    with pytest.raises(InvalidInput) as caught:
        store.media.put(session_id, {**ok, "data": b"x" * 2000})
    assert caught.value.field == "record.data"
    assert "AGENTKEEP_MEDIA_MAX_BYTES" in str(caught.value)
    assert [r.key for r in store.media.list(session_id)] == ["kept"]  # nothing written
    with pytest.raises(NotFound):
        store.media.put("sess_missing", ok)


async def test_saving_a_media_cache_is_one_transaction_on_the_async_connections(
    store: Store, session_id: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``media.save`` replaces the cache in one transaction (the session's check, the
    delete, the insert; BEGIN and COMMIT around them on PostgreSQL's autocommit
    connections), with no worker thread: a row the database refuses (PostgreSQL stores no
    NUL character) leaves the cache as it was."""
    astore = AsyncStore(store)
    kept = {"key": "kept", "provider": "p", "mime_type": "a/b", "data": PNG}
    no_worker_threads(monkeypatch, "media.save")
    with sent_statements(store) as sent:
        saved = await astore.media.save(session_id, [kept, {**kept, "key": "two"}])
    assert [r.key for r in saved] == ["kept", "two"]
    if backend == "postgres":
        verbs = [v for s in sent if (v := s.split(None, 1)[0].upper()) != "SET"]
        assert verbs[0] == "BEGIN" and verbs[-1] == "COMMIT", sent
    listed = await astore.media.list(session_id, with_data=True)
    assert [(r.key, r.data) for r in listed] == [("kept", PNG), ("two", PNG)]
    if backend == "postgres":
        new = {"key": "new", "provider": "p", "mime_type": "a/b", "size_bytes": 1}
        with pytest.raises(InvalidInput):
            await astore.media.save(session_id, [new, {**new, "key": "bad", "provider": "a\x00b"}])
        assert [r.key for r in await astore.media.list(session_id)] == ["kept", "two"]
    assert await astore.media.save(session_id, []) == []
    assert await astore.media.list(session_id) == []
    with pytest.raises(NotFound):
        await astore.media.save("sess_missing", [kept])


def test_records_go_with_their_session_and_their_user(store: Store) -> None:
    for user in ("ada", "bob"):
        sid = store.sessions.create(user_id=user).id
        store.history.save_window(sid, _window("w", T0))
        store.media.put(sid, {"key": "k", "provider": "p", "mime_type": "a/b", "data": PNG})
    ada = store.sessions.list(user_id="ada").items[0].id
    bob = store.sessions.list(user_id="bob").items[0].id
    receipt = store.erase_user("ada")
    assert receipt.counts["media_cache"] == 1 and receipt.counts["session_records"] == 1
    with pytest.raises(NotFound):
        store.media.get(ada, "k")
    assert store.history.windows(ada) == []
    assert store.media.get(bob, "k").data == PNG  # bob keeps his
    store.sessions.delete(bob)  # deleting a session deletes its records
    with store._core.engine.connect() as conn:
        for table in (media_cache, session_records):
            left = conn.execute(
                sa.select(sa.func.count()).where(table.c.tenant_id == store.tenant_id)
            ).scalar_one()
            assert left == 0, table.name


async def test_the_async_twins(store: Store, session_id: str) -> None:
    astore = AsyncStore(store)
    await astore.history.save_window(session_id, _window("w1", T0))
    assert [w.id for w in await astore.history.windows(session_id)] == ["w1"]
    await astore.media.put(
        session_id, {"key": "k", "provider": "p", "mime_type": "a/b", "data": PNG}
    )
    assert (await astore.media.get(session_id, "k")).data == PNG


async def test_each_record_call_is_one_statement_on_the_async_connections(
    store: Store, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving a record is one statement (an upsert made only while the session exists:
    one write on PostgreSQL's autocommit connections), and so is each read and delete;
    the async API runs them with no worker thread. Saving again replaces the record
    and keeps when it was first stored."""
    astore = AsyncStore(store)
    no_worker_threads(monkeypatch, "history and media records")
    with sent_statements(store) as sent:
        await astore.history.save_window(session_id, _window("w1", T0, "first"))
    assert len(work(sent)) == 1, work(sent)
    with sent_statements(store) as sent:
        await astore.history.save_window(session_id, _window("w1", T0, "again"))
        windows = await astore.history.windows(session_id)
    assert len(work(sent)) == 2, work(sent)
    assert [(w.id, w.messages[0]["content"][0]["text"]) for w in windows] == [("w1", "again")]
    compression = _compression("c1")
    await astore.history.save_compression(session_id, compression)
    assert [c.id for c in await astore.history.compressions(session_id)] == ["c1"]
    file = RecoveredFile(path="/a.py", content="x", mtime=T0, timestamp=T0)
    await astore.history.save_recovered_file(session_id, file)
    assert await astore.history.recovered_files(session_id) == [file]
    first = await astore.media.put(
        session_id, {"key": "k", "provider": "p", "mime_type": "a/b", "data": PNG}
    )
    with sent_statements(store) as sent:
        again = await astore.media.put(
            session_id, {"key": "k", "provider": "q", "mime_type": "a/b", "data": PNG[:4]}
        )
        listed = await astore.media.list(session_id, with_data=True)
        got = await astore.media.get(session_id, "k")
    assert len(work(sent)) == 3, work(sent)
    assert again.provider == "q" and listed == [got] and got.data == PNG[:4]
    assert got.created_at == first.created_at  # kept from the first put
    assert (await astore.media.list(session_id))[0].data is None
    assert await astore.history.delete(session_id, kind="compression") == 1
    assert await astore.history.delete(session_id) == 2
    await astore.media.delete(session_id, "k")
    with pytest.raises(NotFound):
        await astore.media.delete(session_id, "k")
    with pytest.raises(NotFound):
        await astore.media.get(session_id, "k")
    gone = store.sessions.create().id
    store.sessions.delete(gone)
    with pytest.raises(NotFound) as missing:
        await astore.history.save_window(gone, _window("w2", T0))
    assert missing.value.kind == "session"
    with pytest.raises(NotFound):
        await astore.media.put(
            gone, {"key": "k", "provider": "p", "mime_type": "a/b", "size_bytes": 1}
        )
    with pytest.raises(InvalidInput) as bad:
        await astore.history.delete(session_id, kind="other")
    assert bad.value.field == "kind"
    with store._core.engine.connect() as conn:  # nothing of the missing session was written
        for table in (media_cache, session_records):
            stray = conn.execute(
                sa.select(sa.func.count()).where(table.c.session_id == gone)
            ).scalar_one()
            assert stray == 0, table.name


def test_limits_from_the_environment() -> None:
    assert Settings.from_env({}).limits == RecordLimits()
    env = {"AGENTKEEP_MEDIA_MAX_BYTES": "10", "AGENTKEEP_RECORD_MAX_BYTES": "20"}
    assert Settings.from_env(env).limits == RecordLimits(media_max_bytes=10, record_max_bytes=20)
    with pytest.raises(InvalidInput) as caught:
        Settings.from_env({"AGENTKEEP_MEDIA_MAX_BYTES": "0"})
    assert caught.value.field == "AGENTKEEP_MEDIA_MAX_BYTES"
