"""Backups on every backend: online while writers append, verified, restored, pruned; crashes leave nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from _lifecycle import empty_url, entity_lines, populate
from _multiproc import kill9, spawn_child

import agentkeep
from agentkeep import BackupFailed, Store
from agentkeep.lifecycle import restore
from agentkeep.store import migrate
from agentkeep.store.backup_files import VERIFY_PREFIX
from agentkeep.store.dialects import dialect_for_url
from agentkeep.store.schema import agents, sessions

WRITER = """
import os, sys
import agentkeep
url, session_id, stop, ready = sys.argv[1:5]
n = 0
with agentkeep.connect(url) as store:
    while not os.path.exists(stop):
        store.messages.append(session_id, "user", f"{os.getpid()} #{n}")
        n += 1
        if n == 20:
            open(ready, "w").close()
print(n)
"""


def _wait_for(condition: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def source(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A store on a database of its own (a backup covers the whole database)."""
    url = empty_url(backend, tmp_path, request, "source")
    with agentkeep.connect(url, auto_migrate=True) as store:
        yield store


def _restore_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    # A memory database lives in one process: restore its backup into a SQLite file.
    return empty_url("sqlite" if backend == "memory" else backend, tmp_path, request, "restored")


@contextmanager
def _append_concurrently(source: Store, backend: str, tmp_path: Path) -> Iterator[None]:
    """4 writers (processes; threads on memory) append until the block ends."""
    chats = [source.sessions.create().id for _ in range(2)]
    stop = tmp_path / "stop"
    ready = [tmp_path / f"ready{i}" for i in range(4)]
    if backend == "memory":

        def write(i: int) -> None:
            n = 0
            while not stop.exists():
                source.messages.append(chats[i % 2], "user", f"thread {i} #{n}")
                n += 1
                if n == 20:
                    ready[i].touch()

        workers = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for worker in workers:
            worker.start()
        try:
            _wait_for(lambda: all(r.exists() for r in ready), "4 writers")
            yield
        finally:
            stop.touch()
            for worker in workers:
                worker.join()
        return
    children = [
        spawn_child(WRITER, source.url, chats[i % 2], str(stop), str(ready[i])) for i in range(4)
    ]
    try:
        _wait_for(lambda: all(r.exists() for r in ready), "4 writer processes")
        yield
    finally:
        stop.touch()
        results = [child.communicate(timeout=120) for child in children]
    for child, (_out, errors) in zip(children, results, strict=True):
        assert child.returncode == 0, errors


def test_backup_while_4_writers_append_verifies_and_restores_consistently(
    source: Store, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    populate(source)
    with _append_concurrently(source, backend, tmp_path):
        backup = source.backups.create(to=tmp_path / "backups")
    assert backup.kind == {"memory": "jsonl", "sqlite": "sqlite", "postgres": "pg_dump"}[backend]
    assert source.backups.list()[0].id == backup.id
    check = source.backups.verify(backup.id)
    assert check.ok, check.problems
    assert source.backups.get(backup.id).status == "verified"
    assert json.loads(Path(backup.path + ".json").read_text())["sha256"] == backup.sha256

    target_url = _restore_target(backend, tmp_path, request)
    report = restore(backup.path, target_url)
    assert report.counts == backup.counts
    final = entity_lines(source, _all())
    with agentkeep.connect(target_url) as restored:
        lines = entity_lines(restored, _all())
        assert restored.check_consistency().ok  # message counts match rows: one snapshot
    rows = [json.loads(line) for line in lines]
    for chat in (r["row"] for r in rows if r["table"] == "sessions"):
        seqs = sorted(
            r["row"]["seq"]
            for r in rows
            if r["table"] == "messages" and r["row"]["session_id"] == chat["id"]
        )
        assert seqs == list(range(1, len(seqs) + 1)) and chat["message_count"] == len(seqs)
    restored_messages = {line for line in lines if '"table":"messages"' in line}
    assert restored_messages <= set(final)  # every restored message is the source's, unchanged
    assert len(restored_messages) == backup.counts["messages"] >= 80 + 2
    unchanged = [
        line for line in lines if '"table":"messages"' not in line and '"sessions"' not in line
    ]
    assert set(unchanged) <= set(final)


def _all() -> object:
    from agentkeep.lifecycle import ExportFilter

    return ExportFilter()


def test_a_corrupted_or_truncated_backup_is_refused_and_nothing_restored(
    source: Store, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    populate(source)
    backup = source.backups.create(to=tmp_path / "backups", compress=backend == "sqlite")
    data = bytearray(Path(backup.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(backup.path).write_bytes(bytes(data))
    check = source.backups.verify(backup.path)
    assert not check.ok and "sha256" in check.problems[0]
    assert source.backups.get(backup.id).status == "corrupt"
    target_url = _restore_target(backend, tmp_path, request)
    with pytest.raises(BackupFailed, match="did not verify"):
        restore(backup.path, target_url)
    Path(backup.path).write_bytes(bytes(data[: len(data) // 2]))
    assert "size" in source.backups.verify(backup.id).problems[0]
    with pytest.raises(BackupFailed):
        restore(backup.path, target_url)
    with agentkeep.connect(target_url, auto_migrate=True) as target:
        assert entity_lines(target, _all()) == []


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_a_compressed_backup_verifies_and_restores(
    source: Store,
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    compress: str,
) -> None:
    populate(source)
    kind = "sqlite" if backend == "sqlite" else "jsonl"  # pg_dump compresses on its own
    backup = source.backups.create(to=tmp_path / "backups", compress=compress, kind=kind)
    assert backup.compression == compress
    assert backup.path.endswith({"gzip": ".gz", "zstd": ".zst"}[compress])
    magic = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}[compress]
    assert Path(backup.path).read_bytes().startswith(magic)
    assert source.backups.verify(backup.id).ok
    target_url = _restore_target(backend, tmp_path, request)
    assert restore(backup.path, target_url).counts == backup.counts
    with agentkeep.connect(target_url) as target:
        assert entity_lines(target, _all()) == entity_lines(source, _all())


def test_an_unknown_compression_is_refused(source: Store, tmp_path: Path) -> None:
    with pytest.raises(agentkeep.InvalidInput, match="compress"):
        source.backups.create(to=tmp_path / "b", compress="lz4")
    assert source.backups.list() == []


def test_restore_refuses_a_non_empty_target_unless_forced(
    source: Store, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    populate(source)
    backup = source.backups.create(to=tmp_path / "backups")
    target_url = _restore_target(backend, tmp_path, request)
    with agentkeep.connect(target_url, auto_migrate=True) as target:
        populate(target, user="zed", secret="zed's")
        before = entity_lines(target, _all())
    with pytest.raises(agentkeep.Conflict, match="not empty"):
        restore(backup.path, target_url)
    with agentkeep.connect(target_url) as target:
        assert entity_lines(target, _all()) == before
    restore(backup.path, target_url, force=True)
    with agentkeep.connect(target_url) as target:
        assert entity_lines(target, _all()) == entity_lines(source, _all())


SLOW_BACKUP = """
import sys, time
import agentkeep
from agentkeep.store import dump
encode = dump.encode
def slow(value):
    time.sleep(0.002)  # a slow disk: the backup is still running when it is killed
    return encode(value)
dump.encode = slow
with agentkeep.connect(sys.argv[1]) as store:
    store.backups.create(to=sys.argv[2], kind="jsonl")
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_during_a_backup_leaves_catalog_and_directory_clean(
    source: Store, tmp_path: Path
) -> None:
    session = source.sessions.create()
    source.messages.append_many(
        session.id, [{"role": "user", "content": f"m{i}"} for i in range(3000)]
    )
    folder = tmp_path / "backups"
    child = spawn_child(SLOW_BACKUP, source.url, str(folder))
    partial = folder / ".partial"
    _wait_for(
        lambda: partial.is_dir() and any(p.stat().st_size > 0 for p in partial.iterdir()),
        "the backup to be under way",
    )
    kill9(child)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert source.backups.list() == []
    assert [p.name for p in folder.iterdir()] == [".partial"]  # nothing under a real name
    done = source.backups.create(to=folder)  # the next backup sweeps the dead one's partial
    assert list(partial.iterdir()) == []
    assert [b.id for b in source.backups.list()] == [done.id]


def _at_revision_0001_with_rows(url: str) -> None:
    dialect = dialect_for_url(url)
    try:
        migrate.upgrade(dialect, "0001")
        with dialect.engine.begin() as conn:
            conn.execute(
                sa.insert(agents).values(
                    tenant_id="old",
                    id="asst_old",
                    model="m",
                    tools=[],
                    metadata={},
                    extra={},
                    version=1,
                    created_at=1,
                    updated_at=1,
                )
            )
            conn.execute(
                sa.insert(sessions).values(
                    tenant_id="old",
                    id="sess_old",
                    kind="session",
                    user_id="u",
                    metadata={},
                    traits={},
                    state={},
                    extra={},
                    message_count=0,
                    last_seq=0,
                    last_activity_at=1,
                    version=1,
                    created_at=1,
                    updated_at=1,
                )
            )
    finally:
        dialect.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_upgrade_backs_up_first_and_the_older_revision_backup_restores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "backups"
    monkeypatch.setenv("AGENTKEEP_BACKUP_DIR", str(folder))
    url = empty_url(backend, tmp_path, request, "old")
    _at_revision_0001_with_rows(url)
    with agentkeep.connect(url, auto_migrate=True) as store:
        (backup,) = store.backups.list()
        assert (backup.trigger, backup.revision) == ("pre-upgrade", "0001")
        assert backup.counts["sessions"] == 1
    target_url = empty_url(backend, tmp_path, request, "from_old")
    report = restore(backup.path, target_url)
    assert (report.from_revision, report.to_revision) == ("0001", migrate.head_revision())
    with agentkeep.connect(target_url, tenant="old") as restored:
        assert restored.sessions.get("sess_old").user_id == "u"
        assert restored.agents.get("asst_old").model == "m"


def test_prune_keeps_the_newest_and_recatalogues_from_manifests(tmp_path: Path) -> None:
    with agentkeep.connect(f"sqlite:///{tmp_path}/db.db") as store:
        populate(store)
        made = [store.backups.create(to=tmp_path / "b") for _ in range(3)]
        assert (
            store.backups.prune(keep_days=0, keep_last=1, dry_run=True) == store.backups.list()[1:]
        )
        assert len(store.backups.list()) == 3
        gone = store.backups.prune(keep_last=1)
        assert {b.id for b in gone} == {made[0].id, made[1].id}
        assert not Path(made[0].path).exists() and not Path(made[0].path + ".json").exists()
        assert store.backups.prune(keep_days=30) == []  # young: kept
    with agentkeep.connect(f"sqlite:///{tmp_path}/other.db") as other:
        assert [b.id for b in other.backups.catalog(tmp_path / "b")] == [made[2].id]
        assert other.backups.verify(made[2].id).ok


def test_sqlite_backup_file_is_a_plain_database(tmp_path: Path) -> None:
    with agentkeep.connect(f"sqlite:///{tmp_path}/db.db") as store:
        populate(store)
        backup = store.backups.create(to=tmp_path / "b")
    with sqlite3.connect(backup.path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (2,)
    assert sys.platform != "win32"


def _scratch_databases(url: str) -> set[str]:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"{VERIFY_PREFIX}{os.getpid()}\\_%",),
        ).fetchall()
    return {r[0] for r in rows}


def _rewrite_manifest(path: str, **changes: object) -> None:
    manifest = Path(path + ".json")
    data = json.loads(manifest.read_text())
    data.update(changes)
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_pg_dump_backup_is_verified_by_restoring_it_into_a_scratch_database(
    source: Store, tmp_path: Path
) -> None:
    populate(source)
    backup = source.backups.create(to=tmp_path / "backups")
    assert backup.kind == "pg_dump"
    check = source.backups.verify(backup.id)
    assert check.ok, check.problems
    assert check.method.startswith("pg_restore into a scratch database")
    assert check.counts == backup.counts and check.counts["messages"] == 2
    assert _scratch_databases(source.url) == set()  # dropped after use

    # A manifest that promises rows the archive does not hold: the table of contents reads
    # fine, only the restored copy's counts show it.
    _rewrite_manifest(backup.path, counts={**backup.counts, "messages": 3})
    check = source.backups.verify(backup.path)
    assert not check.ok and "row counts" in check.problems[0]

    # Damaged data inside an archive whose manifest matches it: pg_restore fails on it.
    data = bytearray(Path(backup.path).read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    Path(backup.path).write_bytes(bytes(data))
    _rewrite_manifest(
        backup.path,
        counts=backup.counts,
        size_bytes=len(data),
        sha256=hashlib.sha256(bytes(data)).hexdigest(),
    )
    check = source.backups.verify(backup.path)
    assert not check.ok and "pg_restore" in " ".join(check.problems), check.problems
    assert source.backups.get(backup.id).status == "corrupt"
    assert _scratch_databases(source.url) == set()
