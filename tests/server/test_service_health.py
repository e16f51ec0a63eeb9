"""``/healthz`` and ``/readyz``, and 503 when the database goes away."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest
from live import LiveService, StartService
from psycopg import sql

import agentkeep
from agentkeep.store import migrate

pytestmark = pytest.mark.slow


def test_healthz_and_readyz_need_no_key(service: LiveService) -> None:
    health = httpx.get(f"{service.base_url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"{service.base_url}/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["revision"] == migrate.head_revision()
    assert body["backend"] in ("sqlite", "postgresql")


def test_docs_are_served(service: LiveService) -> None:
    assert httpx.get(f"{service.base_url}/docs").status_code == 200
    spec = httpx.get(f"{service.base_url}/openapi.json").json()
    assert "/v1/assistants" in spec["paths"]
    assert "/v1/conversations/{conversation_id}/items" in spec["paths"]


def test_readyz_at_an_unexpected_revision(start_service: StartService) -> None:
    import sqlalchemy as sa

    service = start_service("sqlite")
    engine = sa.create_engine(service.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    try:
        ready = httpx.get(f"{service.base_url}/readyz")
        assert ready.status_code == 503
        error = ready.json()["error"]
        assert error["code"] == "not_ready" and "9999_future" in error["message"]
        assert httpx.get(f"{service.base_url}/healthz").status_code == 200
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :v"),
                {"v": migrate.head_revision()},
            )
        engine.dispose()
    assert httpx.get(f"{service.base_url}/readyz").status_code == 200


def test_database_unreachable_is_503(start_service: StartService) -> None:
    service = start_service("postgres")
    client = service.http("acme")
    assert client.post("/v1/assistants", json={"model": "m"}).status_code == 200
    name = service.database_url.rsplit("/", 1)[1]
    admin = service.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    for _ in range(3):  # pooled connections were cut: every attempt is a clean 503
        response = client.get("/v1/assistants")
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "database_unavailable"
        # The driver's text (host, port, database) goes to the log, not to the client.
        assert error["message"] == "The database is unavailable; retry later."
        assert response.headers["retry-after"] == "2"
    response = client.post("/v1/threads", json={})
    assert response.status_code == 503
    ready = httpx.get(f"{service.base_url}/readyz")
    assert ready.status_code == 503 and "127.0.0.1" not in ready.text
    assert httpx.get(f"{service.base_url}/healthz").status_code == 200
    assert f'database "{name}" does not exist' in service.log()


def test_database_url_is_honoured_when_agentkeep_database_url_is_unset(
    start_service: StartService, tmp_path: Path
) -> None:
    target = tmp_path / "from-database-url.db"
    service = start_service("sqlite", AGENTKEEP_DATABASE_URL="", DATABASE_URL=f"sqlite:///{target}")
    created = service.http("acme").post("/v1/assistants", json={"model": "m"}).json()
    with agentkeep.connect(f"sqlite:///{target}") as store:
        assert store.tenant("acme").agents.get(created["id"]).model == "m"
