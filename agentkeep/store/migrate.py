"""Schema revisions through Alembic: check, upgrade, report.

``upgrade`` holds a migration lock (an advisory lock on PostgreSQL, a file lock
beside a SQLite file) and re-reads the revision under it, so processes that
open the same fresh database at the same moment all succeed.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from agentkeep.errors import MigrationRequired, SchemaError
from agentkeep.store._dialects import Dialect
from agentkeep.store._errors import translating

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


def upgrade(dialect: Dialect, revision: str = "head") -> str:
    """Bring the database to ``revision``; safe to call from many processes at once."""
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
            with dialect.schema_change(conn):  # SQLite: foreign keys off, back on after commit
                command.upgrade(_config(conn), revision)
                if conn.in_transaction():
                    conn.commit()
        result = _current(conn)
        if conn.in_transaction():
            conn.rollback()
    return result or ""
