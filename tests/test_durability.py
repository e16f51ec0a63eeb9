"""Durability: what was acknowledged is still there after a close, a reopen, or a SIGKILL.

On a SQLite file at each durability setting and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from _multiproc import spawn_child

import agentkeep
from agentkeep import Store

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
                    os.kill(child.pid, signal.SIGKILL)
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
        stored = {m.id: m.seq for m in store.messages.list(session.id, limit=1000).items}
        current = store.sessions.get(session.id)
        # Every acknowledged append is there, at the seq it was acknowledged with ...
        assert {mid: stored.get(mid) for mid in acknowledged} == acknowledged
        # ... and what is stored is gapless (at most the one unacknowledged write more).
        assert sorted(stored.values()) == list(range(1, len(stored) + 1))
        assert len(stored) - len(acknowledged) in range(0, 6)
        assert (current.message_count, current.last_seq) == (len(stored), len(stored))
        # The store keeps working after the crash.
        assert store.messages.append(session.id, "user", "after").seq == len(stored) + 1
