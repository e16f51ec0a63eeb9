"""Settings and URLs the seeds use: SQLite URL forms, DATABASE_PATH, KODE's variables, pools, schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import agentkeep
from agentkeep import InvalidInput
from agentkeep.config import Settings, normalize_url, url_from_env


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:./assistants.db", "sqlite:///./assistants.db"),
        ("sqlite:/data/app.db", "sqlite:////data/app.db"),
        (":memory:", "memory://"),
        ("sqlite::memory:", "memory://"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_seed_url_forms_are_normalized(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_kumos_sqlite_urls_open_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with agentkeep.connect("sqlite:./assistants.db") as store:
        store.agents.create(model="m")
    assert (tmp_path / "assistants.db").exists()
    absolute = tmp_path / "data" / "app.db"
    with agentkeep.connect(f"sqlite:{absolute}") as store:
        assert store.backend == "sqlite"
        store.agents.create(model="m")
    assert absolute.exists()
    with agentkeep.connect(":memory:") as store:
        assert store.backend == "memory"


def test_environment_fallbacks_in_order() -> None:
    assert url_from_env({"AGENTKEEP_DATABASE_URL": "sqlite:./a.db", "DATABASE_URL": "x"}) == (
        "sqlite:///./a.db"
    )
    assert url_from_env({"DATABASE_URL": "sqlite:/data/b.db"}) == "sqlite:////data/b.db"
    assert url_from_env({"DATABASE_PATH": "./data/sessions.db"}) == "sqlite:///./data/sessions.db"
    assert url_from_env({"DATABASE_PATH": ":memory:"}) == "memory://"
    kode_sqlite = {"KODE_STORE_TYPE": "sqlite", "KODE_SQLITE_PATH": "./data/agents.db"}
    assert url_from_env(kode_sqlite) == "sqlite:///./data/agents.db"
    kode_pg = {
        "KODE_STORE_TYPE": "postgres",
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DB": "kode_agents",
        "POSTGRES_USER": "kode",
        "POSTGRES_PASSWORD": "p@ss word",
    }
    assert url_from_env(kode_pg) == "postgresql://kode:p%40ss%20word@db.internal:6543/kode_agents"
    assert url_from_env({"DATABASE_PATH": "./x.db", **kode_pg}) == "sqlite:///./x.db"
    assert url_from_env({}) == "sqlite:///./data/agentkeep.db"


def test_pool_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "AGENTKEEP_POOL_SIZE": "3",
            "AGENTKEEP_POOL_MAX_OVERFLOW": "0",
            "AGENTKEEP_POOL_TIMEOUT": "2.5",
            "AGENTKEEP_POOL_MAX_IDLE": "60",
            "AGENTKEEP_POOL_MAX_LIFETIME": "600",
        }
    )
    pool = settings.pool
    assert (pool.size, pool.max_overflow, pool.timeout_s) == (3, 0, 2.5)
    assert (pool.max_idle_s, pool.max_lifetime_s) == (60.0, 600.0)
    with pytest.raises(InvalidInput) as caught:
        Settings.from_env({"AGENTKEEP_POOL_SIZE": "many"})
    assert caught.value.field == "AGENTKEEP_POOL_SIZE"
    for name in (
        "AGENTKEEP_POOL_TIMEOUT",
        "AGENTKEEP_POOL_MAX_IDLE",
        "AGENTKEEP_POOL_MAX_LIFETIME",
    ):
        for bad in ("soon", "nan", "inf"):
            with pytest.raises(InvalidInput, match="finite number of seconds") as caught:
                Settings.from_env({name: bad})
            assert caught.value.field == name, bad


def test_pool_settings_reach_the_engine(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKEEP_POOL_SIZE", "2")
    monkeypatch.setenv("AGENTKEEP_POOL_MAX_OVERFLOW", "1")
    monkeypatch.setenv("AGENTKEEP_POOL_TIMEOUT", "3")
    monkeypatch.setenv("AGENTKEEP_POOL_MAX_LIFETIME", "120")
    monkeypatch.setenv("AGENTKEEP_POOL_MAX_IDLE", "0")
    with agentkeep.connect(postgres_url) as store:
        pool: Any = store._core.engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (2, 1, 3.0, 120)
        store.agents.create(model="m")
        # max idle 0: a connection returned to the pool is replaced on its next checkout
        with store._core.engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with store._core.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    with agentkeep.connect(postgres_url, pool_size=4) as store:  # an argument beats the env
        assert store._core.engine.pool.size() == 4


def test_postgres_schema_option(postgres_server: Any) -> None:
    url = postgres_server.new_database()
    with agentkeep.connect(url, schema="agents_app", auto_migrate=True) as store:
        agent = store.agents.create(model="m")
        session = store.sessions.create(agent_id=agent.id)
        store.messages.append(session.id, "user", "hi")  # the fast path too
        assert [m.text for m in store.messages.recent(session.id)] == ["hi"]
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            tables = set(
                conn.execute(
                    sa.text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'agents_app'"
                    )
                ).scalars()
            )
            public = conn.execute(
                sa.text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                )
            ).scalar()
    finally:
        engine.dispose()
    assert {"agents", "messages", "alembic_version"} <= tables
    assert public == 0
    with agentkeep.connect(url, schema="agents_app") as store:  # no migration needed again
        assert store.agents.get(agent.id).model == "m"
    with pytest.raises(InvalidInput) as caught:
        agentkeep.connect(url, schema="Bad-Name;")
    assert caught.value.field == "schema"


@pytest.mark.parametrize(
    ("name", "attribute", "default"),
    [
        ("AGENTKEEP_REQUIRED_ACTION_TTL_SECONDS", "required_action_ttl_seconds", 600.0),
        # How long a stopping service lets its requests in flight finish (uvicorn's
        # graceful shutdown timeout).
        ("AGENTKEEP_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds", 10.0),
    ],
)
def test_settings_in_seconds_above_zero(name: str, attribute: str, default: float) -> None:
    assert getattr(Settings.from_env({}), attribute) == default
    assert getattr(Settings.from_env({name: "2.5"}), attribute) == 2.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(InvalidInput) as caught:
            Settings.from_env({name: bad})
        assert caught.value.field == name


def test_response_ttl_days_setting() -> None:
    """A bad ``AGENTKEEP_RESPONSE_TTL_DAYS`` stops the service at start, not each create later."""
    assert Settings.from_env({}).responses_ttl_seconds == 30 * 86400.0
    assert Settings.from_env({"AGENTKEEP_RESPONSE_TTL_DAYS": ""}).response_ttl_days == 30.0
    assert Settings.from_env({"AGENTKEEP_RESPONSE_TTL_DAYS": "0.5"}).responses_ttl_seconds == 43200
    for bad in ("0", "-1", "soon", "nan", "inf", "1e9"):
        with pytest.raises(InvalidInput) as caught:
            Settings.from_env({"AGENTKEEP_RESPONSE_TTL_DAYS": bad})
        assert caught.value.field == "AGENTKEEP_RESPONSE_TTL_DAYS"
        assert "days" in str(caught.value)


def test_rate_limit_settings_and_their_seed_names() -> None:
    default = Settings.from_env({})
    assert default.rate_limit_enabled is None
    assert (default.rate_limit_max_requests, default.rate_limit_window_ms) == (100, 60_000)
    seed = Settings.from_env(
        {
            "ENABLE_RATE_LIMITING": "true",
            "RATE_LIMIT_MAX_REQUESTS": "7",
            "RATE_LIMIT_WINDOW_MS": "10",
        }
    )
    assert (seed.rate_limit_enabled, seed.rate_limit_max_requests, seed.rate_limit_window_ms) == (
        True,
        7,
        10,
    )
    ours = Settings.from_env(
        {
            "ENABLE_RATE_LIMITING": "true",
            "AGENTKEEP_RATE_LIMIT_ENABLED": "false",
            "RATE_LIMIT_MAX_REQUESTS": "7",
            "AGENTKEEP_RATE_LIMIT_MAX_REQUESTS": "9",
        }
    )
    assert (ours.rate_limit_enabled, ours.rate_limit_max_requests) == (False, 9)
    for env, field in (
        ({"ENABLE_RATE_LIMITING": "maybe"}, "AGENTKEEP_RATE_LIMIT_ENABLED"),
        ({"RATE_LIMIT_MAX_REQUESTS": "0"}, "AGENTKEEP_RATE_LIMIT_MAX_REQUESTS"),
        ({"AGENTKEEP_RATE_LIMIT_WINDOW_MS": "x"}, "AGENTKEEP_RATE_LIMIT_WINDOW_MS"),
    ):
        with pytest.raises(InvalidInput) as caught:
            Settings.from_env(env)
        assert caught.value.field == field


def test_rate_limit_reset_durations_in_openais_form() -> None:
    from agentkeep.server.ratelimit import duration

    assert duration(0.25) == "250ms"
    assert duration(6) == "6s"
    assert duration(1.5) == "1.5s"
    assert duration(90) == "1m30s"
    assert duration(3600) == "1h0m0s"


@pytest.mark.parametrize(
    ("name", "default", "good", "bads"),
    [
        ("AGENTKEEP_RUN_CONCURRENCY", 16, ("64", 64), ("0", "-2", "many", "1.5")),
        ("AGENTKEEP_PORT", 8080, ("9000", 9000), ("0", "65536", "http")),
        ("AGENTKEEP_MAX_BODY_BYTES", 8 * 1024 * 1024, ("1024", 1024), ("0", "-1", "8M")),
        ("AGENTKEEP_LLM_MAX_RETRIES", 2, ("0", 0), ("-1", "11", "twice")),
    ],
)
def test_integer_service_settings_are_checked_naming_the_variable(
    name: str, default: int, good: tuple[str, int], bads: tuple[str, ...]
) -> None:
    """A bad value stops the service at start with the variable named; it is not read as
    something else (a run concurrency of 0 used to run one run at a time)."""
    attribute = name.removeprefix("AGENTKEEP_").lower()
    assert getattr(Settings.from_env({}), attribute) == default
    assert getattr(Settings.from_env({name: ""}), attribute) == default
    assert getattr(Settings.from_env({name: good[0]}), attribute) == good[1]
    for bad in bads:
        with pytest.raises(InvalidInput) as caught:
            Settings.from_env({name: bad})
        assert caught.value.field == name, bad


def test_key_cache_seconds_setting() -> None:
    assert Settings.from_env({}).key_cache_seconds == 10.0
    assert Settings.from_env({"AGENTKEEP_KEY_CACHE_SECONDS": "0"}).key_cache_seconds == 0.0
    assert Settings.from_env({"AGENTKEEP_KEY_CACHE_SECONDS": "2.5"}).key_cache_seconds == 2.5
    # "inf" would keep a revoked key working for as long as the process runs.
    for bad in ("soon", "nan", "inf", "-inf", "Infinity"):
        with pytest.raises(InvalidInput) as caught:
            Settings.from_env({"AGENTKEEP_KEY_CACHE_SECONDS": bad})
        assert caught.value.field == "AGENTKEEP_KEY_CACHE_SECONDS"
