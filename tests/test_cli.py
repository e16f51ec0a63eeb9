"""The ``agentkeep`` command line: exit codes and output (Typer's CliRunner)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

import agentkeep
from agentkeep.cli import (
    EXIT_NEEDS_UPGRADE,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN_REVISION,
    EXIT_USAGE,
    app,
    display_url,
)
from agentkeep.config import Settings
from agentkeep.server.connections import open_store
from agentkeep.store import migrate

HEAD = migrate.head_revision()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AGENTKEEP_DATABASE_URL",
        "DATABASE_URL",
        "DATABASE_PATH",
        "KODE_STORE_TYPE",
        "AGENTKEEP_AUTO_MIGRATE",
        "AGENTKEEP_DB_SCHEMA",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the SQLite default (./data/agentkeep.db) lands here


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"agentkeep {agentkeep.__version__}"


def test_python_dash_m_works() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentkeep", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"agentkeep {agentkeep.__version__}"


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("db", "stats", "health", "serve", "keys", "prices"):
        assert command in result.stdout
    db_help = run("db", "--help")
    assert db_help.exit_code == 0
    for command in ("upgrade", "current", "check"):
        assert command in db_help.stdout
    assert "--port" in run("serve", "--help").stdout
    assert "create" in run("keys", "--help").stdout


def test_read_only_commands_do_not_create_a_sqlite_file(sqlite_url: str, tmp_path: Path) -> None:
    current = run("db", "current", "--database-url", sqlite_url)
    assert current.exit_code == 0
    assert "empty" in current.stdout
    check = run("db", "check", "--database-url", sqlite_url)
    assert check.exit_code == EXIT_NEEDS_UPGRADE
    assert "agentkeep db upgrade" in check.stderr
    assert not (tmp_path / "cli.db").exists()


def test_upgrade_then_current_and_check(sqlite_url: str) -> None:
    first = run("db", "upgrade", "--database-url", sqlite_url)
    assert first.exit_code == 0, first.output
    assert f"upgraded from (empty) to {HEAD}" in first.stdout
    again = run("db", "upgrade", "-d", sqlite_url)
    assert again.exit_code == 0
    assert f"already at revision {HEAD}" in again.stdout
    current = run("db", "current", "-d", sqlite_url)
    assert current.exit_code == 0
    assert f"{HEAD} (head)" in current.stdout
    check = run("db", "check", "-d", sqlite_url)
    assert check.exit_code == 0
    assert f"at revision {HEAD}" in check.stdout


def test_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/from_database_url.db")
    assert run("db", "upgrade").exit_code == 0
    assert (tmp_path / "from_database_url.db").exists()
    monkeypatch.setenv("AGENTKEEP_DATABASE_URL", f"sqlite:///{tmp_path}/from_agentkeep.db")
    assert run("db", "upgrade").exit_code == 0
    assert (tmp_path / "from_agentkeep.db").exists()
    assert run("db", "upgrade", "-d", sqlite_url).exit_code == 0  # the option wins
    assert (tmp_path / "cli.db").exists()


def test_default_is_the_embedded_sqlite_file(tmp_path: Path) -> None:
    result = run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "agentkeep.db").exists()


def test_unknown_revision_exits_3_and_is_left_untouched(sqlite_url: str) -> None:
    assert run("db", "upgrade", "-d", sqlite_url).exit_code == 0
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'zzzz_newer'"))
    for command in ("upgrade", "check"):
        result = run("db", command, "-d", sqlite_url)
        assert result.exit_code == EXIT_UNKNOWN_REVISION, result.output
        assert "zzzz_newer" in result.stderr
    assert run("db", "current", "-d", sqlite_url).exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            "zzzz_newer"
        )
    engine.dispose()


def test_bad_url_is_a_usage_error() -> None:
    result = run("db", "check", "-d", "mysql://nowhere/db")
    assert result.exit_code == EXIT_USAGE
    assert "unsupported database URL" in result.stderr


def test_unreachable_database_exits_4() -> None:
    result = run("db", "current", "-d", "postgresql://postgres@127.0.0.1:1/nothing")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "error" in result.stderr


def test_postgres_check_upgrade_current(postgres_server: Any) -> None:
    url = postgres_server.new_database()
    check = run("db", "check", "-d", url)
    assert check.exit_code == EXIT_NEEDS_UPGRADE
    assert "agentkeep db upgrade" in check.stderr
    upgrade = run("db", "upgrade", "-d", url)
    assert upgrade.exit_code == 0, upgrade.output
    assert f"to {HEAD}" in upgrade.stdout
    assert run("db", "check", "-d", url).exit_code == 0
    assert f"{HEAD} (head)" in run("db", "current", "-d", url).stdout
    health = run("health", "-d", url)
    assert health.exit_code == 0
    assert "healthy" in health.stdout


def test_passwords_are_not_printed() -> None:
    shown = display_url("postgresql://user:s3cret@db.example:5432/app")
    assert "s3cret" not in shown
    assert "db.example" in shown


def test_stats_table_and_json(sqlite_url: str) -> None:
    with agentkeep.connect(sqlite_url, tenant="acme") as store:
        agent = store.agents.create(model="gpt-4o-mini", name="a")
        session = store.sessions.create(agent_id=agent.id)
        for i in range(3):
            store.messages.append(session.id, "user", f"m{i}")
        store.usage.record(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=100,
            output_tokens=20,
            latency_ms=120,
            agent_id=agent.id,
            cost_usd=Decimal("0.0015"),
        )
    table = run("stats", "-d", sqlite_url, "--tenant", "acme")
    assert table.exit_code == 0, table.output
    assert "tenant acme" in table.stdout
    assert "messages" in table.stdout
    assert "LLM calls" in table.stdout
    as_json = run("stats", "-d", sqlite_url, "--tenant", "acme", "--json")
    assert as_json.exit_code == 0
    figures = json.loads(as_json.stdout)
    assert figures["messages"] == 3
    assert figures["llm_calls"] == 1
    assert figures["input_tokens"] == 100
    assert Decimal(str(figures["cost_usd"])) == Decimal("0.0015")
    other = json.loads(run("stats", "-d", sqlite_url, "--json").stdout)
    assert other["messages"] == 0  # the default tenant sees nothing of acme


def test_health_on_an_empty_sqlite_file_needs_upgrade(sqlite_url: str) -> None:
    result = run("health", "-d", sqlite_url)
    assert result.exit_code == EXIT_NEEDS_UPGRADE
    assert "agentkeep db upgrade" in result.stderr


def test_keys_commands_are_registered(sqlite_url: str) -> None:
    created = run(
        "keys", "create", "--tenant", "acme", "--name", "ci", "--database-url", sqlite_url
    )
    assert created.exit_code == 0, created.output
    listed = run("keys", "list", "--database-url", sqlite_url)
    assert listed.exit_code == 0
    assert "acme" in listed.stdout


COMMANDS = [
    (),
    ("db",),
    ("db", "upgrade"),
    ("db", "current"),
    ("db", "check"),
    ("stats",),
    ("health",),
    ("serve",),
    ("keys",),
    ("keys", "create"),
    ("keys", "list"),
    ("keys", "revoke"),
    ("prices",),
    ("prices", "set"),
    ("prices", "list"),
    ("prices", "delete"),
    ("prices", "recompute"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "agentkeep")
def test_dash_h_everywhere_without_type_noise(command: tuple[str, ...]) -> None:
    result = run(*command, "-h")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert "<bool>" not in result.stdout and "<str>" not in result.stdout
    if command and command[-1] in ("upgrade", "current", "check", "stats", "health", "serve"):
        assert "-d, --database-url URL" in result.stdout


def test_health_and_stats_do_not_create_a_database(sqlite_url: str, tmp_path: Path) -> None:
    for command in ("health", "stats"):
        result = run(command, "-d", sqlite_url)
        assert result.exit_code == EXIT_NEEDS_UPGRADE, result.output
        assert "no database at" in result.stderr and "agentkeep db upgrade" in result.stderr
    assert run("keys", "list", "-d", sqlite_url).exit_code == EXIT_NEEDS_UPGRADE
    assert not (tmp_path / "cli.db").exists()


def test_seed_database_variables_reach_the_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "sessions.db"))
    assert run("db", "upgrade").exit_code == 0
    assert (tmp_path / "sessions.db").exists()
    monkeypatch.delenv("DATABASE_PATH")
    monkeypatch.setenv("KODE_STORE_TYPE", "sqlite")
    monkeypatch.setenv("KODE_SQLITE_PATH", str(tmp_path / "agents.db"))
    result = run("db", "upgrade")
    assert result.exit_code == 0
    assert "agents.db" in result.stdout
    assert run("db", "upgrade", "-d", "sqlite:./kumos.db").exit_code == 0
    assert (tmp_path / "kumos.db").exists()


def test_every_command_names_its_database_without_the_password(postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@", 1)
    shown = display_url(with_password)
    assert "s3cret" not in shown
    for command in (
        ("db", "current"),
        ("db", "check"),
        ("db", "upgrade"),
        ("stats",),
        ("health",),
        ("keys", "list"),
    ):
        result = run(*command, "-d", with_password)
        assert result.exit_code == 0, result.output
        assert shown in result.output and "s3cret" not in result.output, command
    created = run("keys", "create", "-t", "acme_cli", "-d", with_password)
    assert created.exit_code == 0, created.output
    assert f"created in {shown}" in created.stderr and "s3cret" not in created.output
    listed = run("keys", "list", "-t", "acme_cli", "-d", postgres_url).stdout
    key_id = re.findall(r"key_\w+", listed)[0]
    revoked = run("keys", "revoke", key_id, "-d", with_password)
    assert revoked.exit_code == 0 and shown in revoked.output


def test_serve_follows_the_migration_rule_on_postgres(postgres_server: Any) -> None:
    url = postgres_server.new_database()
    refused = run("serve", "-d", url, "--port", "1")
    assert refused.exit_code == EXIT_NEEDS_UPGRADE, refused.output
    assert "agentkeep db upgrade" in refused.stderr
    assert run("db", "check", "-d", url).exit_code == EXIT_NEEDS_UPGRADE  # left as it was
    # With AGENTKEEP_AUTO_MIGRATE=1 the service upgrades it itself.
    open_store(Settings(database_url=url, auto_migrate=True)).close()
    assert run("db", "check", "-d", url).exit_code == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_prices_set_list_recompute_delete(
    backend: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    tenant = f"prices_{backend}_{id(request)}"
    assert run("db", "upgrade", "-d", url).exit_code == 0
    with agentkeep.connect(url, tenant=tenant) as store:
        unpriced = store.usage.record(provider="acme", model="house-cli", input_tokens=10)
    assert unpriced.cost_usd is None
    common = ("-t", tenant, "-d", url)
    bad = run("prices", "set", "house-cli", "--input", "-1", "--output", "1", *common)
    assert bad.exit_code != 0 and "input" in bad.output
    made = run("prices", "set", "house-cli", "--input", "0.000001", "--output", "0.000002", *common)
    assert made.exit_code == 0, made.output
    assert "*/house-cli priced (version 1)" in made.stdout
    listed = run("prices", "list", "--json", *common)
    assert [p["model"] for p in json.loads(listed.stdout)] == ["house-cli"]
    dry = run("prices", "recompute", "--model", "house-cli", "--dry-run", "--json", *common)
    assert json.loads(dry.stdout)["changed"] == 1
    done = run("prices", "recompute", "--since", "2000-01-01", *common)
    assert done.exit_code == 0 and "changed 1" in done.stdout, done.output
    with agentkeep.connect(url, tenant=tenant) as store:
        priced = store.usage.get(unpriced.id)
    assert (priced.cost_usd, priced.cost_source) == (Decimal("0.00001"), "user")
    assert run("prices", "delete", "house-cli", *common).exit_code == 0
    assert run("prices", "delete", "house-cli", *common).exit_code != 0
