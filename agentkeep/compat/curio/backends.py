"""The curio backends: SQLite file, PostgreSQL (pooled, in a schema) and memory."""

from __future__ import annotations

import re

import psycopg
import sqlalchemy as sa
from psycopg import sql

import agentkeep
from agentkeep.errors import InvalidInput, StoreUnavailable
from agentkeep.store.store import DEFAULT_TENANT

from ._store import StorePersistence

__all__ = ["InMemoryPersistence", "PostgresPersistence", "SQLitePersistence"]

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class SQLitePersistence(StorePersistence):
    """An agentkeep SQLite file (WAL, one writer, many readers); the schema is created on open.

    ``db_path`` (alias ``path``) defaults to ``agent_sdk.db`` in the current
    directory; its folder is created if missing.
    """

    def __init__(
        self,
        db_path: str = "agent_sdk.db",
        *,
        path: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        self.db_path = path if path is not None else db_path
        self.url = f"sqlite:///{self.db_path}"
        super().__init__(
            agentkeep.connect(self.url, tenant=tenant, auto_migrate=True), owns_store=True
        )

    def initialize_schema(self) -> None:
        """Bring the file to agentkeep's current schema (already done on open)."""
        agentkeep.connect(self.url, auto_migrate=True).close()


class PostgresPersistence(StorePersistence):
    """agentkeep on PostgreSQL, pooled, with its tables in ``schema``.

    The schema is created if missing and the tables are created or upgraded
    on open. ``min_connections`` connections are kept in the pool and at most
    ``max_connections`` are open at once.
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 5432,
        database: str = "agent_sdk",
        user: str = "postgres",
        password: str = "",
        schema: str = "agent_sdk",
        min_connections: int = 1,
        max_connections: int = 10,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise InvalidInput(
                "must be a plain identifier (letters, digits, underscores; at most 63)",
                field="schema",
            )
        if min_connections < 0 or max_connections < 1 or max_connections < min_connections:
            raise InvalidInput(
                "need 0 <= min_connections <= max_connections and max_connections >= 1",
                field="max_connections",
            )
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
        self.schema = schema
        self.min_connections = min_connections
        self.max_connections = max_connections
        # Unquoted, as PostgreSQL folds it in search_path and in CREATE SCHEMA alike.
        self.url = sa.engine.URL.create(
            "postgresql",
            username=user or None,
            password=password or None,
            host=host,
            port=port,
            database=database,
            query={"options": f"-csearch_path={schema}"},
        ).render_as_string(hide_password=False)
        self._create_schema()
        pool_size = max(min_connections, 1)
        super().__init__(
            agentkeep.connect(
                self.url,
                tenant=tenant,
                auto_migrate=True,
                pool_size=pool_size,
                max_overflow=max_connections - pool_size,
            ),
            owns_store=True,
        )

    def _create_schema(self) -> None:
        try:
            with psycopg.connect(
                host=self.host,
                port=self.port,
                dbname=self.database,
                user=self.user or None,
                password=self.password or None,
                autocommit=True,
                connect_timeout=10,
            ) as conn:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.SQL(self.schema)))
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot create schema {self.schema!r} in {self.host}:{self.port}/"
                f"{self.database}: {exc}"
            ) from exc

    def initialize_schema(self) -> None:
        """Create the schema if missing and bring its tables to agentkeep's current revision."""
        self._create_schema()
        agentkeep.connect(self.url, auto_migrate=True, pool_size=1, max_overflow=0).close()


class InMemoryPersistence(StorePersistence):
    """agentkeep in memory (SQLite ``memory://``): everything is lost with the process."""

    def __init__(self, *, tenant: str = DEFAULT_TENANT) -> None:
        self._tenant = tenant
        super().__init__(agentkeep.connect("memory://", tenant=tenant), owns_store=True)

    def clear_all(self) -> None:
        """Forget everything stored."""
        old = self.store
        self.store = agentkeep.connect("memory://", tenant=self._tenant)
        old.close()
