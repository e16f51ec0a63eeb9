"""Health: healthy at head on every backend; unreachable or missing databases reported, not raised."""

from __future__ import annotations

import socket
from typing import Any

import psycopg
import pytest
from psycopg import sql

import agentkeep
from agentkeep import AsyncStore, MigrationRequired, Store, StoreUnavailable
from agentkeep.store import migrate
from agentkeep.store._core import Core
from agentkeep.store.dialects import dialect_for_url
from agentkeep.store.store import Store as StoreClass


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unopened(url: str) -> Store:
    """A store on ``url`` without connect()'s schema check (as if the database went away later)."""
    return StoreClass(Core(dialect_for_url(url), url))


def test_healthy_at_head(store: Store) -> None:
    h = store.health()
    assert h.healthy is True
    assert h.backend == store.backend
    assert h.database["connected"] is True
    assert h.database["revision"] == migrate.head_revision()
    assert isinstance(h.database["latency_ms"], float) and h.database["latency_ms"] >= 0
    assert "error" not in h.database
    assert h.checked_at.tzinfo is not None
    assert h.database["writable"] is True and "writable_error" not in h.database
    assert h.database["size_bytes"] > 0


async def test_async_health(astore: AsyncStore) -> None:
    h = await astore.health()
    assert h.healthy and h.database["revision"] == migrate.head_revision()


def test_connect_to_closed_port_raises_store_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test"
    with pytest.raises(StoreUnavailable):
        agentkeep.connect(url)
    with pytest.raises(StoreUnavailable):
        agentkeep.connect(url, auto_migrate=True)


def test_unreachable_postgres_is_reported_unhealthy() -> None:
    store = _unopened(f"postgresql://postgres@127.0.0.1:{_closed_port()}/test")
    try:
        h = store.health()
    finally:
        store.close()
    assert h.healthy is False
    assert h.backend == "postgresql"
    assert h.database["connected"] is False
    assert h.database["revision"] is None
    assert h.database["error"]


def test_dropped_postgres_database_is_reported_unhealthy(postgres_server: Any) -> None:
    url = postgres_server.new_database()
    store = agentkeep.connect(url, auto_migrate=True)
    try:
        assert store.health().healthy
        name = url.rsplit("/", 1)[1]
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        h = store.health()
        assert h.healthy is False
        assert h.database["connected"] is False
        assert h.database["error"]
    finally:
        store.close()


def test_sqlite_without_schema_is_unhealthy(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    with pytest.raises(MigrationRequired):
        agentkeep.connect(url, auto_migrate=False)
    store = _unopened(url)
    try:
        h = store.health()
    finally:
        store.close()
    assert h.healthy is False
    assert h.database["connected"] is True
    assert h.database["revision"] is None


def test_sqlite_file_health_after_reopen(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/again.db"
    agentkeep.connect(url).close()
    with agentkeep.connect(url, auto_migrate=False) as store:
        assert store.health().healthy


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_closed_store_is_unhealthy(kind: str, tmp_path: object, postgres_server: Any) -> None:
    url = f"sqlite:///{tmp_path}/closed.db" if kind == "sqlite" else postgres_server.new_database()
    store = agentkeep.connect(url, auto_migrate=True)
    store.close()
    h = store.health()
    assert h.healthy is False
    assert h.database["connected"] is False


def test_read_only_postgres_is_reported_not_writable(postgres_server: Any) -> None:
    url = postgres_server.new_database()
    agentkeep.connect(url, auto_migrate=True).close()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with agentkeep.connect(url) as store:
        h = store.health()
    assert h.healthy is False and h.database["connected"] is True
    assert h.database["writable"] is False
    assert "read-only" in h.database["writable_error"]
