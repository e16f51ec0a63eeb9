"""One fixture, every backend: memory, a SQLite file and PostgreSQL.

PostgreSQL is the server at ``AGENTKEEP_TEST_POSTGRES_URL`` (default
127.0.0.1:5432/test). Each test session creates its own database there and
drops it at the end; each test gets a tenant of its own, so tests never see
each other's rows. If PostgreSQL cannot be reached the tests fail, never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql

import agentkeep
from agentkeep import AsyncStore, Store
from agentkeep.lifecycle.schedule import BackupScheduler

BACKENDS = ["memory", "sqlite", "postgres"]
POSTGRES_URL = os.environ.get(
    "AGENTKEEP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _admin_conninfo() -> str:
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


class PostgresServer:
    """Creates throw-away databases on the test server."""

    def __init__(self) -> None:
        self.created: list[str] = []
        try:
            with psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            pytest.fail(
                f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc}); start it or set "
                "AGENTKEEP_TEST_POSTGRES_URL. PostgreSQL tests never skip.",
                pytrace=False,
            )

    def new_database(self) -> str:
        name = f"agentkeep_t_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        base = POSTGRES_URL.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def drop_all(self) -> None:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@pytest.fixture(autouse=True)
def _no_daily_backup_in_process() -> Iterator[None]:
    """An app a test starts in this process does not start the daily backup scheduler.

    Its default slot is 02:00, and a scheduler that starts within ten minutes after
    its slot takes that backup at once (a service restarted at 02:01 still backs up):
    every app a test starts in that window would back up the test's database, into
    ``./data/backups`` of the checkout, while the test runs. The schedule's tests run
    it themselves (``run_slot``) or in a service process that asks for it
    (``AGENTKEEP_BACKUP_ENABLED``; ``tests/server/live.py`` turns it off otherwise).
    """
    # Its own patch, not the ``monkeypatch`` fixture: an autouse fixture that took that
    # would set it up before the test's other fixtures, and so undo the test's patches
    # only after those fixtures' teardown (an app's shutdown under a test's refusals).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BackupScheduler, "start", lambda self: None)
        yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A database at head, shared by the session's tests (each uses its own tenant)."""
    url = postgres_server.new_database()
    agentkeep.connect(url, auto_migrate=True).close()
    return url


@pytest.fixture(scope="session")
def _postgres_store(postgres_url: str) -> Iterator[Store]:
    store = agentkeep.connect(postgres_url)
    yield store
    store.close()


def _tenant() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: object, request: pytest.FixtureRequest) -> str:
    """A database URL for ``backend`` (a fresh file for SQLite)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/agentkeep.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(backend: str, db_url: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A store on ``backend``, scoped to a tenant of this test's own."""
    if backend == "postgres":
        shared: Store = request.getfixturevalue("_postgres_store")
        yield shared.tenant(_tenant())
        return
    opened = agentkeep.connect(db_url)
    yield opened.tenant(_tenant())
    opened.close()


@pytest.fixture
def own_db(backend: str, store: Store, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A store whose database no other test uses (for operations across tenants, such as
    a RunWorker's claims): the ``store`` fixture itself but on PostgreSQL, whose database
    ``store`` shares with the other tests."""
    if backend != "postgres":
        yield store
        return
    url = request.getfixturevalue("postgres_server").new_database()
    opened = agentkeep.connect(url, auto_migrate=True)
    yield opened.tenant("t_own")
    opened.close()


@pytest.fixture
async def astore(store: Store) -> AsyncIterator[AsyncStore]:
    """The async twin of ``store`` (same database and tenant)."""
    yield AsyncStore(store)
