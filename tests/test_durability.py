"""Durability: what was acknowledged is still there after a close, a reopen, or a SIGKILL.

On a SQLite file at each durability setting and on PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from _multiproc import kill9, spawn_child

import agentkeep
from agentkeep import Store
from agentkeep.errors import InvalidInput

pytestmark = pytest.mark.slow

TENANT = "durable"


@pytest.fixture(params=["sqlite-normal", "sqlite-full", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(url, durability) of a fresh database."""
    param = str(request.param)
    if param.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/durable.db", param.split("-")[1]
    server: Any = request.getfixturevalue("postgres_server")
    url = str(server.new_database())
    agentkeep.connect(url, auto_migrate=True).close()
    return url, "normal"


def _write_everything(store: Store) -> dict[str, Any]:
    agent = store.agents.create(model="gpt-4o-mini", name="durable", tools=[{"type": "code"}])
    session = store.sessions.create(agent_id=agent.id, user_id="u1", metadata={"k": "v"})
    for i in range(6):
        store.messages.append(session.id, "user" if i % 2 == 0 else "assistant", f"m{i}")
    store.messages.append(
        session.id,
        "assistant",
        [{"type": "tool_use", "id": "c1", "name": "search", "input": {"q": "x"}}],
        idempotency_key="idem-1",
    )
    store.messages.append(
        session.id, "tool", [{"type": "tool_result", "tool_use_id": "c1", "content": "3 hits"}]
    )
    run = store.runs.create(agent.id, session_id=session.id, objective="answer")
    store.runs.transition(run.id, "in_progress")
    store.runs.add_usage(run.id, input_tokens=10, output_tokens=5, cost_usd=Decimal("0.0001"))
    step = store.run_steps.create(run.id, "tool_calls")
    call = store.tool_calls.create("search", {"q": "x"}, run_id=run.id, session_id=session.id)
    store.tool_calls.transition(call.id, "executing")
    store.tool_calls.complete(call.id, {"hits": 3})
    store.events.append("run_started", run_id=run.id, session_id=session.id, data={"a": 1})
    store.events.append("custom", run_id=run.id, channel="monitor", data={"b": [1, 2]})
    usage = store.usage.record(
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=10,
        output_tokens=5,
        latency_ms=42,
        run_id=run.id,
        cost_usd=Decimal("0.0001"),
    )
    snapshot = store.snapshots.create(session.id, label="before", state={"todo": ["a"]})
    fork = store.sessions.fork(session.id, at_seq=3, title="fork")
    doc = store.state.put("todos", f"{session.id}/list", {"items": ["a", "b"]})
    return {
        "agent": agent.id,
        "session": session.id,
        "run": run.id,
        "step": step.id,
        "call": call.id,
        "usage": usage.id,
        "snapshot": snapshot.id,
        "fork": fork.id,
        "doc": (doc.namespace, doc.key),
    }


def _read_everything(store: Store, ids: dict[str, Any]) -> dict[str, Any]:
    return {
        "agent": store.agents.get(ids["agent"]),
        "session": store.sessions.get(ids["session"]),
        "messages": list(store.messages.list(ids["session"], limit=1000).items),
        "run": store.runs.get(ids["run"]),
        "step": store.run_steps.get(ids["step"]),
        "call": store.tool_calls.get(ids["call"]),
        "events": store.events.list(run_id=ids["run"]),
        "usage": store.usage.get(ids["usage"]),
        "snapshot": store.snapshots.get(ids["snapshot"]),
        "fork": store.sessions.get(ids["fork"]),
        "fork_messages": list(store.messages.list(ids["fork"], limit=1000).items),
        "doc": store.state.get(*ids["doc"]),
    }


def test_reopen_after_close_keeps_everything(target: tuple[str, str]) -> None:
    url, durability = target
    with agentkeep.connect(url, tenant=TENANT, durability=durability) as store:
        ids = _write_everything(store)
        before = _read_everything(store, ids)
    assert len(before["messages"]) == 8
    assert len(before["fork_messages"]) == 3
    assert len(before["events"]) == 2
    with agentkeep.connect(url, tenant=TENANT, durability=durability) as store:
        after = _read_everything(store, ids)
        assert store.check_consistency().ok
    for name, value in before.items():
        assert after[name] == value, name


def test_sqlite_reopen_after_close_leaves_a_sound_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sound.db"
    with agentkeep.connect(url) as store:
        _write_everything(store)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


_APPEND_UNTIL_KILLED = """
import json, sys
import agentkeep

url, durability, session_id = sys.argv[1], sys.argv[2], sys.argv[3]
store = agentkeep.connect(url, tenant="durable", durability=durability)
print("READY", flush=True)
for i in range(1_000_000):
    if i % 4 == 3:
        batch = store.messages.append_many(
            session_id, [{"role": "assistant", "content": f"b{i}-{k}"} for k in range(5)]
        )
        acked = [[m.id, m.seq] for m in batch]
    else:
        m = store.messages.append(session_id, "user", f"m{i}", idempotency_key=f"k{i}")
        acked = [[m.id, m.seq]]
    print("ACK " + json.dumps(acked), flush=True)
"""


def _all_messages(store: Store, session_id: str) -> Iterator[Any]:
    """Every stored message, page by page: the child may ack more than any one page holds."""
    after: str | None = None
    while True:
        page = store.messages.list(session_id, limit=500, after=after)
        yield from page.items
        if not page.has_more:
            return
        after = page.last_id


def test_sigkill_after_acknowledged_appends_loses_none(target: tuple[str, str]) -> None:
    url, durability = target
    with agentkeep.connect(url, tenant=TENANT) as store:
        session = store.sessions.create()
    child = spawn_child(_APPEND_UNTIL_KILLED, url, durability, session.id)
    assert child.stdout is not None
    acknowledged: dict[str, int] = {}
    try:
        for line in child.stdout:
            if line.startswith("ACK "):
                acknowledged.update({mid: seq for mid, seq in json.loads(line[4:])})
                if len(acknowledged) >= 300:
                    kill9(child)
                    break
        else:
            raise AssertionError(f"the child stopped by itself: {child.communicate()[1]}")
        rest = child.stdout.read()  # the rest of the pipe, past what the loop buffered
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    for line in rest.splitlines():  # acknowledged before the kill, still in the pipe
        if line.startswith("ACK "):
            acknowledged.update({mid: seq for mid, seq in json.loads(line[4:])})

    with agentkeep.connect(url, tenant=TENANT, durability=durability) as store:
        stored = {m.id: m.seq for m in _all_messages(store, session.id)}
        current = store.sessions.get(session.id)
        # Every acknowledged append is there, at the seq it was acknowledged with ...
        assert {mid: stored.get(mid) for mid in acknowledged} == acknowledged
        # ... and what is stored is gapless (at most the one unacknowledged write more).
        assert sorted(stored.values()) == list(range(1, len(stored) + 1))
        assert len(stored) - len(acknowledged) in range(0, 6)
        assert (current.message_count, current.last_seq) == (len(stored), len(stored))
        # The store keeps working after the crash.
        assert store.messages.append(session.id, "user", "after").seq == len(stored) + 1


# -- the setting on every connection that writes ------------------------------------------------
#
# A SIGKILL cannot tell NORMAL from FULL (both keep what was committed when only the
# process dies), so each mode is checked where it takes effect: on every connection
# the store opened, through SQLAlchemy's pool and through the fast path alike.

_SQLITE_SYNCHRONOUS = {"normal": 1, "full": 2, "off": 0}


def _recording(monkeypatch: pytest.MonkeyPatch, module: Any, opened: list[Any]) -> None:
    """Record every connection ``module.connect`` opens from now on."""
    real: Callable[..., Any] = module.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = real(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(module, "connect", connect)


@pytest.mark.parametrize("durability", ["normal", "full", "off"])
def test_sqlite_durability_is_set_on_every_writing_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    opened: list[sqlite3.Connection] = []
    # SQLAlchemy's pysqlite driver connects through sqlite3.dbapi2, the fast path through sqlite3.
    _recording(monkeypatch, sqlite3, opened)
    _recording(monkeypatch, sqlite3.dbapi2, opened)
    with agentkeep.connect(f"sqlite:///{tmp_path}/d.db", durability=durability) as store:
        ids = _write_everything(store)  # SQLAlchemy-path writes and fast-path appends
        store.messages.append_many(ids["session"], [{"role": "user", "content": "many"}])
        writers = [c for c in opened if c.total_changes > 0]
        # At least the pool's connection and the fast path's writer wrote.
        assert len(writers) >= 2, f"only {len(writers)} of {len(opened)} connections wrote"
        settings = [c.execute("PRAGMA synchronous").fetchone()[0] for c in writers]
    assert settings == [_SQLITE_SYNCHRONOUS[durability]] * len(writers)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("durability", "server", "expected"),
    [("normal", "off", "off"), ("full", "off", "on"), ("off", "on", "off")],
)
def test_postgres_durability_is_set_on_every_connection(
    postgres_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    durability: str,
    server: str,
    expected: str,
) -> None:
    """``normal`` keeps the server's ``synchronous_commit``; ``full`` and ``off`` override it."""
    url = str(postgres_server.new_database())
    agentkeep.connect(url, auto_migrate=True).close()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = {server}')
    opened: list[psycopg.Connection[Any]] = []
    _recording(monkeypatch, psycopg, opened)
    with agentkeep.connect(url, durability=durability) as store:
        ids = _write_everything(store)
        store.messages.append_many(ids["session"], [{"role": "user", "content": "many"}])
        live = [c for c in opened if not c.closed]
        # At least the pool's connection and the fast path's connection are open.
        assert len(live) >= 2, f"only {len(live)} of {len(opened)} connections are open"
        settings = []
        for conn in live:
            with conn.cursor() as cur:
                cur.execute("SHOW synchronous_commit")
                row = cur.fetchone()
                assert row is not None
                settings.append(row[0])
            if not conn.autocommit:
                conn.rollback()
    assert settings == [expected] * len(live)


@pytest.mark.parametrize("bad", ["fast", "", "FULLY", 1])
def test_a_bad_durability_is_refused_naming_the_field(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "bad.db"
    with pytest.raises(InvalidInput) as err:
        agentkeep.connect(f"sqlite:///{path}", durability=bad)
    assert err.value.field == "durability"
    assert not path.exists(), "nothing is created for a refused connect"


def test_the_durability_setting_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKEEP_DURABILITY", "off")
    with agentkeep.connect(f"sqlite:///{tmp_path}/env.db") as store:
        assert store.sessions.create().id
        with store._core.write() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0
    monkeypatch.setenv("AGENTKEEP_DURABILITY", "sometimes")
    with pytest.raises(InvalidInput) as err:
        agentkeep.connect(f"sqlite:///{tmp_path}/env.db")
    assert err.value.field == "durability"
