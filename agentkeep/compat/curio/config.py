"""``DatabaseConfig``: which curio backend to use, from code or ``DB_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from agentkeep.errors import InvalidInput

from .base import BasePersistence

__all__ = ["DatabaseConfig"]

_TYPES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "sqlite": "sqlite",
    "memory": "memory",
    "inmemory": "memory",
}


@dataclass
class DatabaseConfig:
    """Database settings; :meth:`get_persistence` opens the configured backend.

    Environment variables (:meth:`from_env`): ``DB_TYPE`` (``postgres``,
    ``sqlite`` or ``memory``), ``DB_HOST``, ``DB_PORT``, ``DB_NAME``,
    ``DB_USER``, ``DB_PASSWORD``, ``DB_SCHEMA``, ``DB_PATH``,
    ``DB_MIN_CONNECTIONS``, ``DB_MAX_CONNECTIONS``.
    """

    db_type: str = "sqlite"
    host: str = "localhost"
    port: int = 5432
    database: str = "agent_sdk"
    user: str = "postgres"
    password: str = ""
    schema: str = "agent_sdk"
    sqlite_path: str = "agent_sdk.db"
    min_connections: int = 1
    max_connections: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DatabaseConfig:
        """The configuration from ``DB_*`` environment variables (or ``env``)."""
        e = os.environ if env is None else env

        def number(name: str, default: int) -> int:
            raw = e.get(name) or str(default)
            try:
                return int(raw)
            except ValueError:
                raise InvalidInput(f"must be an integer, not {raw!r}", field=name) from None

        return cls(
            db_type=(e.get("DB_TYPE") or "sqlite").lower(),
            host=e.get("DB_HOST") or "localhost",
            port=number("DB_PORT", 5432),
            database=e.get("DB_NAME") or "agent_sdk",
            user=e.get("DB_USER") or "postgres",
            password=e.get("DB_PASSWORD", ""),
            schema=e.get("DB_SCHEMA") or "agent_sdk",
            sqlite_path=e.get("DB_PATH") or "agent_sdk.db",
            min_connections=number("DB_MIN_CONNECTIONS", 1),
            max_connections=number("DB_MAX_CONNECTIONS", 10),
        )

    def get_persistence(self) -> BasePersistence:
        """Open the configured backend (unknown ``db_type``: InvalidInput, not memory)."""
        from .backends import InMemoryPersistence, PostgresPersistence, SQLitePersistence

        kind = _TYPES.get(self.db_type.lower())
        if kind == "postgres":
            return PostgresPersistence(
                host=self.host,
                port=self.port,
                database=self.database,
                user=self.user,
                password=self.password,
                schema=self.schema,
                min_connections=self.min_connections,
                max_connections=self.max_connections,
            )
        if kind == "sqlite":
            return SQLitePersistence(self.sqlite_path)
        if kind == "memory":
            return InMemoryPersistence()
        raise InvalidInput(
            f"unknown database type {self.db_type!r}; use postgres, sqlite or memory",
            field="db_type",
        )
