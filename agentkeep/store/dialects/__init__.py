"""What differs between SQLite and PostgreSQL: one module per dialect.

Business code asks for capabilities (``skip_locked``, ``write_guard``,
``serialize_appends``, ``migration_lock``, ``notify``/``listen``,
``session_locks``, ``message_sql``, ``own_connections``), never for a
dialect's name.
"""

from __future__ import annotations

from typing import Any

from agentkeep.config import normalize_url
from agentkeep.errors import InvalidInput
from agentkeep.store.dialects.base import Dialect, Listener, OwnConnections, lock_key
from agentkeep.store.dialects.postgresql import PostgresDialect
from agentkeep.store.dialects.sqlite import SQLiteDialect

__all__ = [
    "DIALECTS",
    "Dialect",
    "Listener",
    "OwnConnections",
    "PostgresDialect",
    "SQLiteDialect",
    "dialect_for_url",
    "lock_key",
]

DIALECTS: dict[str, type[Dialect]] = {"sqlite": SQLiteDialect, "postgresql": PostgresDialect}
"""Our dialect classes by SQLAlchemy dialect name."""


def dialect_for_url(url: str, **kwargs: Any) -> Dialect:
    """The dialect for a database URL (``memory://``, ``sqlite:///...``, ``postgresql://...``).

    The seeds' forms are accepted too (:func:`agentkeep.config.normalize_url`).
    """
    url = normalize_url(url)
    if url.startswith(("memory://", "sqlite:")):
        return SQLiteDialect(url, **kwargs)
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        if url.startswith("postgres:"):
            url = "postgresql:" + url[len("postgres:") :]
        return PostgresDialect(url, **kwargs)
    raise InvalidInput(
        f"unsupported database URL {url!r}; use memory://, sqlite:///path or postgresql://...",
        field="url",
    )
