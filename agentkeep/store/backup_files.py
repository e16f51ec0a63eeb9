"""Taking one backup file: online, to a temporary name, verified, then renamed.

The copy is written under ``DIR/.partial/`` and moved into ``DIR`` only after
it is complete and verified, with a manifest JSON beside it (``<file>.json``:
everything the catalog row says, so a directory can be catalogued again
without the database). A process killed mid-backup leaves only its partial
file, which the next backup in that directory removes.

Kinds, chosen by capability:

- ``sqlite``: SQLite's online backup API (one step, so one consistent
  snapshot while writers keep writing to the WAL), checked with
  ``PRAGMA integrity_check``.
- ``pg_dump``: PostgreSQL's ``pg_dump -Fc`` when it is on PATH, run on a
  snapshot exported from a transaction that counted the rows, checked with
  ``pg_restore --list``.
- ``jsonl``: the logical dump (``agentkeep.store.dump``), for ``memory://``
  and for PostgreSQL without ``pg_dump``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql as psql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import Connection

from agentkeep.errors import BackupFailed, InvalidInput
from agentkeep.ids import new_id
from agentkeep.models.common import utcnow_micros
from agentkeep.store import dump
from agentkeep.store.compression import SUFFIXES, check_compression, open_binary
from agentkeep.store.dialects import Dialect, PostgresDialect, SQLiteDialect

__all__ = [
    "NoScratchDatabase",
    "backup_kind",
    "check_pg_dump_file",
    "check_sqlite_file",
    "clean_partials",
    "file_sha256",
    "manifest_path",
    "read_manifest",
    "restore_pg_dump_and_count",
    "revision_of",
    "snapshot_connection",
    "table_counts",
    "take_backup",
]

PARTIAL = ".partial"
_CHUNK = 1 << 20


def backup_kind(dialect: Dialect) -> str:
    """``sqlite`` for a SQLite file, ``pg_dump`` when it is on PATH, else ``jsonl``."""
    if isinstance(dialect, SQLiteDialect) and dialect.path is not None:
        return "sqlite"
    if isinstance(dialect, PostgresDialect) and shutil.which("pg_dump"):
        return "pg_dump"
    return "jsonl"


def manifest_path(path: str | Path) -> Path:
    return Path(f"{path}.json")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest beside a backup file (``path`` may be the manifest itself)."""
    name = Path(path)
    target = name if name.suffix == ".json" and name.exists() else manifest_path(name)
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"no backup manifest at {target}", field="path") from exc
    except ValueError as exc:
        raise InvalidInput(f"{target} is not a backup manifest ({exc})", field="path") from exc
    if not isinstance(data, dict) or data.get("format") != "agentkeep-backup":
        raise InvalidInput(f"{target} is not an agentkeep backup manifest", field="path")
    return data


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(directory: Path) -> list[Path]:
    """Remove partial files left by backup processes of this host that died."""
    removed: list[Path] = []
    partial = directory / PARTIAL
    if not partial.is_dir():
        return removed
    for item in partial.iterdir():
        pid = item.name.split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            item.unlink(missing_ok=True)
            removed.append(item)
    return removed


def take_backup(
    dialect: Dialect,
    directory: str | Path,
    *,
    trigger: str = "manual",
    compress: bool | str | None = False,
    kind: str | None = None,
) -> dict[str, Any]:
    """Write one verified backup of the whole database into ``directory``; returns its manifest.

    ``compress``: ``gzip`` (or True), ``zstd``, or none; a ``pg_dump``
    archive is compressed by pg_dump itself and takes none.
    """
    wanted = check_compression(compress)
    kind = kind or backup_kind(dialect)
    if kind not in ("sqlite", "pg_dump", "jsonl"):
        raise InvalidInput("must be sqlite, pg_dump or jsonl", field="kind")
    if kind == "sqlite" and backup_kind(dialect) != "sqlite":
        raise InvalidInput("a sqlite backup needs a SQLite file database", field="kind")
    folder = Path(directory).resolve()
    (folder / PARTIAL).mkdir(parents=True, exist_ok=True)
    clean_partials(folder)
    ident = new_id("bak")
    started = utcnow_micros()
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    ext = {"sqlite": ".db", "pg_dump": ".dump", "jsonl": ".jsonl"}[kind]
    compression = wanted if kind != "pg_dump" else None
    name = f"agentkeep_{stamp}_{ident[-10:]}{ext}" + (SUFFIXES[compression] if compression else "")
    work = folder / PARTIAL / f"{os.getpid()}.{name}"
    try:
        counts, revision = _WRITERS[kind](dialect, work, compression)
        if compression and kind == "sqlite":
            _compress_in_place(work, compression)
        manifest: dict[str, Any] = {
            "format": "agentkeep-backup",
            "id": ident,
            "kind": kind,
            "file": name,
            "path": str(folder / name),
            "size_bytes": work.stat().st_size,
            "sha256": file_sha256(work),
            "counts": counts,
            "revision": revision,
            "trigger": trigger,
            "compression": compression,
            "source": dialect.describe(),
            "started_at": started,
            "finished_at": utcnow_micros(),
        }
        staged = work.with_name(work.name + ".json")
        staged.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        _fsync(work)
        _fsync(staged)
        os.replace(work, folder / name)
        os.replace(staged, manifest_path(folder / name))
    except BaseException:
        work.unlink(missing_ok=True)
        work.with_name(work.name + ".json").unlink(missing_ok=True)
        raise
    return manifest


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _compress_in_place(path: Path, compression: str) -> None:
    packed = path.with_name(path.name + ".packing")
    with open(path, "rb") as src, open_binary(packed, "wb", compression) as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
    os.replace(packed, path)


def table_counts(conn: Connection) -> dict[str, int]:
    return {t.name: dump.count_rows(conn, t) for t in dump.tables_in(conn)}


def revision_of(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def _write_sqlite(
    dialect: Dialect, work: Path, compression: str | None
) -> tuple[dict[str, int], str | None]:
    assert isinstance(dialect, SQLiteDialect) and dialect.path is not None
    source = sqlite3.connect(dialect.path, timeout=30)
    target = sqlite3.connect(work)
    try:
        source.backup(target)  # one step: one snapshot, writers keep writing to the WAL
    finally:
        source.close()
        target.close()
    return check_sqlite_file(work)


def check_sqlite_file(path: Path) -> tuple[dict[str, int], str | None]:
    """Integrity check, row counts and revision of a SQLite database file."""
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            result = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                raise BackupFailed(f"integrity check of {path.name} failed: {result[:3]}")
            return table_counts(conn), revision_of(conn)
    except sa.exc.DatabaseError as exc:
        raise BackupFailed(f"{path.name} is not a readable SQLite database ({exc.orig})") from exc
    finally:
        engine.dispose()


@contextmanager
def snapshot_connection(dialect: Dialect) -> Iterator[Connection]:
    """A connection reading one snapshot of the database, for the whole block."""
    with dialect.read_guard(), dialect.engine.connect() as conn:
        dialect.consistent_read(conn)
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()


def _write_pg_dump(
    dialect: Dialect, work: Path, compression: str | None
) -> tuple[dict[str, int], str | None]:
    with snapshot_connection(dialect) as conn:
        snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar()
        counts, revision = table_counts(conn), revision_of(conn)
        skipped = [f"--exclude-table-data={name}" for name in sorted(dump._NOT_EXPORTED)]
        command = ["pg_dump", "-Fc", "--no-owner", "--no-privileges", f"--snapshot={snapshot}"]
        done = subprocess.run(
            [*command, *skipped, "-f", str(work), "--dbname", dialect.conninfo()],
            capture_output=True,
            text=True,
            errors="replace",  # pg_restore quotes damaged data: not always UTF-8
        )
    if done.returncode != 0:
        raise BackupFailed(f"pg_dump failed: {done.stderr.strip()}")
    check_pg_dump_file(work)
    return counts, revision


def check_pg_dump_file(path: Path) -> None:
    """``pg_restore --list`` reads the archive's table of contents without error."""
    done = subprocess.run(
        ["pg_restore", "--list", str(path)], capture_output=True, text=True, errors="replace"
    )
    if done.returncode != 0 or "TABLE DATA" not in done.stdout:
        raise BackupFailed(f"pg_restore cannot read {path.name}: {done.stderr.strip()}")


VERIFY_PREFIX = "agentkeep_verify_"


class NoScratchDatabase(BackupFailed):
    """No scratch database to restore a ``pg_dump`` archive into (not a fault of the archive)."""


def restore_pg_dump_and_count(path: Path, server: str) -> dict[str, int]:
    """Restore a ``pg_dump`` archive into a scratch database on ``server``; its row counts.

    ``server``: a libpq connection string or URL of any database on the
    PostgreSQL server to use (its role needs CREATEDB). The scratch database
    is dropped afterwards, whatever happens.
    """
    name = f"{VERIFY_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(server, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise NoScratchDatabase(f"the PostgreSQL server cannot be reached ({exc})") from exc
    with admin:
        try:
            admin.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
        except psycopg.Error as exc:
            raise NoScratchDatabase(f"no scratch database could be created ({exc})") from exc
        try:
            scratch = make_conninfo(server, dbname=name)
            done = subprocess.run(
                [
                    "pg_restore",
                    "--no-owner",
                    "--no-privileges",
                    "--single-transaction",
                    "--exit-on-error",
                    "--dbname",
                    scratch,
                    str(path),
                ],
                capture_output=True,
                text=True,
                errors="replace",  # pg_restore quotes damaged data: not always UTF-8
            )
            if done.returncode != 0:
                raise BackupFailed(
                    f"pg_restore of {path.name} into a scratch database failed: "
                    f"{done.stderr.strip()[:2000]}"
                )
            engine = sa.create_engine(
                "postgresql+psycopg://", creator=lambda: psycopg.connect(scratch)
            )
            try:
                with engine.connect() as conn:
                    return table_counts(conn)
            finally:
                engine.dispose()
        finally:
            admin.execute(
                psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
            )


def _write_jsonl(
    dialect: Dialect, work: Path, compression: str | None
) -> tuple[dict[str, int], str | None]:
    with (
        snapshot_connection(dialect) as conn,
        dump.open_text(work, "w", compression=compression) as out,
    ):
        revision = revision_of(conn)
        selection = [(t, ()) for t in dump.tables_in(conn)]
        counts = dump.write_dump(conn, out, selection, {"revision": revision, "filters": {}})
    return counts, revision


_WRITERS = {"sqlite": _write_sqlite, "pg_dump": _write_pg_dump, "jsonl": _write_jsonl}
