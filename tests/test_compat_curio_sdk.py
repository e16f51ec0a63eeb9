"""agentkeep.compat.curio side by side with curio-agent-sdk 0.6's own persistence classes.

The same operations, with the SDK's own record classes, go to the SDK's
``SQLitePersistence`` and ``InMemoryPersistence`` and to ours on every backend;
what each answers must agree (run fields, events, usage, statistics with the
SDK 0.6 analytics, the hash-chained audit log, the async methods). Where ours
knows more (a run's token totals, which the SDK's SQLite schema drops), the test
says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from curio_agent_sdk.models.agent import AgentLLMUsage, AgentRun, AgentRunEvent
from curio_agent_sdk.persistence import InMemoryPersistence as SdkMemory
from curio_agent_sdk.persistence import SQLitePersistence as SdkSQLite

from agentkeep.compat.curio import StorePersistence
from agentkeep.compat.curio._audit import chain_ok

T0 = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture(params=["sqlite", "memory"])
def sdk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        persistence: Any = SdkSQLite(str(tmp_path / "sdk.db"))
        persistence.initialize_schema()
    else:
        persistence = SdkMemory()
    yield persistence
    persistence.close()


@pytest.fixture
def ours(backend: str, db_url: str, request: pytest.FixtureRequest) -> Iterator[StorePersistence]:
    store: Any = request.getfixturevalue("store")
    yield StorePersistence(store)


def _exercise(p: Any) -> dict[str, Any]:
    """The same calls on any curio persistence; what it answers, comparably."""
    for run_id, agent in (("r1", "agent-1"), ("r2", "agent-1"), ("r3", "agent-2")):
        p.create_agent_run(
            AgentRun(agent_id=agent, run_id=run_id, agent_name="A", objective=f"do {run_id}")
        )
    run = AgentRun(
        agent_id="agent-1",
        run_id="r1",
        agent_name="A",
        objective="do r1",
        status="completed",
        total_iterations=3,
        total_llm_calls=2,
        total_tool_calls=2,
        total_input_tokens=300,
        total_output_tokens=40,
        final_output="done",
        execution_history=json.dumps([{"i": 1}]),
        metadata=json.dumps({"team": "x"}),
        started_at=T0,
        finished_at=T0.replace(minute=5),
    )
    p.update_agent_run("r1", run)
    asyncio.run(
        p.aupdate_agent_run(
            "r2",
            AgentRun(
                agent_id="agent-1",
                run_id="r2",
                status="error",
                error_message="boom",
                total_iterations=1,
            ),
        )
    )
    for i, (kind, data) in enumerate(
        [
            ("run_started", {}),
            ("tool_call", {"tool_name": "search", "latency_ms": 120, "error": None}),
            ("tool_call", {"tool_name": "search", "latency_ms": 80, "error": "timeout"}),
            ("tool_call", {"tool_name": "fetch", "latency_ms": 30}),
            ("my_event", {"k": [1, 2]}),
        ]
    ):
        event = AgentRunEvent(
            agent_id="agent-1",
            run_id="r1",
            agent_name="A",
            timestamp=T0.replace(second=i),
            event_type=kind,
            data=json.dumps(data),
        )
        asyncio.run(p.alog_agent_run_event(event)) if i % 2 else p.log_agent_run_event(event)
    for i, (latency, inp, out) in enumerate([(100, 100, 10), (300, 200, 30), (200, 50, 5)]):
        usage = AgentLLMUsage(
            agent_id="agent-1" if i < 2 else "agent-2",
            run_id="r1" if i < 2 else "r3",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=inp,
            output_tokens=out,
            latency_ms=latency,
            metadata=json.dumps({"call": i}),
        )
        asyncio.run(p.alog_llm_usage(usage)) if i == 1 else p.log_llm_usage(usage)
    for i, action in enumerate(["agent_run_started", "tool_call_before", "agent_run_completed"]):
        audit = {
            "agent_id": "agent-1",
            "run_id": "r1",
            "actor_type": "agent",
            "actor_id": "agent-1",
            "action": action,
            "resource": None,
            "resource_type": "agent_run",
            "metadata": {"i": i},
            "timestamp": T0.replace(second=10 + i),
        }
        asyncio.run(p.alog_audit_event(audit)) if i == 1 else p.log_audit_event(audit)
    p.log_audit_event({"agent_id": "agent-2", "run_id": "r3", "action": "other", "timestamp": T0})

    got = asyncio.run(p.aget_agent_run("r1"))
    audit_events = p.get_audit_events(run_id="r1")
    answer = {
        "run": {
            name: getattr(got, name)
            for name in (
                "agent_id",
                "run_id",
                "agent_name",
                "objective",
                "status",
                "total_iterations",
                "total_llm_calls",
                "total_tool_calls",
                "total_input_tokens",
                "total_output_tokens",
                "final_output",
                "execution_history",
                "metadata",
                "error_message",
            )
        },
        "times": [str(got.started_at)[:19], str(got.finished_at)[:19]],
        "r2": [(r.status, r.error_message) for r in [p.get_agent_run("r2")]],
        "missing": p.get_agent_run("nope"),
        "runs": sorted(r.run_id for r in p.get_agent_runs("agent-1", limit=10)),
        "all runs": len(p.get_agent_runs(limit=10)),
        "events": [(e.event_type, json.loads(e.data)) for e in p.get_agent_run_events("r1")],
        "tool events": len(p.get_agent_run_events("r1", event_type="tool_call")),
        "usage": sorted(
            (u.run_id, u.input_tokens, u.output_tokens, u.latency_ms, u.total_tokens)
            for u in p.get_llm_usage(agent_id="agent-1")
        ),
        "usage of r3": [u.input_tokens for u in p.get_llm_usage(run_id="r3")],
        "stats": p.get_agent_run_stats(agent_id="agent-1"),
        "all stats": p.get_agent_run_stats(),
        "audit": [(a["action"], a["metadata"], a["resource_type"]) for a in audit_events],
        "audit of agent-2": [a["action"] for a in p.get_audit_events(agent_id="agent-2")],
        "health": p.health_check(),
        "deleted": [p.delete_agent_run("r3"), p.delete_agent_run("r3")],
        "after delete": p.get_agent_run("r3"),
    }
    if "hash" in audit_events[0]:  # the tamper-evident chain (the SDK's SQLite backend, ours)
        answer["chain"] = [(a["prev_hash"], a["hash"]) for a in reversed(audit_events)]
        assert chain_ok(list(reversed(audit_events)))
    return answer


_SDK_STATS = (
    "total_runs",
    "completed_runs",
    "error_runs",
    "avg_iterations",
    "total_llm_calls",
    "total_input_tokens",
    "total_output_tokens",
    "tool_metrics",
    "latency_percentiles",
    "token_efficiency",
    "avg_input_tokens_per_call",
    "avg_output_tokens_per_call",
)


def test_the_same_operations_answer_the_same(sdk: Any, ours: StorePersistence) -> None:
    theirs = _exercise(sdk)
    mine = _exercise(ours)
    for key in ("stats", "all stats"):
        assert set(theirs[key]) <= set(mine[key]), "every SDK statistic is there"
        mine[key] = {k: mine[key][k] for k in _SDK_STATS}
        theirs[key] = {k: theirs[key][k] for k in _SDK_STATS}
    if isinstance(sdk, SdkMemory):
        # The SDK's in-memory audit log keeps no hashes and lists oldest first; its
        # SQLite backend (and ours) lists newest first.
        mine.pop("chain")
        theirs["audit"].reverse()
    totals = ("total_llm_calls", "total_tool_calls", "total_input_tokens", "total_output_tokens")
    # We keep the run's totals as given; the SDK's SQLite backend has no columns for them.
    assert [mine["run"][k] for k in totals] == [2, 2, 300, 40]
    if isinstance(sdk, SdkSQLite):
        assert [theirs["run"][k] for k in totals] == [0, 0, 0, 0]
        for k in totals:
            theirs["run"][k] = mine["run"][k]
    assert mine == theirs
