"""Schema revisions through Alembic: check, upgrade, report.

``upgrade`` holds a migration lock (an advisory lock on PostgreSQL, a file lock
beside a SQLite file) and re-reads the revision under it, so processes that
open the same fresh database at the same moment all succeed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from agentkeep.config import Settings
from agentkeep.errors import MigrationRequired, SchemaError
from agentkeep.store import dump
from agentkeep.store._errors import translating
from agentkeep.store.backup_files import take_backup
from agentkeep.store.backups import record_manifest
from agentkeep.store.dialects import Dialect, SQLiteDialect

__all__ = ["check_revision", "current_revision", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None
    return head


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current_revision(dialect: Dialect) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with translating("reading the schema revision"), dialect.engine.connect() as conn:
        return _current(conn)


def _known(revision: str) -> bool:
    try:
        return _script().get_revision(revision) is not None
    except Exception:
        return False


def check_revision(dialect: Dialect, *, upgrade_command: str = "agentkeep db upgrade") -> str:
    """Raise unless the database is exactly at head; returns the revision."""
    current = current_revision(dialect)
    head = head_revision()
    if current == head:
        return current
    if current is None:
        raise MigrationRequired(
            f"the {dialect.describe()} database has no agentkeep schema; run `{upgrade_command}` "
            "or connect with auto_migrate=True"
        )
    if not _known(current):
        raise SchemaError(
            f"the database is at revision {current!r}, unknown to this agentkeep (head {head!r}): "
            "it was written by a newer agentkeep; upgrade agentkeep, the database is left untouched"
        )
    raise MigrationRequired(
        f"the database is at revision {current!r}, behind {head!r}; run `{upgrade_command}` "
        "or connect with auto_migrate=True"
    )


def _has_rows(conn: Connection) -> bool:
    for table in dump.tables_in(conn):
        if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None:
            return True
    return False


def _backup_first(
    dialect: Dialect, conn: Connection, backup_dir: str | None
) -> dict[str, Any] | None:
    """A backup of a database that holds rows, taken before its schema changes."""
    if isinstance(dialect, SQLiteDialect) and dialect.memory:
        return None
    has_rows = _has_rows(conn)
    if conn.in_transaction():
        conn.rollback()
    if not has_rows:
        return None
    directory = backup_dir or Settings.from_env().backup_dir
    return take_backup(dialect, directory, trigger="pre-upgrade")


def upgrade(
    dialect: Dialect, revision: str = "head", *, backup: bool = True, backup_dir: str | None = None
) -> str:
    """Bring the database to ``revision``; safe to call from many processes at once.

    A database that holds rows is backed up first (into ``backup_dir``,
    default ``AGENTKEEP_BACKUP_DIR``), unless ``backup=False``; the backup
    is catalogued once the schema has the catalog.
    """
    with (
        translating("upgrading the schema"),
        dialect.engine.connect() as conn,
        dialect.migration_lock(conn),
    ):
        current = _current(conn)
        if conn.in_transaction():
            conn.rollback()
        if current is not None and not _known(current):
            raise SchemaError(
                f"the database is at revision {current!r}, unknown to this agentkeep: "
                "it was written by a newer agentkeep and is left untouched"
            )
        if current != head_revision() or revision != "head":
            manifest = _backup_first(dialect, conn, backup_dir) if backup and current else None
            with dialect.schema_change(conn):  # SQLite: foreign keys off, back on after commit
                command.upgrade(_config(conn), revision)
                if conn.in_transaction():
                    conn.commit()
            if manifest is not None and sa.inspect(conn).has_table("backups"):
                record_manifest(conn, manifest)
                conn.commit()
        result = _current(conn)
        if conn.in_transaction():
            conn.rollback()
    return result or ""
