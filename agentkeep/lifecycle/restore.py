"""Restore a backup file into a database: verified first, all or nothing, upgraded after.

The target must be empty unless ``force`` (then its data is replaced in the
same transaction). A backup taken at an older schema revision is brought to
the current one: a SQLite backup is upgraded on a scratch copy before its
rows are copied in; a ``pg_dump`` archive is restored, then upgraded; a
logical (JSON Lines) backup is upgraded as an import is
(:mod:`agentkeep.lifecycle.upgrade_dump`), then written.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agentkeep
from agentkeep.errors import BackupFailed, Conflict
from agentkeep.lifecycle.copy import copy_into, is_empty, wipe
from agentkeep.lifecycle.importer import import_file
from agentkeep.store import migrate, usage_days
from agentkeep.store.backup_files import read_manifest, table_counts
from agentkeep.store.backups import unpacked_sqlite, verify_file
from agentkeep.store.dialects import PostgresDialect, dialect_for_url
from agentkeep.store.dump import Progress

__all__ = ["RestoreReport", "restore"]


@dataclass
class RestoreReport:
    """What was restored: the backup's kind and revision, the target's revision and rows."""

    kind: str
    from_revision: str | None
    to_revision: str
    counts: dict[str, int] = field(default_factory=dict)


def restore(
    backup: str | Path,
    target_url: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreReport:
    """Verify the backup at ``backup`` (its file or manifest), then restore it into ``target_url``."""
    path = Path(backup)
    if path.suffix == ".json" and not path.name.endswith(".jsonl.json"):
        path = path.with_suffix("")
    manifest = read_manifest(path)
    check = verify_file(path, manifest)
    if not check.ok:
        raise BackupFailed(f"the backup {path} did not verify: " + "; ".join(check.problems))
    kind = str(manifest["kind"])
    restorer = {"sqlite": _restore_sqlite, "pg_dump": _restore_pg_dump, "jsonl": _restore_jsonl}
    counts = restorer[kind](path, manifest, target_url, force, progress)
    return RestoreReport(
        kind=kind,
        from_revision=manifest.get("revision"),
        to_revision=migrate.head_revision(),
        counts=counts,
    )


def _restore_sqlite(
    path: Path, manifest: dict[str, Any], target_url: str, force: bool, progress: Progress | None
) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="agentkeep-restore-") as tmp:
        plain = unpacked_sqlite(path, manifest, Path(tmp))
        source = dialect_for_url(f"sqlite:///{plain}")
        try:
            migrate.upgrade(
                source, backup=False
            )  # an older revision is upgraded on the scratch copy
            with agentkeep.connect(target_url, auto_migrate=True) as target:
                return copy_into(source, target, force=force, progress=progress).counts
        finally:
            source.dispose()


def _restore_jsonl(
    path: Path, manifest: dict[str, Any], target_url: str, force: bool, progress: Progress | None
) -> dict[str, int]:
    with (
        agentkeep.connect(target_url, auto_migrate=True) as target,
        target._core.write("restoring") as conn,
    ):
        if not is_empty(conn):
            if not force:
                raise Conflict("the target database is not empty; use --force to replace its data")
            wipe(conn)
        import_file(target, path, mode="overwrite", progress=progress)
        return table_counts(conn)


def _restore_pg_dump(
    path: Path, manifest: dict[str, Any], target_url: str, force: bool, progress: Progress | None
) -> dict[str, int]:
    target = dialect_for_url(target_url)
    try:
        if not isinstance(target, PostgresDialect):
            raise BackupFailed(
                "a pg_dump backup restores into PostgreSQL only; restore it there, "
                "then `agentkeep copy` it to another backend"
            )
        with target.engine.connect() as conn:
            has_schema = migrate._current(conn) is not None
            if has_schema and not is_empty(conn) and not force:
                raise Conflict("the target database is not empty; use --force to replace its data")
        clean = ["--clean", "--if-exists"] if has_schema else []
        done = subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                *clean,
                "--dbname",
                target.conninfo(),
                str(path),
            ],
            capture_output=True,
            text=True,
            errors="replace",  # pg_restore quotes damaged data: not always UTF-8
        )
        if done.returncode != 0:
            raise BackupFailed(
                f"pg_restore failed (the target is unchanged): {done.stderr.strip()}"
            )
        migrate.upgrade(target, backup=False)
        with target.engine.begin() as conn:
            usage_days.refresh_all(conn)  # derived, not in the archive: summed from its rows
        with target.engine.connect() as conn:
            return table_counts(conn)
    finally:
        target.dispose()
