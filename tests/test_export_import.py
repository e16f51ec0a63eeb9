"""Export, import and copy on every backend: round trips, modes, refusals that write nothing."""

from __future__ import annotations

import gzip
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from _lifecycle import empty_url, entity_lines, populate

import agentkeep
from agentkeep import Conflict, InvalidInput, Store
from agentkeep.lifecycle import ExportFilter, copy_database, export, import_file, importer, restore
from agentkeep.store import bulk, dump, migrate
from agentkeep.store.backup_files import take_backup
from agentkeep.store.dialects import dialect_for_url
from agentkeep.store.schema import agents, messages, metadata, sessions


def _rows(store: Store) -> int:
    return len(entity_lines(store))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_export_import_into_empty_gives_the_same_lines(
    store: Store, backend: str, tmp_path: Path, request: pytest.FixtureRequest, suffix: str
) -> None:
    populate(store)
    before = entity_lines(store)
    file = tmp_path / f"export{suffix}"
    result = export(store, file, ExportFilter(tenant=store.tenant_id))
    assert result.total == len(before) > 10
    if suffix.endswith(".gz"):
        assert file.read_bytes()[:2] == b"\x1f\x8b"  # really gzip
    if suffix.endswith(".zst"):
        assert file.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # really zstd
    target_url = empty_url(backend, tmp_path, request)
    with agentkeep.connect(target_url, tenant=store.tenant_id, auto_migrate=True) as target:
        report = import_file(target, file)
        assert sum(report.imported.values()) == len(before)
        assert report.conflicting == {} and report.skipped == {}
        assert entity_lines(target) == before
        again = import_file(target, file, mode="merge")  # everything is already there
        assert sum(again.imported.values()) == 0
        assert sum(again.skipped.values()) == len(before)


def test_import_modes_conflicts_and_dry_run(store: Store, tmp_path: Path) -> None:
    info = populate(store)
    file = tmp_path / "export.jsonl"
    export(store, file, ExportFilter(tenant=store.tenant_id))
    store.sessions.update(info["session"].id, title="renamed here")
    merged = import_file(store, file, mode="merge")
    assert merged.conflicting == {"sessions": 1}
    assert merged.conflicts == [f"sessions {store.tenant_id}/{info['session'].id}"]
    assert (
        store.sessions.get(info["session"].id).title == "renamed here"
    )  # merge keeps the stored row
    assert import_file(store, file, mode="skip").skipped["sessions"] == 1
    dry = import_file(store, file, mode="overwrite", dry_run=True)
    assert dry.imported["sessions"] == 1 and dry.dry_run
    assert store.sessions.get(info["session"].id).title == "renamed here"  # dry run wrote nothing
    import_file(store, file, mode="overwrite")
    assert store.sessions.get(info["session"].id).title == "alice's chat"


def test_import_in_many_batches_counts_each_row_once_per_mode(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows looked up and written a batch at a time (lookups chunked too) still count exactly."""
    monkeypatch.setattr(importer, "BATCH", 3)
    monkeypatch.setattr(bulk, "_SQLITE_PARAMS", 4)  # two keys per SQLite lookup
    session = store.sessions.create()
    made = store.messages.append_many(
        session.id, [{"role": "user", "content": f"m{i}"} for i in range(20)]
    )
    file = tmp_path / "export.jsonl"
    export(store, file, ExportFilter(tenant=store.tenant_id))
    for m in made[:5]:  # gone: imported again
        store.messages.delete(m.id)
    for m in made[5:8]:  # differ: conflicting, then overwritten
        store.messages.update(m.id, content="edited")

    def texts() -> list[str]:
        return [m.content[0]["text"] for m in store.messages.list(session.id, limit=100).items]

    merged = import_file(store, file, mode="merge")
    assert merged.imported.get("messages") == 5
    assert (merged.conflicting["messages"], merged.skipped["messages"]) == (3, 12)
    assert texts() == [f"m{i}" for i in range(5)] + ["edited"] * 3 + [f"m{i}" for i in range(8, 20)]
    dry = import_file(store, file, mode="overwrite", dry_run=True)
    assert (dry.imported["messages"], dry.skipped["messages"]) == (3, 17)
    assert texts().count("edited") == 3  # the dry run wrote nothing
    over = import_file(store, file, mode="overwrite")
    assert (over.imported["messages"], over.skipped["messages"]) == (3, 17)
    assert texts() == [f"m{i}" for i in range(20)]
    assert import_file(store, file, mode="skip").skipped["messages"] == 20


def test_import_into_another_tenant(store: Store, tmp_path: Path) -> None:
    populate(store)
    file = tmp_path / "export.jsonl"
    export(store, file, ExportFilter(tenant=store.tenant_id))
    other = store.tenant(store.tenant_id + "_copy")
    report = import_file(other, file, tenant=other.tenant_id)
    assert report.imported["messages"] == 2
    assert [m.content for m in other.messages.list(other.sessions.list().items[0].id).items] == [
        m.content for m in store.messages.list(store.sessions.list().items[0].id).items
    ]


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_bad_files_are_refused_with_line_and_field_and_nothing_written(
    store: Store, tmp_path: Path
) -> None:
    populate(store)
    good = tmp_path / "export.jsonl"
    export(store, good, ExportFilter(tenant=store.tenant_id))
    lines = good.read_text(encoding="utf-8").splitlines()
    target = store.tenant(store.tenant_id + "_target")

    truncated = tmp_path / "truncated.jsonl"
    _write(truncated, lines[:-1])
    with pytest.raises(InvalidInput, match="truncated"):
        import_file(target, truncated, tenant=target.tenant_id)

    number = next(i for i, line in enumerate(lines) if '"table":"messages"' in line)
    item = json.loads(lines[number])
    item["row"]["seq"] = "two"
    wrong_type = tmp_path / "wrong_type.jsonl"
    _write(wrong_type, [*lines[:number], json.dumps(item), *lines[number + 1 :]])
    with pytest.raises(
        InvalidInput, match=rf"line {number + 1}: messages\.seq: must be an integer"
    ):
        import_file(target, wrong_type, tenant=target.tenant_id)

    garbled = tmp_path / "garbled.jsonl"
    _write(garbled, [*lines[:-1], lines[-1][:-7]])
    with pytest.raises(InvalidInput, match=rf"line {len(lines)}: .*not JSON"):
        import_file(target, garbled, tenant=target.tenant_id)

    corrupt_gz = tmp_path / "corrupt.jsonl.gz"
    data = gzip.compress(good.read_bytes())
    corrupt_gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="cannot read"):
        import_file(target, corrupt_gz, tenant=target.tenant_id)

    zstd_file = tmp_path / "good.jsonl.zst"
    export(store, zstd_file, ExportFilter(tenant=store.tenant_id))
    packed = zstd_file.read_bytes()
    truncated_zst = tmp_path / "truncated.jsonl.zst"
    truncated_zst.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InvalidInput, match=r"cannot read.*truncated"):
        import_file(target, truncated_zst, tenant=target.tenant_id)
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0xFF
    corrupt_zst = tmp_path / "corrupt.jsonl.zst"
    corrupt_zst.write_bytes(bytes(flipped))
    with pytest.raises(InvalidInput, match="cannot read"):
        import_file(target, corrupt_zst, tenant=target.tenant_id)

    assert _rows(target) == 0  # nothing of any attempt was written


def test_a_write_error_rolls_the_whole_import_back(store: Store, tmp_path: Path) -> None:
    info = populate(store)
    file = tmp_path / "export.jsonl"
    export(store, file, ExportFilter(tenant=store.tenant_id, session_id=info["session"].id))
    lines = file.read_text(encoding="utf-8").splitlines()
    # A message whose (session, seq) collides with a stored one: valid line, failing write.
    at = next(i for i, line in enumerate(lines) if '"table":"messages"' in line)
    dup = json.loads(lines[at])
    dup["row"]["id"] = "msg_collides"
    header = json.loads(lines[0])
    header["counts"]["messages"] += 1
    colliding = tmp_path / "colliding.jsonl"
    _write(colliding, [json.dumps(header), *lines[1 : at + 1], json.dumps(dup), *lines[at + 1 :]])
    target = store.tenant(store.tenant_id + "_t")
    with pytest.raises(Conflict):
        import_file(target, colliding, tenant=target.tenant_id)
    assert _rows(target) == 0


def test_export_filters_by_session_user_and_time(store: Store) -> None:
    mine = populate(store, user="alice")
    populate(store, user="bob", secret="bob's own")
    by_user = "\n".join(entity_lines(store, ExportFilter(tenant=store.tenant_id, user_id="alice")))
    assert "the secret plan" in by_user and "bob's own" not in by_user
    assert '"table":"graph_store_items"' in by_user  # alice's memories go with her
    by_session = entity_lines(
        store, ExportFilter(tenant=store.tenant_id, session_id=mine["session"].id)
    )
    tables = {json.loads(line)["table"] for line in by_session}
    assert {"sessions", "messages", "runs", "run_steps", "events", "tool_calls"} <= tables
    assert "agents" not in tables and "bob's own" not in "\n".join(by_session)
    later = mine["session"].created_at.replace(year=mine["session"].created_at.year + 1)
    recent = entity_lines(store, ExportFilter(tenant=store.tenant_id, since=later))
    timeless = {t.name for t in metadata.sorted_tables if "created_at" not in t.c}
    assert {json.loads(line)["table"] for line in recent} <= timeless  # kept: nothing to filter by


def _responses_in(store: Store, session_id: str, word: str) -> str:
    """Two chained responses in the conversation ``session_id``, with items and stream events;
    the id of the second (finished last, after its first events)."""
    ids = []
    for n in range(2):
        item = {"id": f"msg_{word}_{n}", "type": "message", "role": "user", "content": word}
        started = {"type": "response.created", "sequence_number": 0, "response": {"said": word}}
        response = store.responses.create(
            model="m",
            input_items=[item],
            conversation_id=session_id,
            previous_response_id=ids[-1] if ids else None,
            events=[started],
        )
        ids.append(response.id)
    return ids[-1]


def _finish(store: Store, response_id: str, word: str) -> None:
    out = {"id": f"out_{response_id}", "type": "message", "role": "assistant", "content": word}
    store.responses.finish(
        response_id,
        status="completed",
        output_items=[out],
        events=lambda ended: [{"type": "response.completed", "sequence_number": 1}],
    )


def test_export_by_session_user_or_time_keeps_each_responses_items_and_events(
    store: Store, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``response_items`` and ``response_events`` have no session column and their own times
    are not their response's: they go wherever their response goes, and only then."""
    alice = store.sessions.create(user_id="alice")
    bob = store.sessions.create(user_id="bob")
    first = _responses_in(store, alice.id, "alice-said")
    _responses_in(store, bob.id, "bob-said")
    later = datetime.now(UTC)
    time.sleep(0.002)  # the finish below is later than ``later``; every event before it but one
    _finish(store, first, "alice-heard")
    filters = {
        "session": ExportFilter(tenant=store.tenant_id, session_id=alice.id),
        "user": ExportFilter(tenant=store.tenant_id, user_id="alice"),
        "since": ExportFilter(tenant=store.tenant_id, since=later),
    }
    for name, flt in filters.items():
        lines = entity_lines(store, flt)
        by_table: dict[str, list[dict[str, object]]] = {}
        for line in lines:
            row = json.loads(line)
            by_table.setdefault(row["table"], []).append(row)
        text = "\n".join(lines)
        assert "bob-said" not in text, name
        kept = 1 if name == "since" else 2  # since: only the response finished after it
        assert len(by_table["responses"]) == kept, name
        assert len(by_table["response_items"]) == kept + 1, name  # inputs, and one output
        assert len(by_table["response_events"]) == kept + 1, name  # created (x kept), completed
        file = tmp_path / f"{name}.jsonl"
        export(store, file, flt)
        target_url = empty_url(backend, tmp_path, request, name=f"by_{name}")
        with agentkeep.connect(target_url, tenant=store.tenant_id, auto_migrate=True) as target:
            import_file(target, file)
            assert entity_lines(target, flt) == lines, name
            items = target.responses.items(first)
            assert [i["content"] for i in items] == ["alice-said", "alice-heard"], name
            events = [e.type for e in target.responses.events(first)]
            assert events == ["response.created", "response.completed"], name
            if name != "since":
                assert len(target.responses.context(first)) == 3, name  # the chain and output


def test_copy_sqlite_to_postgres_and_back(tmp_path: Path, postgres_server: object) -> None:
    source_url = f"sqlite:///{tmp_path}/source.db"
    with agentkeep.connect(source_url, tenant="acme") as source:
        populate(source)
        expected = entity_lines(source)
    pg_url = postgres_server.new_database()  # type: ignore[attr-defined]
    report = copy_database(source_url, pg_url)
    assert report.counts["messages"] == 2
    back_url = f"sqlite:///{tmp_path}/back.db"
    copy_database(pg_url, back_url)
    for url in (pg_url, back_url):
        with agentkeep.connect(url, tenant="acme") as copied:
            assert entity_lines(copied) == expected


def test_copy_refuses_a_non_empty_destination_and_leaves_it_untouched(tmp_path: Path) -> None:
    source_url, target_url = f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/t.db"
    with agentkeep.connect(source_url) as source:
        populate(source)
    with agentkeep.connect(target_url) as target:
        populate(target, user="carol", secret="carol's")
        before = entity_lines(target)
    with pytest.raises(Conflict, match="not empty"):
        copy_database(source_url, target_url)
    with agentkeep.connect(target_url) as target:
        assert entity_lines(target) == before
    copy_database(source_url, target_url, force=True)
    with agentkeep.connect(target_url) as target, agentkeep.connect(source_url) as source:
        assert entity_lines(target) == entity_lines(source)


def _logical_backup_at_revision_0001(tmp_path: Path) -> Path:
    """A JSON Lines backup written at revision 0001, as the agentkeep of that revision wrote it."""
    url = f"sqlite:///{tmp_path}/at_0001.db"
    dialect = dialect_for_url(url)
    try:
        migrate.upgrade(dialect, "0001")
        values = {"tenant_id": "old", "created_at": 1}
        with dialect.engine.begin() as conn:
            conn.execute(
                sa.insert(agents).values(
                    **values,
                    id="asst_old",
                    model="m",
                    tools=[],
                    metadata={},
                    extra={},
                    version=1,
                    updated_at=1,
                )
            )
            conn.execute(
                sa.insert(sessions).values(
                    **values,
                    id="sess_old",
                    kind="session",
                    user_id="u",
                    metadata={},
                    traits={},
                    state={},
                    extra={},
                    message_count=2,
                    last_seq=2,
                    last_activity_at=1,
                    version=1,
                    updated_at=1,
                )
            )
            conn.execute(
                sa.insert(messages),
                [
                    {
                        **values,
                        "id": f"msg_old{i}",
                        "session_id": "sess_old",
                        "seq": i,
                        "role": "user",
                        "content": [{"type": "text", "text": f"old {i}"}],
                        "content_types": "text",
                        "metadata": {},
                        "extra": {},
                    }
                    for i in (1, 2)
                ],
            )
        manifest = take_backup(dialect, tmp_path / "old_backups", kind="jsonl")
    finally:
        dialect.dispose()
    assert manifest["revision"] == "0001" != migrate.head_revision()
    path = Path(manifest["path"])
    header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert header["revision"] == "0001" and "snapshot_messages" not in header["counts"]
    return path


def _old_rows_are_there(store: Store) -> None:
    assert store.agents.get("asst_old").model == "m"
    assert store.sessions.get("sess_old").message_count == 2
    texts = [m.content[0]["text"] for m in store.messages.list("sess_old", order="asc")]
    assert texts == ["old 1", "old 2"]
    assert store.check_consistency().ok


def test_an_older_revision_export_is_upgraded_on_import(store: Store, tmp_path: Path) -> None:
    old = _logical_backup_at_revision_0001(tmp_path)
    report = import_file(store, old, tenant=store.tenant_id)
    assert report.upgraded_from == "0001"
    assert report.imported == {"agents": 1, "sessions": 1, "messages": 2}
    _old_rows_are_there(store)
    snap = store.snapshots.create("sess_old")  # a head-only feature works on the old rows
    store.messages.update("msg_old1", content="new")
    assert store.snapshots.messages(snap.id)[0].content[0]["text"] == "old 1"


def test_an_older_revision_logical_backup_is_upgraded_on_restore(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    old = _logical_backup_at_revision_0001(tmp_path)
    target_url = empty_url("sqlite" if backend == "memory" else backend, tmp_path, request)
    report = restore(old, target_url)
    assert (report.from_revision, report.to_revision) == ("0001", migrate.head_revision())
    with agentkeep.connect(target_url, tenant="old") as restored:
        _old_rows_are_there(restored)


def test_an_older_revision_file_with_a_bad_line_or_a_newer_revision_is_refused(
    store: Store, tmp_path: Path
) -> None:
    lines = _logical_backup_at_revision_0001(tmp_path).read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if '"table":"messages"' in line)
    item = json.loads(lines[at])
    item["row"]["seq"] = "one"
    bad = tmp_path / "bad_old.jsonl"
    _write(bad, [*lines[:at], json.dumps(item), *lines[at + 1 :]])
    with pytest.raises(InvalidInput, match=rf"line {at + 1}: messages\.seq: must be an integer"):
        import_file(store, bad, tenant=store.tenant_id)
    header = json.loads(lines[0])
    header["revision"] = "9999"
    newer = tmp_path / "newer.jsonl"
    _write(newer, [json.dumps(header), *lines[1:]])
    with pytest.raises(InvalidInput, match="newer agentkeep") as err:
        import_file(store, newer, tenant=store.tenant_id)
    assert err.value.field == "revision"
    assert _rows(store) == 0


def _export_at_revision_0009(tmp_path: Path) -> Path:
    """A JSON Lines backup written at revision 0009: runs had no agent_version column yet (0010)."""
    url = f"sqlite:///{tmp_path}/at_0009.db"
    dialect = dialect_for_url(url)
    try:
        migrate.upgrade(dialect, "0009")
        old = sa.MetaData()
        with dialect.engine.begin() as conn:
            old.reflect(conn, only=["runs"])
            assert "agent_version" not in old.tables["runs"].c  # the column 0010 adds
            values = {"tenant_id": "old", "created_at": 1, "updated_at": 1, "version": 2}
            conn.execute(
                sa.insert(agents).values(
                    **values, id="asst_old", model="m", tools=[], metadata={}, extra={}
                )
            )
            conn.execute(
                sa.insert(old.tables["runs"]),
                [
                    {
                        **values,
                        "id": f"run_old{i}",
                        "agent_id": "asst_old",
                        "status": "completed",
                        "objective": f"old run {i}",
                        "tools": [],
                        "iterations": i,
                        "input_tokens": 10 * i,
                        "output_tokens": i,
                        "cached_tokens": 0,
                        "reasoning_tokens": 0,
                        "metadata": {"n": i},
                        "extra": {},
                    }
                    for i in (1, 2)
                ],
            )
        manifest = take_backup(dialect, tmp_path / "backups_0009", kind="jsonl")
    finally:
        dialect.dispose()
    path = Path(manifest["path"])
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["revision"] == "0009" != migrate.head_revision()
    assert "agent_versions" not in lines[0]["counts"]
    runs_rows = [item["row"] for item in lines[1:] if item["table"] == "runs"]
    assert len(runs_rows) == 2 and all("agent_version" not in row for row in runs_rows)
    return path


def test_an_export_from_before_a_later_revisions_column_imports_into_the_current_schema(
    store: Store, tmp_path: Path
) -> None:
    """Revision 0010 added runs.agent_version: a 0009 export's runs come in with it NULL."""
    old = _export_at_revision_0009(tmp_path)
    report = import_file(store, old, tenant=store.tenant_id)
    assert report.upgraded_from == "0009"
    assert report.imported == {"agents": 1, "runs": 2}
    for i in (1, 2):
        run = store.runs.get(f"run_old{i}")
        assert (run.objective, run.iterations, run.metadata) == (f"old run {i}", i, {"n": i})
        assert run.input_tokens == 10 * i and run.agent_version is None
    exported = [json.loads(line) for line in entity_lines(store)]
    runs_rows = [item["row"] for item in exported if item["table"] == "runs"]
    assert [row["agent_version"] for row in runs_rows] == [None, None]  # the column, now there
    assert store.agents.get("asst_old").version == 2
    store.agents.update("asst_old", model="m2")  # a head-only feature works on the old rows
    assert [v.model for v in store.agents.versions("asst_old").items] == ["m2", "m"]
    made = store.runs.create("asst_old")
    assert made.agent_version == 3
    again = import_file(store, old, tenant=store.tenant_id, mode="skip")
    assert again.imported == {} and again.skipped == {"agents": 1, "runs": 2}


def test_a_dump_that_is_not_one_snapshot_is_refused(store: Store) -> None:
    """Rows that change between the count and the read fail the dump with a Conflict."""
    session = store.sessions.create()
    store.messages.append(session.id, "user", "one")
    mine = store.tenant_id
    selection = [
        (sessions, [sessions.c.tenant_id == mine]),
        (messages, [messages.c.tenant_id == mine]),
    ]
    out = io.StringIO()
    with store._core.engine.connect() as conn:

        def progress(table: str, rows: int) -> None:
            if table == "sessions":  # counted, sessions read, messages not yet
                conn.commit()  # the read leaves its snapshot: the next statement sees more
                store.messages.append(session.id, "user", "two")

        with pytest.raises(Conflict) as err:
            dump.write_dump(conn, out, selection, {"revision": None}, progress)
    message = str(err.value)
    assert "not one snapshot" in message
    assert "messages had 1 rows when counted and 2 when read" in message
    header, *rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert header["counts"] == {"sessions": 1, "messages": 1}
    assert [r["table"] for r in rows] == ["sessions", "messages", "messages"]
