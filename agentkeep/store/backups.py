"""``store.backups``: take, list, verify and prune backups of the whole database.

The catalog is the ``backups`` table (rows of the ``_system`` tenant: a
backup covers every tenant); each file also has a manifest beside it, so
``catalog(DIR)`` can list a directory again without the database. Files are
written by :mod:`agentkeep.store.backup_files`. Restoring is
``agentkeep.lifecycle.restore`` (it opens another database).
"""

from __future__ import annotations

import builtins
import json
import shutil
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.config import Settings
from agentkeep.errors import BackupFailed, InvalidInput, NotFound
from agentkeep.models import Backup, BackupCheck
from agentkeep.models.common import from_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store.backup_files import (
    NoScratchDatabase,
    check_pg_dump_file,
    check_sqlite_file,
    file_sha256,
    manifest_path,
    read_manifest,
    restore_pg_dump_and_count,
    take_backup,
)
from agentkeep.store.compression import DecompressError, compression_of_file, open_binary
from agentkeep.store.dialects import PostgresDialect
from agentkeep.store.dump import FORMAT, open_text
from agentkeep.store.schema import backups as t

__all__ = ["SYSTEM_TENANT", "Backups", "record_manifest", "verify_file"]

SYSTEM_TENANT = "_system"
_TIMES = ("started_at", "finished_at", "verified_at")


def _to_backup(row: Mapping[Any, Any]) -> Backup:
    data = {k: row[k] for k in Backup.model_fields if k in row}
    for name in _TIMES:
        data[name] = from_micros(row.get(name))
    return Backup.model_validate(data)


def record_manifest(
    conn: Connection, manifest: Mapping[str, Any], status: str = "complete"
) -> Backup:
    """Add a backup described by its manifest to the catalog (kept if already there)."""
    values = {
        "tenant_id": SYSTEM_TENANT,
        "id": manifest["id"],
        "kind": manifest["kind"],
        "path": manifest["path"],
        "size_bytes": manifest["size_bytes"],
        "sha256": manifest["sha256"],
        "counts": manifest["counts"],
        "revision": manifest.get("revision"),
        "trigger": manifest.get("trigger", "manual"),
        "status": status,
        "compression": manifest.get("compression"),
        "started_at": manifest["started_at"],
        "finished_at": manifest["finished_at"],
        "verified_at": None,
    }
    found = (
        conn.execute(sa.select(t).where(t.c.tenant_id == SYSTEM_TENANT, t.c.id == values["id"]))
        .mappings()
        .first()
    )
    if found is not None:
        return _to_backup(found)
    conn.execute(sa.insert(t).values(values))
    return _to_backup(values)


def verify_file(
    path: str | Path, manifest: Mapping[str, Any] | None = None, *, server: str | None = None
) -> BackupCheck:
    """Open a backup file, check its integrity, and compare size, sha256 and counts with its manifest.

    A ``pg_dump`` archive is restored into a scratch database on the
    PostgreSQL ``server`` (a URL or connection string) and its rows counted;
    without a server only its table of contents is read (``pg_restore --list``).
    """
    path = Path(path)
    manifest = manifest if manifest is not None else read_manifest(path)
    kind = str(manifest.get("kind"))
    problems = _file_problems(path, manifest)
    counts: dict[str, int] = {}
    method = _METHODS.get(kind, kind)
    if kind == "pg_dump" and server is None:
        method = "pg_restore --list (table of contents only; no server to restore into)"
    if not problems:
        try:
            counts = _open_and_count(path, kind, manifest, server)
        except NoScratchDatabase as exc:
            check_pg_dump_file(path)
            counts = dict(manifest.get("counts") or {})
            method = f"pg_restore --list (table of contents only: {exc})"
        except BackupFailed as exc:
            problems.append(str(exc))
    if counts and counts != manifest.get("counts"):
        problems.append(f"row counts {counts} differ from the manifest's {manifest.get('counts')}")
    return BackupCheck(
        ok=not problems,
        backup_id=manifest.get("id"),
        path=str(path),
        kind=kind,
        problems=problems,
        counts=counts,
        method=method,
    )


def _file_problems(path: Path, manifest: Mapping[str, Any]) -> list[str]:
    if not path.is_file():
        return [f"the file {path} is missing"]
    size = path.stat().st_size
    if size != manifest.get("size_bytes"):
        return [f"size is {size} bytes, the manifest says {manifest.get('size_bytes')}"]
    if file_sha256(path) != manifest.get("sha256"):
        return ["sha256 differs from the manifest: the file changed or is corrupt"]
    return []


_METHODS = {
    "sqlite": "opened as a SQLite database: PRAGMA integrity_check, rows counted",
    "pg_dump": "pg_restore into a scratch database, rows counted",
    "jsonl": "every line read and counted against its header",
}


def _open_and_count(
    path: Path, kind: str, manifest: Mapping[str, Any], server: str | None
) -> dict[str, int]:
    if kind == "pg_dump":
        check_pg_dump_file(path)
        if server is None:
            return dict(manifest.get("counts") or {})
        return restore_pg_dump_and_count(path, server)
    if kind == "jsonl":
        return _count_jsonl(path)
    if kind != "sqlite":
        raise BackupFailed(f"unknown backup kind {kind!r}")
    with tempfile.TemporaryDirectory(prefix="agentkeep-verify-") as tmp:
        plain = unpacked_sqlite(path, manifest, Path(tmp))
        return check_sqlite_file(plain)[0]


def unpacked_sqlite(path: Path, manifest: Mapping[str, Any], folder: Path) -> Path:
    """A SQLite backup as a plain database file in ``folder`` (a copy: the backup stays as it is)."""
    target = folder / "backup.db"
    try:
        with (
            open_binary(path, "rb", compression_of_file(path)) as src,
            open(target, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
    except DecompressError as exc:
        raise BackupFailed(f"{path.name} cannot be decompressed ({exc})") from exc
    return target


def _count_jsonl(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        with open_text(path, "r") as lines:
            header = json.loads(next(lines))
            if header.get("format") != FORMAT:
                raise BackupFailed(f"{path.name} does not start with an {FORMAT} header")
            for line in lines:
                table = json.loads(line)["table"]
                counts[table] = counts.get(table, 0) + 1
    except (*DecompressError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise BackupFailed(f"{path.name} is not a complete logical dump ({exc!r})") from exc
    for table, n in header.get("counts", {}).items():
        counts.setdefault(table, 0)
        if counts[table] != n:
            raise BackupFailed(
                f"{path.name}: {table} has {counts[table]} rows, its header says {n}"
            )
    return counts


class Backups(Resource):
    """``store.backups``: online backups of the whole database, with a catalog."""

    kind = "backup"

    def create(
        self,
        *,
        to: str | Path | None = None,
        trigger: str = "manual",
        compress: bool | str | None = False,
        kind: str | None = None,
    ) -> Backup:
        """Take a verified backup into ``to`` (default ``AGENTKEEP_BACKUP_DIR``) and catalogue it.

        ``kind``: default ``sqlite`` for a SQLite file, ``pg_dump`` for
        PostgreSQL when it is on PATH, else ``jsonl``. ``compress``:
        ``"gzip"`` (or True) or ``"zstd"`` (``pg_dump`` archives are
        compressed by pg_dump already).
        """
        if trigger not in ("manual", "scheduled", "pre-upgrade"):
            raise InvalidInput("must be manual, scheduled or pre-upgrade", field="trigger")
        directory = to if to is not None else Settings.from_env().backup_dir
        manifest = take_backup(
            self._core.dialect, directory, trigger=trigger, compress=compress, kind=kind
        )
        with self._core.write("cataloguing a backup") as conn:
            return record_manifest(conn, manifest)

    def list(self, *, limit: int = 100) -> list[Backup]:
        """Catalogued backups, newest first."""
        stmt = (
            sa.select(t)
            .where(t.c.tenant_id == SYSTEM_TENANT)
            .order_by(t.c.finished_at.desc(), t.c.id.desc())
            .limit(limit)
        )
        with self._core.read("listing backups") as conn:
            return [_to_backup(r) for r in conn.execute(stmt).mappings()]

    def get(self, backup_id: str) -> Backup:
        with self._core.read() as conn:
            row = (
                conn.execute(
                    sa.select(t).where(t.c.tenant_id == SYSTEM_TENANT, t.c.id == backup_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound("backup", backup_id)
        return _to_backup(row)

    def verify(self, backup: str | Path) -> BackupCheck:
        """Check a backup by catalog id or by path; a catalogued one gets its status updated."""
        name = str(backup)
        if name.startswith("bak_") and not Path(name).exists():
            path = Path(self.get(name).path)
        else:
            path = Path(name)
        try:
            manifest = read_manifest(path)
        except InvalidInput as exc:
            return BackupCheck(
                ok=False,
                backup_id=None,
                path=str(path),
                kind="unknown",
                problems=[str(exc)],
                counts={},
            )
        dialect = self._core.dialect
        server = dialect.conninfo() if isinstance(dialect, PostgresDialect) else None
        check = verify_file(path, manifest, server=server)
        status = "verified" if check.ok else ("missing" if not path.is_file() else "corrupt")
        with self._core.write("recording a backup check") as conn:
            conn.execute(
                sa.update(t)
                .where(t.c.tenant_id == SYSTEM_TENANT, t.c.id == manifest.get("id"))
                .values(status=status, verified_at=utcnow_micros())
            )
        return check

    def catalog(self, directory: str | Path) -> builtins.list[Backup]:
        """Add every backup in ``directory`` (found by its manifest) that the catalog lacks."""
        added: builtins.list[Backup] = []
        with self._core.write("cataloguing backups") as conn:
            for item in sorted(Path(directory).glob("*.json")):
                try:
                    manifest = read_manifest(item)
                except InvalidInput:
                    continue
                manifest = {**manifest, "path": str(item.with_suffix("").resolve())}
                added.append(record_manifest(conn, manifest))
        return added

    def prune(
        self,
        *,
        keep_days: int | None = None,
        keep_last: int | None = None,
        dry_run: bool = False,
    ) -> builtins.list[Backup]:
        """Delete catalogued backups (file, manifest, row) beyond both limits; returns them.

        A backup goes when it is not among the newest ``keep_last`` and is
        older than ``keep_days`` days (a limit left out does not protect).
        """
        for value, field in ((keep_days, "keep_days"), (keep_last, "keep_last")):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidInput("must be a non-negative integer", field=field)
        if keep_days is None and keep_last is None:
            raise InvalidInput("give keep_days, keep_last or both", field="keep_days")
        newest = self.list(limit=1_000_000)
        cutoff = (
            None
            if keep_days is None
            else utcnow_micros() - int(timedelta(days=keep_days).total_seconds() * 1e6)
        )
        doomed = [
            b
            for i, b in enumerate(newest)
            if (keep_last is None or i >= keep_last)
            and (cutoff is None or int(b.finished_at.timestamp() * 1e6) < cutoff)
        ]
        if dry_run or not doomed:
            return doomed
        for backup in doomed:
            Path(backup.path).unlink(missing_ok=True)
            manifest_path(backup.path).unlink(missing_ok=True)
        with self._core.write("pruning backups") as conn:
            conn.execute(
                sa.delete(t).where(
                    t.c.tenant_id == SYSTEM_TENANT, t.c.id.in_([b.id for b in doomed])
                )
            )
        return doomed
