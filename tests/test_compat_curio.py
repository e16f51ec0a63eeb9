"""The curio_agent_sdk.persistence API over agentkeep, on SQLite, PostgreSQL and memory.

Each test runs the SDK's documented usage patterns against ``SQLitePersistence``
(a file in tmp_path), ``PostgresPersistence`` (the test server, tables in a
schema of this test run, dropped at the end; each test uses a tenant of its own)
and ``InMemoryPersistence``. PostgreSQL being down fails the tests, never skips.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import agentkeep
from agentkeep.compat.curio import (
    AgentLLMUsage,
    AgentRun,
    AgentRunEvent,
    AgentRunStatus,
    BasePersistence,
    DatabaseConfig,
    EventType,
    InMemoryPersistence,
    PostgresPersistence,
    SQLitePersistence,
    StorePersistence,
)
from agentkeep.compat.curio._audit import chain_ok
from agentkeep.errors import Conflict, InvalidInput, InvalidTransition

POSTGRES_URL = os.environ.get(
    "AGENTKEEP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_PG = make_url(POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://"))
PG_ARGS: dict[str, Any] = {
    "host": _PG.host or "127.0.0.1",
    "port": _PG.port or 5432,
    "database": _PG.database or "test",
    "user": _PG.username or "postgres",
    "password": _PG.password or "",
}
BACKENDS = ["sqlite", "postgres", "memory"]


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            host=PG_ARGS["host"],
            port=PG_ARGS["port"],
            dbname=PG_ARGS["database"],
            user=PG_ARGS["user"],
            password=PG_ARGS["password"] or None,
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc}); start it or set "
            "AGENTKEEP_TEST_POSTGRES_URL. PostgreSQL tests never skip.",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    """A schema of this test run on the test server, dropped afterwards."""
    name = f"curio_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin():
        pass
    yield name
    with _admin() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _tenant() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _open(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StorePersistence:
    if backend == "sqlite":
        return SQLitePersistence(str(tmp_path / "agent.db"))
    if backend == "postgres":
        schema: str = request.getfixturevalue("pg_schema")
        return PostgresPersistence(
            **PG_ARGS, schema=schema, min_connections=1, max_connections=4, tenant=_tenant()
        )
    return InMemoryPersistence()


@pytest.fixture(params=BACKENDS)
def persistence(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorePersistence]:
    p = _open(str(request.param), tmp_path, request)
    p.initialize_schema()
    yield p
    p.close()


def _same_json(got: str | None, want: str | None) -> bool:
    """Equal JSON strings: a JSON object may come back with its keys reordered
    (PostgreSQL's JSONB keeps its own key order); anything else comes back as written."""
    if got == want:
        return True
    if got is None or want is None:
        return False
    return bool(json.loads(got) == json.loads(want))


def _same_usage(got: AgentLLMUsage, want: AgentLLMUsage) -> bool:
    a, b = got.to_dict(), want.to_dict()
    assert _same_json(a.pop("input_params"), b.pop("input_params"))
    a.pop("created_at")
    b.pop("created_at")
    assert a == b
    return True


def _run(run_id: str, agent_id: str = "agent-1", **kw: Any) -> AgentRun:
    return AgentRun(agent_id=agent_id, run_id=run_id, **kw)


# ---- runs -------------------------------------------------------------------------


def test_run_round_trips_every_field(persistence: StorePersistence) -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, 678901)  # naive, as the SDK writes them
    run = _run(
        "run-123",
        agent_name="Curator",
        objective="Find articles",
        additional_context=json.dumps({"topic": "AI"}),
        started_at=started,
        total_iterations=3,
        final_synthesis_output="Fetched 5 articles",
        execution_history=json.dumps([{"iteration": 1}]),
        status=AgentRunStatus.RUNNING.value,
        metadata='{"team":  "news"}',
    )
    persistence.create_agent_run(run)
    assert run.created_at is not None

    got = persistence.get_agent_run("run-123")
    assert got is not None
    assert (got.agent_id, got.run_id, got.agent_name) == ("agent-1", "run-123", "Curator")
    assert got.objective == "Find articles"
    assert got.additional_context == '{"topic": "AI"}'
    assert got.started_at == started
    assert got.finished_at is None
    assert got.total_iterations == 3
    assert got.final_synthesis_output == "Fetched 5 articles"
    assert got.execution_history == '[{"iteration": 1}]'
    assert got.status == "running"
    assert got.error_message is None
    assert got.metadata == '{"team":  "news"}'
    assert got.created_at is not None and got.updated_at is not None
    # the agentkeep run underneath
    stored = persistence.store.runs.get("run-123")
    assert stored.status == "in_progress"
    assert stored.iterations == 3
    assert stored.output == "Fetched 5 articles"


def test_status_moves_through_the_run_state_machine(persistence: StorePersistence) -> None:
    runs = persistence.store.runs
    run = _run("r-done", objective="x")
    persistence.create_agent_run(run)
    assert runs.get("r-done").status == "queued"
    assert persistence.get_agent_run("r-done").status == "pending"  # type: ignore[union-attr]

    # pending -> completed jumps: it passes through running
    run.status = AgentRunStatus.COMPLETED.value
    run.finished_at = datetime.now()
    run.final_synthesis_output = "done"
    persistence.update_agent_run("r-done", run)
    stored = runs.get("r-done")
    assert stored.status == "completed"
    assert stored.started_at is not None and stored.finished_at is not None
    got = persistence.get_agent_run("r-done")
    assert got is not None and got.status == "completed" and got.final_synthesis_output == "done"

    # error keeps its message, in the SDK and as the run's last_error
    err = _run("r-err", status="running")
    persistence.create_agent_run(err)
    err.status = AgentRunStatus.ERROR.value
    err.error_message = "tool exploded"
    persistence.update_agent_run("r-err", err)
    assert runs.get("r-err").status == "failed"
    assert runs.get("r-err").last_error == {"code": "server_error", "message": "tool exploded"}
    got = persistence.get_agent_run("r-err")
    assert got is not None and (got.status, got.error_message) == ("error", "tool exploded")

    # pending -> cancelled directly; created straight as error, too
    persistence.create_agent_run(_run("r-cancel", status="cancelled"))
    assert runs.get("r-cancel").status == "cancelled"
    persistence.create_agent_run(_run("r-fail", status="error", error_message="boom"))
    assert runs.get("r-fail").status == "failed"
    persistence.create_agent_run(_run("r-timeout", status="timeout"))
    assert runs.get("r-timeout").status == "expired"
    assert persistence.get_agent_run("r-timeout").status == "timeout"  # type: ignore[union-attr]

    # a finished run stays finished; an unknown status is refused
    run.status = "running"
    with pytest.raises(InvalidTransition):
        persistence.update_agent_run("r-done", run)
    assert runs.get("r-done").status == "completed"
    with pytest.raises(InvalidInput) as info:
        persistence.create_agent_run(_run("r-bad", status="sleeping"))
    assert info.value.field == "status"
    assert persistence.get_agent_run("r-bad") is None

    # same status again only updates fields
    run.status = "completed"
    run.total_iterations = 7
    persistence.update_agent_run("r-done", run)
    assert persistence.get_agent_run("r-done").total_iterations == 7  # type: ignore[union-attr]


def test_querying_run_history(persistence: StorePersistence) -> None:
    # ids that do not sort by time, as uuid4 run ids do not
    ids = ["run-c", "run-a", "run-e", "run-b", "run-d"]
    for i, rid in enumerate(ids):
        persistence.create_agent_run(_run(rid, objective=f"task {i}", total_iterations=i))
    persistence.create_agent_run(_run("other-run", agent_id="agent-2"))

    runs = persistence.get_agent_runs(agent_id="agent-1", limit=10, offset=0)
    assert [r.run_id for r in runs] == list(reversed(ids))  # newest first
    for run in runs:
        assert run.total_iterations == ids.index(run.run_id)
        assert run.status == AgentRunStatus.PENDING.value
        assert run.objective.startswith("task")
    assert [r.run_id for r in persistence.get_agent_runs("agent-1", limit=2, offset=1)] == [
        "run-b",
        "run-e",
    ]
    assert persistence.get_agent_runs("agent-1", limit=10, offset=5) == []
    assert persistence.get_agent_runs("agent-1", limit=0) == []
    assert len(persistence.get_agent_runs()) == 6
    assert len(persistence.get_agent_runs(limit=3)) == 3

    one = persistence.get_agent_run("run-a")
    assert one is not None and one.status == "pending" and one.error_message is None
    assert persistence.get_agent_run("run-missing") is None


def test_create_update_delete_edge_cases(persistence: StorePersistence) -> None:
    persistence.create_agent_run(_run("dup"))
    with pytest.raises(Conflict):
        persistence.create_agent_run(_run("dup"))

    # updating a run that does not exist changes nothing (the SDK only logs it)
    persistence.update_agent_run("ghost", _run("ghost", status="completed"))
    assert persistence.get_agent_run("ghost") is None

    persistence.log_agent_run_event(
        AgentRunEvent(agent_id="agent-1", run_id="dup", event_type="run_started")
    )
    assert persistence.delete_agent_run("dup") is True
    assert persistence.get_agent_run("dup") is None
    assert persistence.get_agent_run_events("dup") == []
    assert persistence.delete_agent_run("dup") is False


# ---- events -----------------------------------------------------------------------


def test_querying_events(persistence: StorePersistence) -> None:
    persistence.create_agent_run(_run("run-123"))
    t0 = datetime(2026, 5, 1, 12, 0, 0)
    action = {
        "action": "fetch_articles",
        "args": {"topic": "AI", "max_results": 5},
        "result": {"status": "ok", "result": "Fetched 5 articles"},
        "duration_ms": 1234,
    }
    logged = [
        AgentRunEvent("agent-1", "run-123", "Curator", t0, EventType.RUN_STARTED.value, None),
        AgentRunEvent(
            "agent-1",
            "run-123",
            "Curator",
            t0 + timedelta(seconds=1),
            EventType.ACTION_EXECUTION_COMPLETED.value,
            json.dumps(action),
        ),
        AgentRunEvent(
            "agent-1",
            "run-123",
            "Curator",
            t0 + timedelta(seconds=2),
            EventType.CRITIQUE_COMPLETED.value,
            '{"status": "done"}',
        ),
        AgentRunEvent(
            "agent-1",
            "run-123",
            "Curator",
            t0 + timedelta(seconds=3),
            EventType.RUN_ERROR.value,
            "not json",
        ),
        AgentRunEvent(
            "agent-1",
            "run-123",
            "Curator",
            t0 + timedelta(seconds=4),
            "my_own_event",
            "[1, 2, 3]",
        ),
        AgentRunEvent(
            "agent-1",
            "run-123",
            "Curator",
            t0 + timedelta(seconds=5),
            EventType.CUSTOM.value,
            '{"a":1}',
        ),
    ]
    for event in logged:
        persistence.log_agent_run_event(event)
    ids = [e.id for e in logged if e.id is not None]
    assert len(ids) == len(logged) and ids == sorted(ids)

    events = persistence.get_agent_run_events("run-123")
    assert [e.event_type for e in events] == [
        "run_started",
        "action_execution_completed",
        "critique_completed",
        "run_error",
        "my_own_event",
        "custom",
    ]
    for event, original in zip(events, logged, strict=True):
        assert (event.agent_id, event.run_id, event.agent_name) == ("agent-1", "run-123", "Curator")
        assert event.timestamp == original.timestamp
        assert _same_json(event.data, original.data)
        assert event.id == original.id
        assert event.created_at is not None
        assert isinstance(event.timestamp, datetime)
    assert events[0].get_data_dict() == {}
    assert events[1].get_data_dict() == action
    assert events[3].get_data_dict() == {"raw": "not json"}

    action_events = persistence.get_agent_run_events(
        "run-123", event_type="action_execution_completed"
    )
    assert [e.get_data_dict()["action"] for e in action_events] == ["fetch_articles"]
    for wanted in ("critique_completed", "run_error", "my_own_event", "custom"):
        got = persistence.get_agent_run_events("run-123", event_type=wanted)
        assert [e.event_type for e in got] == [wanted]
    assert persistence.get_agent_run_events("run-123", event_type=EventType.RUN_ERROR) != []
    assert persistence.get_agent_run_events("run-123", event_type="synthesis_result") == []
    assert persistence.get_agent_run_events("no-such-run") == []

    # what agentkeep holds: its own vocabulary, the curio type in data
    store_types = [e.type for e in persistence.store.events.list(run_id="run-123")]
    assert store_types == [
        "run_started",
        "action_execution_completed",
        "custom",
        "run_failed",
        "custom",
        "custom",
    ]


def test_events_are_ordered_by_timestamp(persistence: StorePersistence) -> None:
    persistence.create_agent_run(_run("r"))
    t0 = datetime(2026, 5, 1, 12, 0, 0)
    for seconds, kind in ((2, "iteration_completed"), (1, "iteration_started")):
        persistence.log_agent_run_event(
            AgentRunEvent(
                "agent-1", "r", timestamp=t0 + timedelta(seconds=seconds), event_type=kind
            )
        )
    assert [e.event_type for e in persistence.get_agent_run_events("r")] == [
        "iteration_started",
        "iteration_completed",
    ]
    # without a timestamp, an event reads back with the time it was stored
    persistence.create_agent_run(_run("r2"))
    persistence.log_agent_run_event(AgentRunEvent("agent-1", "r2", event_type="run_started"))
    (event,) = persistence.get_agent_run_events("r2")
    assert event.timestamp is not None and event.timestamp == event.created_at


def test_events_before_the_run_is_created(persistence: StorePersistence) -> None:
    persistence.log_agent_run_event(
        AgentRunEvent("agent-1", "early", "Curator", event_type="run_started", data='{"k": 1}')
    )
    (event,) = persistence.get_agent_run_events("early")
    assert event.get_data_dict() == {"k": 1}
    placeholder = persistence.get_agent_run("early")
    assert placeholder is not None and placeholder.status == "pending"
    assert placeholder.agent_name == "Curator"

    persistence.create_agent_run(_run("early", objective="late registration", status="running"))
    run = persistence.get_agent_run("early")
    assert run is not None and run.objective == "late registration" and run.status == "running"
    assert len(persistence.get_agent_run_events("early")) == 1
    with pytest.raises(Conflict):  # only a placeholder is filled in
        persistence.create_agent_run(_run("early"))


# ---- usage ------------------------------------------------------------------------


def test_querying_llm_usage(persistence: StorePersistence) -> None:
    persistence.create_agent_run(_run("run-123"))
    calls = [
        AgentLLMUsage(
            agent_id="agent-1",
            run_id="run-123",
            provider="openai",
            model="gpt-4o-mini",
            prompt="Summarize",
            prompt_length=9,
            input_params=json.dumps({"temperature": 0.2, "max_tokens": 100}),
            input_tokens=150,
            output_tokens=50,
            response_content="Summary",
            response_length=7,
            usage_metrics=json.dumps(
                {
                    "prompt_tokens": 150,
                    "completion_tokens": 50,
                    "total_tokens": 200,
                    "cost_usd": 0.0003,
                }
            ),
            latency_ms=420,
        ),
        AgentLLMUsage(  # no cost given: agentkeep prices it from its table
            agent_id="agent-1",
            run_id="run-123",
            provider="openai",
            model="gpt-4o-mini",
            prompt="Plan",
            input_tokens=1000,
            output_tokens=500,
        ),
        AgentLLMUsage(  # unknown model, no cost: unknown, not 0
            agent_id="agent-1",
            provider="ollama",
            model="my-local-model",
            prompt="Hi",
            prompt_length=2,
            input_tokens=None,
            output_tokens=None,
            status="error",
            error_message="timeout",
        ),
        AgentLLMUsage(agent_id="agent-2", provider="groq", model="m", prompt="x", prompt_length=1),
    ]
    for call in calls:
        persistence.log_llm_usage(call)
        assert call.created_at is not None

    usage = persistence.get_llm_usage(agent_id="agent-1", limit=100)
    assert len(usage) == 3
    assert [u.prompt for u in usage] == ["Hi", "Plan", "Summarize"]  # newest first
    total_tokens = sum(u.get_total_tokens() or 0 for u in usage)
    total_cost = sum(u.get_cost_usd() or 0 for u in usage)
    assert total_tokens == 200 + 1500
    assert total_cost == pytest.approx(0.0003 + 0.00045)
    assert f"Total cost: ${total_cost:.5f}" == "Total cost: $0.00075"

    first = usage[2]
    assert _same_usage(first, calls[0])
    assert first.get_input_params_dict() == {"temperature": 0.2, "max_tokens": 100}
    assert first.get_cost_usd() == pytest.approx(0.0003)
    assert usage[1].get_cost_usd() == pytest.approx(0.00045)
    unknown = usage[0]
    assert unknown.get_cost_usd() is None
    assert (unknown.input_tokens, unknown.output_tokens) == (None, None)
    assert (unknown.status, unknown.error_message) == ("error", "timeout")

    run_usage = persistence.get_llm_usage(run_id="run-123")
    assert [u.prompt for u in run_usage] == ["Plan", "Summarize"]
    assert len(persistence.get_llm_usage(limit=2)) == 2
    assert len(persistence.get_llm_usage()) == 4

    # the run's counters add up its calls
    run = persistence.store.runs.get("run-123")
    assert (run.input_tokens, run.output_tokens) == (1150, 550)
    assert run.cost_usd is not None and float(run.cost_usd) == pytest.approx(0.00075)


def test_usage_keeps_what_agentkeep_has_no_column_for(persistence: StorePersistence) -> None:
    odd = AgentLLMUsage(
        provider="",
        model="",
        prompt="",
        prompt_length=99,
        input_params="not json",
        usage_metrics='{"cost_usd": "0.5"}',
        response_content=None,
    )
    persistence.log_llm_usage(odd)
    (got,) = persistence.get_llm_usage()
    assert _same_usage(got, odd)
    assert got.get_cost_usd() == 0.5
    assert got.agent_id is None and got.run_id is None

    # usage may name a run that was never created: it is kept, no run appears
    persistence.log_llm_usage(AgentLLMUsage(run_id="ghost", provider="p", model="m"))
    assert [u.run_id for u in persistence.get_llm_usage(run_id="ghost")] == ["ghost"]
    assert persistence.get_agent_run("ghost") is None


# ---- stats and health -------------------------------------------------------------


def test_statistics(persistence: StorePersistence) -> None:
    persistence.create_agent_run(_run("a1", status="completed", total_iterations=2))
    persistence.create_agent_run(_run("a2", status="error", total_iterations=3))
    persistence.create_agent_run(_run("a3", status="running", total_iterations=0))
    persistence.create_agent_run(_run("b1", agent_id="agent-2", status="cancelled"))
    persistence.log_llm_usage(
        AgentLLMUsage(
            agent_id="agent-1",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=10,
            output_tokens=5,
        )
    )
    persistence.log_llm_usage(
        AgentLLMUsage(agent_id="agent-1", provider="x", model="y", input_tokens=1, output_tokens=2)
    )

    stats = persistence.get_agent_run_stats(agent_id="agent-1")
    assert f"Total runs: {stats['total_runs']}" == "Total runs: 3"
    assert {
        k: stats[k]
        for k in (
            "total_runs",
            "completed_runs",
            "error_runs",
            "avg_iterations",
            "total_llm_calls",
            "total_input_tokens",
            "total_output_tokens",
        )
    } == {
        "total_runs": 3,
        "completed_runs": 1,
        "error_runs": 1,
        "avg_iterations": 1.67,
        "total_llm_calls": 2,
        "total_input_tokens": 11,
        "total_output_tokens": 7,
    }
    assert stats["cancelled_runs"] == 0
    assert stats["total_cost_usd"] is not None and stats["total_cost_usd"] > 0

    everything = persistence.get_agent_run_stats()
    assert everything["total_runs"] == 4 and everything["cancelled_runs"] == 1
    empty = persistence.get_agent_run_stats(agent_id="nobody")
    assert empty["total_runs"] == 0 and empty["avg_iterations"] == 0
    assert empty["total_llm_calls"] == 0 and empty["total_cost_usd"] == 0  # no calls: nothing spent


def test_health_check(persistence: StorePersistence) -> None:
    assert persistence.health_check() is True
    persistence.close()
    assert persistence.health_check() is False


# ---- backends ---------------------------------------------------------------------


def test_sqlite_file_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data" / "agent.db"
    p = SQLitePersistence(str(path))
    p.initialize_schema()
    p.create_agent_run(_run("r1"))
    p.close()
    assert path.exists()
    reopened = SQLitePersistence(path=str(path))
    assert reopened.get_agent_run("r1") is not None
    reopened.close()

    monkeypatch.chdir(tmp_path)
    default = SQLitePersistence()
    assert default.db_path == "agent_sdk.db"
    default.close()
    assert (tmp_path / "agent_sdk.db").exists()


def test_postgres_tables_live_in_the_schema() -> None:
    schema = f"curio_s_{uuid.uuid4().hex[:8]}"
    try:
        p = PostgresPersistence(**PG_ARGS, schema=schema, min_connections=1, max_connections=2)
        p.initialize_schema()
        p.create_agent_run(_run("r1"))
        assert p.get_agent_run("r1") is not None
        assert p.health_check() is True
        p.close()
        with _admin() as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (schema,),
                )
            }
        assert {"runs", "events", "llm_usage", "alembic_version"} <= tables
    finally:
        with _admin() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_postgres_refuses_a_schema_name_that_is_not_an_identifier() -> None:
    with pytest.raises(InvalidInput) as info:
        PostgresPersistence(**PG_ARGS, schema="x; DROP TABLE runs")
    assert info.value.field == "schema"


def test_in_memory_clear_all_and_get_all_data() -> None:
    p = InMemoryPersistence()
    p.create_agent_run(_run("r1", objective="o"))
    p.log_agent_run_event(AgentRunEvent("agent-1", "r1", event_type="run_started", data='{"x": 1}'))
    p.log_llm_usage(AgentLLMUsage(agent_id="agent-1", run_id="r1", provider="p", model="m"))

    all_data = p.get_all_data()
    assert set(all_data) == {"runs", "events", "llm_usage"}
    assert all_data["runs"]["r1"]["objective"] == "o"
    assert [e["event_type"] for e in all_data["events"]["r1"]] == ["run_started"]
    assert [u["model"] for u in all_data["llm_usage"]] == ["m"]
    json.dumps(all_data)

    p.clear_all()
    assert p.get_all_data() == {"runs": {}, "events": {}, "llm_usage": []}
    assert p.get_agent_run("r1") is None
    p.create_agent_run(_run("r1"))  # usable after clearing
    p.close()


def test_tenants_do_not_see_each_other(tmp_path: Path) -> None:
    a = SQLitePersistence(str(tmp_path / "x.db"), tenant="a")
    b = SQLitePersistence(str(tmp_path / "x.db"), tenant="b")
    a.create_agent_run(_run("r1"))
    assert b.get_agent_run("r1") is None
    b.create_agent_run(_run("r1"))  # same run id, other tenant
    a.close()
    b.close()


def test_store_persistence_wraps_an_open_store() -> None:
    store = agentkeep.connect("memory://")
    p = StorePersistence(store)
    p.create_agent_run(_run("r1"))
    p.close()  # does not close a store it did not open
    assert store.runs.get("r1").id == "r1"
    store.close()


# ---- configuration ----------------------------------------------------------------


def test_database_config_from_env(tmp_path: Path) -> None:
    default = DatabaseConfig.from_env({})
    assert default == DatabaseConfig()
    assert (default.db_type, default.sqlite_path, default.schema) == (
        "sqlite",
        "agent_sdk.db",
        "agent_sdk",
    )

    cfg = DatabaseConfig.from_env(
        {
            "DB_TYPE": "POSTGRES",
            "DB_HOST": "db.example",
            "DB_PORT": "6543",
            "DB_NAME": "agents",
            "DB_USER": "svc",
            "DB_PASSWORD": "pw",
            "DB_SCHEMA": "s1",
            "DB_PATH": "/x/y.db",
            "DB_MIN_CONNECTIONS": "2",
            "DB_MAX_CONNECTIONS": "5",
        }
    )
    assert cfg == DatabaseConfig(
        db_type="postgres",
        host="db.example",
        port=6543,
        database="agents",
        user="svc",
        password="pw",
        schema="s1",
        sqlite_path="/x/y.db",
        min_connections=2,
        max_connections=5,
    )
    with pytest.raises(InvalidInput):
        DatabaseConfig.from_env({"DB_PORT": "five"})

    sqlite = DatabaseConfig(db_type="sqlite", sqlite_path=str(tmp_path / "agent.db"))
    p = sqlite.get_persistence()
    assert isinstance(p, SQLitePersistence)
    p.close()
    memory = DatabaseConfig.from_env({"DB_TYPE": "memory"}).get_persistence()
    assert isinstance(memory, InMemoryPersistence)
    memory.close()
    with pytest.raises(InvalidInput):
        DatabaseConfig(db_type="oracle").get_persistence()


def test_database_config_opens_postgres(pg_schema: str) -> None:
    env = {
        "DB_TYPE": "postgres",
        "DB_HOST": str(PG_ARGS["host"]),
        "DB_PORT": str(PG_ARGS["port"]),
        "DB_NAME": str(PG_ARGS["database"]),
        "DB_USER": str(PG_ARGS["user"]),
        "DB_PASSWORD": str(PG_ARGS["password"]),
        "DB_SCHEMA": pg_schema,
    }
    p = DatabaseConfig.from_env(env).get_persistence()
    assert isinstance(p, PostgresPersistence)
    assert p.health_check() is True
    p.close()


# ---- models -----------------------------------------------------------------------


def test_enums_have_every_documented_member() -> None:
    assert [s.value for s in AgentRunStatus][:5] == [
        "pending",
        "running",
        "completed",
        "error",
        "cancelled",
    ]
    documented = [
        "run_started",
        "run_completed",
        "run_error",
        "iteration_started",
        "iteration_completed",
        "planning_started",
        "planning_completed",
        "action_execution_started",
        "action_execution_completed",
        "critique_started",
        "critique_completed",
        "critique_result",
        "synthesis_started",
        "synthesis_completed",
        "synthesis_result",
        "object_stored",
        "object_not_found",
        "tool_registered",
        "subagent_run_started",
        "subagent_run_completed",
        "custom",
    ]
    assert [e.value for e in EventType] == documented
    assert AgentRun("a", "r").status == AgentRunStatus.PENDING.value == "pending"


def test_models_round_trip_through_dicts() -> None:
    run = _run("r", started_at=datetime(2026, 1, 1), metadata="{}", total_iterations=2)
    assert AgentRun.from_dict(run.to_dict()) == run
    event = AgentRunEvent("a", "r", "n", datetime(2026, 1, 1), "custom", '{"x": 1}', 3)
    assert AgentRunEvent.from_dict(event.to_dict()) == event
    usage = AgentLLMUsage(provider="p", model="m", input_tokens=3, output_tokens=None)
    assert AgentLLMUsage.from_dict(usage.to_dict()) == usage
    assert usage.get_total_tokens() == 3
    assert usage.get_cost_usd() is None
    assert AgentLLMUsage(usage_metrics='{"cost_usd": 0.25}').get_cost_usd() == 0.25
    assert AgentLLMUsage(usage_metrics='{"cost_usd": "NaN"}').get_cost_usd() is None
    assert AgentRunEvent("a", "r").get_data_dict() == {}


def test_base_persistence_is_abstract() -> None:
    with pytest.raises(TypeError):
        BasePersistence()  # type: ignore[abstract]

    class Custom(InMemoryPersistence):
        pass

    p = Custom()
    assert isinstance(p, BasePersistence)
    p.close()


# ---- importing an existing curio database ---------------------------------------


class _SdkRun:
    """Stands for the SDK's own AgentRun (a later version: ``final_output``)."""

    def __init__(self, run_id: str, created_at: datetime) -> None:
        self.agent_id = "agent-1"
        self.run_id = run_id
        self.agent_name = "Old"
        self.objective = f"objective {run_id}"
        self.status = "completed"
        self.total_iterations = 2
        self.final_output = f"output {run_id}"
        self.created_at = created_at
        self.id = 7


class _SdkSource:
    """A curio persistence with two runs, one event and one usage record."""

    def __init__(self) -> None:
        t0 = datetime(2025, 1, 1)
        self.runs = [_SdkRun("old-2", t0 + timedelta(days=1)), _SdkRun("old-1", t0)]

    def get_agent_runs(
        self, agent_id: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[_SdkRun]:
        return self.runs[offset : offset + limit]

    def get_agent_run_events(self, run_id: str) -> list[AgentRunEvent]:
        if run_id != "old-1":
            return []
        return [AgentRunEvent("agent-1", "old-1", event_type="run_started", data='{"n": 1}', id=5)]

    def get_llm_usage(
        self, agent_id: str | None = None, run_id: str | None = None, limit: int = 100
    ) -> list[AgentLLMUsage]:
        usage = AgentLLMUsage(
            agent_id="agent-1",
            run_id="old-1",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=10,
            output_tokens=5,
            usage_metrics='{"cost_usd": 0.001}',
            id=42,
            created_at=datetime(2025, 1, 1, 0, 0, 1),
        )
        return [usage]


def test_import_from_another_curio_persistence(persistence: StorePersistence) -> None:
    source = _SdkSource()
    counts = persistence.import_from(source)
    assert counts == {"runs": 2, "events": 1, "llm_usage": 1, "skipped_runs": 0}
    assert [r.run_id for r in persistence.get_agent_runs("agent-1")] == ["old-2", "old-1"]
    run = persistence.get_agent_run("old-1")
    assert run is not None
    assert (run.status, run.final_synthesis_output, run.total_iterations) == (
        "completed",
        "output old-1",
        2,
    )
    (event,) = persistence.get_agent_run_events("old-1")
    assert event.get_data_dict() == {"n": 1}
    (usage,) = persistence.get_llm_usage(run_id="old-1")
    assert usage.get_cost_usd() == pytest.approx(0.001)
    assert usage.created_at is not None and usage.created_at.year == 2025
    # a call logged now lists before the imported one of 2025
    persistence.log_llm_usage(AgentLLMUsage(agent_id="agent-1", provider="p", model="m"))
    assert [u.model for u in persistence.get_llm_usage("agent-1")] == ["m", "gpt-4o-mini"]

    # importing again adds nothing
    assert persistence.import_from(source) == {
        "runs": 0,
        "events": 0,
        "llm_usage": 0,
        "skipped_runs": 2,
    }
    assert len(persistence.get_llm_usage()) == 2

    # from one of ours, too
    other = InMemoryPersistence()
    other.import_from(persistence)
    assert other.get_all_data()["runs"].keys() == persistence.get_all_data()["runs"].keys()
    other.close()


# ---- an agent's whole run, as the SDK's BaseAgent.run() persists it ---------------


def test_agent_run_lifecycle(persistence: StorePersistence) -> None:
    run_id = str(uuid.uuid4())
    log: list[tuple[str, dict[str, Any]]] = [
        ("run_started", {"objective": "Curate", "max_iterations": 3, "run_id": run_id}),
        ("iteration_started", {"iteration": 1, "run_id": run_id}),
        ("planning_started", {"prompt_length": 1200}),
        ("planning_completed", {"action_count": 1, "notes": ""}),
        ("action_execution_started", {"action_name": "fetch", "action_args": {"n": 5}}),
        ("action_execution_completed", {"action_name": "fetch", "observation": "a\x00b"}),
        ("critique_started", {"prompt_length": 1300}),
        ("critique_completed", {"status": "done", "summary": "ok"}),
        ("critique_result", {"critique": {"status": "done"}, "iteration": 1}),
        ("synthesis_started", {"prompt_length": 1400}),
        ("synthesis_completed", {"summary_length": 7}),
    ]
    current = AgentRun(
        agent_id="curator",
        run_id=run_id,
        agent_name="Curator",
        objective="Curate",
        additional_context=json.dumps({"topic": "AI"}),
        started_at=datetime.now(),
        status=AgentRunStatus.RUNNING.value,
        execution_history=json.dumps([]),
    )
    persistence.create_agent_run(current)
    for event_type, data in log:
        persistence.log_agent_run_event(
            AgentRunEvent(
                agent_id="curator",
                run_id=run_id,
                agent_name="Curator",
                timestamp=datetime.now(),
                event_type=event_type,
                data=json.dumps(data) if data else None,
            )
        )
        if event_type.endswith("_started") and event_type != "run_started":
            persistence.log_llm_usage(
                AgentLLMUsage(
                    agent_id="curator",
                    run_id=run_id,
                    provider="openai",
                    model="gpt-4o-mini",
                    prompt="p" * 10,
                    prompt_length=10,
                    input_params=json.dumps({"temperature": 0.7, "max_tokens": 4096}),
                    input_tokens=100,
                    output_tokens=20,
                    response_content="r",
                    response_length=1,
                    latency_ms=300,
                )
            )
    current.finished_at = datetime.now()
    current.total_iterations = 1
    current.final_synthesis_output = "Summary"
    current.execution_history = json.dumps([{"step": "synthesis_result"}])
    current.status = AgentRunStatus.COMPLETED.value
    persistence.update_agent_run(run_id, current)
    persistence.log_agent_run_event(
        AgentRunEvent("curator", run_id, "Curator", datetime.now(), "run_completed", "{}")
    )

    (history,) = persistence.get_agent_runs(agent_id="curator", limit=10)
    assert history.to_dict() | {"created_at": None, "updated_at": None} == current.to_dict() | {
        "created_at": None,
        "updated_at": None,
    }
    events = persistence.get_agent_run_events(run_id)
    assert [e.event_type for e in events] == [t for t, _ in log] + ["run_completed"]
    assert events[5].get_data_dict()["observation"] == "a\x00b"
    assert events[-1].data == "{}"
    usage = persistence.get_llm_usage(run_id=run_id)
    assert len(usage) == 5 and all(u.get_cost_usd() for u in usage)
    stats = persistence.get_agent_run_stats("curator")
    assert (stats["total_runs"], stats["completed_runs"], stats["total_llm_calls"]) == (1, 1, 5)
    assert (stats["total_input_tokens"], stats["total_output_tokens"]) == (500, 100)
    assert stats["avg_iterations"] == 1.0


def test_concurrent_audit_writers_keep_one_chain(persistence: StorePersistence) -> None:
    """Writers racing on one run's audit log each chain after the last one committed.

    Without one writer per chain from reading its head to appending (an advisory lock on
    PostgreSQL), two writers read the same head and the chain forks.
    """
    writers, each = 6, 8
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        start.wait()
        for i in range(each):
            persistence.log_audit_event(
                {"agent_id": "agent-1", "run_id": "r1", "action": f"w{w}-{i}"}
            )
            # Another chain of the same tenant, interleaved: its own chain, unforked too.
            persistence.log_audit_event(
                {"agent_id": "agent-1", "run_id": "r2", "action": f"w{w}-{i}"}
            )

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))
    for run_id in ("r1", "r2"):
        events = list(reversed(persistence.get_audit_events(run_id=run_id, limit=1000)))
        assert sorted(e["action"] for e in events) == sorted(
            f"w{w}-{i}" for w in range(writers) for i in range(each)
        )
        heads = [e["prev_hash"] for e in events]
        assert len(set(heads)) == len(heads), f"{run_id}: two events chain after one head"
        assert heads[0] is None
        assert chain_ok(events), run_id
