"""Schema migrations: empty -> head, head == declared schema, refusal rules, races, upgrades in place.

Run on a SQLite file and on a fresh PostgreSQL database each (``memory://``
has nothing to migrate in place).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from _multiproc import run_together
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import agentkeep
from agentkeep import MigrationRequired, SchemaError
from agentkeep.store import migrate
from agentkeep.store.dialects import Dialect, dialect_for_url
from agentkeep.store.schema import metadata

pytestmark = pytest.mark.slow

FUTURE_REVISION = "ffff_from_a_newer_agentkeep"


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fresh.db"
    server: Any = request.getfixturevalue("postgres_server")
    return str(server.new_database())


@pytest.fixture
def dialect(fresh_url: str) -> Iterator[Dialect]:
    d = dialect_for_url(fresh_url)
    yield d
    d.dispose()


def _tables(d: Dialect) -> set[str]:
    return set(sa.inspect(d.engine).get_table_names())


def _version(d: Dialect) -> list[str]:
    with d.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]


def _set_version(d: Dialect, revision: str) -> None:
    with d.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def _fill(url: str) -> list[tuple[str, int, str]]:
    """Write a few objects; return the messages as (id, seq, text)."""
    with agentkeep.connect(url, auto_migrate=True) as store:
        agent = store.agents.create(model="gpt-test", name="keeper")
        session = store.sessions.create(agent_id=agent.id, title="kept")
        for i in range(5):
            store.messages.append(session.id, "user" if i % 2 == 0 else "assistant", f"m{i}")
        return _messages(store, session.id)


def _messages(store: agentkeep.Store, session_id: str) -> list[tuple[str, int, str]]:
    page = store.messages.list(session_id, limit=1000)
    return [(m.id, m.seq, m.text) for m in page.items]


def test_empty_database_upgrades_to_head(dialect: Dialect) -> None:
    assert migrate.current_revision(dialect) is None
    assert _tables(dialect) == set()
    assert migrate.upgrade(dialect) == migrate.head_revision()
    assert migrate.current_revision(dialect) == migrate.head_revision()
    assert _tables(dialect) == set(metadata.tables) | {"alembic_version"}
    assert migrate.check_revision(dialect) == migrate.head_revision()


def test_head_matches_the_declared_schema(dialect: Dialect) -> None:
    migrate.upgrade(dialect)
    with dialect.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_upgrade_at_head_is_a_no_op_keeping_rows(fresh_url: str) -> None:
    before = _fill(fresh_url)
    d = dialect_for_url(fresh_url)
    try:
        assert migrate.upgrade(d) == migrate.head_revision()
        assert migrate.upgrade(d) == migrate.head_revision()
    finally:
        d.dispose()
    with agentkeep.connect(fresh_url) as store:
        session = store.sessions.list().items[0]
        assert _messages(store, session.id) == before
        assert store.sessions.get(session.id).message_count == 5


def test_unknown_revision_is_refused_and_left_untouched(fresh_url: str) -> None:
    before = _fill(fresh_url)
    d = dialect_for_url(fresh_url)
    try:
        _set_version(d, FUTURE_REVISION)
        tables = _tables(d)
        for auto_migrate in (None, False, True):
            with pytest.raises(SchemaError) as err:
                agentkeep.connect(fresh_url, auto_migrate=auto_migrate)
            assert not isinstance(err.value, MigrationRequired)
            assert FUTURE_REVISION in str(err.value)
            assert "newer agentkeep" in str(err.value)
        with pytest.raises(SchemaError):
            migrate.upgrade(d)
        with pytest.raises(SchemaError):
            migrate.check_revision(d)
        assert _version(d) == [FUTURE_REVISION]
        assert _tables(d) == tables
        _set_version(d, migrate.head_revision())
    finally:
        d.dispose()
    with agentkeep.connect(fresh_url) as store:
        session = store.sessions.list().items[0]
        assert _messages(store, session.id) == before


def test_postgres_without_auto_migrate_names_the_command(
    postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTKEEP_AUTO_MIGRATE", raising=False)
    url = postgres_server.new_database()
    with pytest.raises(MigrationRequired, match="agentkeep db upgrade"):
        agentkeep.connect(url)
    d = dialect_for_url(url)
    try:
        assert _tables(d) == set()  # refused without touching anything
    finally:
        d.dispose()
    monkeypatch.setenv("AGENTKEEP_AUTO_MIGRATE", "1")
    with agentkeep.connect(url) as store:
        assert store.health().database["revision"] == migrate.head_revision()


def test_postgres_behind_head_needs_upgrade(postgres_server: Any) -> None:
    url = postgres_server.new_database()
    agentkeep.connect(url, auto_migrate=True).close()
    d = dialect_for_url(url)
    try:
        with d.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM alembic_version"))
        with pytest.raises(MigrationRequired, match="agentkeep db upgrade"):
            migrate.check_revision(d)
    finally:
        d.dispose()


def test_sqlite_upgrades_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTKEEP_AUTO_MIGRATE", raising=False)
    for url in (f"sqlite:///{tmp_path}/nested/dir/auto.db", "memory://"):
        with agentkeep.connect(url) as store:
            health = store.health()
            assert health.healthy
            assert health.database["revision"] == migrate.head_revision()


def test_sqlite_foreign_keys_stay_on_after_migrating(tmp_path: Path) -> None:
    """Migrations switch SQLite's foreign keys off; every connection must get them back."""
    for url in (f"sqlite:///{tmp_path}/fk.db", "memory://"):
        with agentkeep.connect(url) as store:
            engine = store._core.engine
            conns = [engine.connect() for _ in range(3 if "fk.db" in url else 1)]
            try:
                for conn in conns:
                    assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1, url
            finally:
                for conn in conns:
                    conn.close()
            session = store.sessions.create()
            store.messages.append(session.id, "user", "hi")
            store.sessions.delete(session.id)
            assert store.messages.list().items == []


_OPEN_AT_ONCE = """
import agentkeep

def work(arg):
    store = agentkeep.connect(arg["url"], auto_migrate=True)
    session = store.sessions.create(title=f"p{arg['i']}")
    store.messages.append(session.id, "user", "hello")
    revision = store.health().database["revision"]
    store.close()
    return {"revision": revision, "session": session.id}
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(
    fresh_url: str, tmp_path: Path
) -> None:
    n = 6
    results = run_together(
        _OPEN_AT_ONCE, [{"url": fresh_url, "i": i} for i in range(n)], tmp_path / "procs"
    )
    assert [r["revision"] for r in results] == [migrate.head_revision()] * n
    with agentkeep.connect(fresh_url) as store:
        sessions = store.sessions.list(limit=100).items
        assert sorted(s.id for s in sessions) == sorted(r["session"] for r in results)
        assert all(s.message_count == 1 for s in sessions)


_NEXT_REVISION = '''"""a later release: recreate sessions with one more column"""

import sqlalchemy as sa
from alembic import op

revision = "9000_test_next"
down_revision = "{head}"
branch_labels = None
depends_on = None


def _recreate() -> str:
    # SQLite rebuilds the table (copy, drop, rename): what most SQLite migrations do.
    return "always" if op.get_context().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("sessions", recreate=_recreate()) as batch:
        batch.add_column(sa.Column("test_extra_column", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions", recreate=_recreate()) as batch:
        batch.drop_column("test_extra_column")
'''


def test_upgrade_through_a_new_revision_keeps_data(
    fresh_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later revision that rebuilds a parent table must not lose (or cascade-delete) rows.

    The later release is simulated by a copy of the migrations with one more
    revision; the upgrade goes through ``migrate.upgrade`` as `agentkeep db upgrade` does.
    """
    before = _fill(fresh_url)
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9000_test_next.py").write_text(
        _NEXT_REVISION.format(head=migrate.head_revision())
    )
    d = dialect_for_url(fresh_url)
    try:
        with monkeypatch.context() as later_release:
            later_release.setattr(migrate, "MIGRATIONS", scripts)
            assert migrate.upgrade(d) == "9000_test_next"
        assert _version(d) == ["9000_test_next"]
        columns = {c["name"] for c in sa.inspect(d.engine).get_columns("sessions")}
        assert "test_extra_column" in columns
        with d.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, seq FROM messages ORDER BY seq")).all()
            if fresh_url.startswith("sqlite"):
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert [(r[0], r[1]) for r in rows] == [(m[0], m[1]) for m in before]
    finally:
        d.dispose()
    # This agentkeep does not know 9000_test_next: the upgraded database is refused untouched.
    with pytest.raises(SchemaError, match="9000_test_next"):
        agentkeep.connect(fresh_url, auto_migrate=True)
