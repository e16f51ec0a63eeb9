"""Stats: runs, LLM calls, tokens, cost, latency percentiles, tools, counts; per agent and tenant."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from agentkeep import AsyncStore, InvalidInput, Store
from agentkeep.store._steps import Op, Read
from agentkeep.store.schema import tool_calls
from agentkeep.store.stats import percentiles


def _run(store: Store, agent_id: str, status: str, iterations: int = 0) -> str:
    run = store.runs.create(agent_id)
    if iterations:
        store.runs.update(run.id, iterations=iterations)
    if status == "completed":
        store.runs.transition(run.id, "in_progress")
    if status != "queued":
        store.runs.transition(run.id, status)
    return run.id


def _set_duration(store: Store, call_id: str, ms: int) -> None:
    with store._core.write() as conn:
        conn.execute(
            sa.update(tool_calls)
            .where(tool_calls.c.tenant_id == store.tenant_id, tool_calls.c.id == call_id)
            .values(duration_ms=ms)
        )


def _populate(store: Store) -> None:
    """Agent A: 4 runs, 4 calls, 3 tool calls; agent B: 1 run, 1 call, 1 tool call."""
    _run(store, "asst_a", "completed", iterations=2)
    _run(store, "asst_a", "completed", iterations=4)
    _run(store, "asst_a", "failed")
    _run(store, "asst_a", "cancelled", iterations=1)
    _run(store, "asst_b", "queued", iterations=10)
    for i, latency in enumerate((100, 200, 300, 400)):
        store.usage.record(
            provider="p",
            model="m",
            agent_id="asst_a",
            input_tokens=10 * (i + 1),
            output_tokens=i + 1,
            latency_ms=latency,
            cost_usd=Decimal("0.25") if i < 3 else None,
            status="error" if i == 3 else "success",
        )
    store.usage.record(provider="p", model="m", agent_id="asst_b", latency_ms=5000)
    search1 = store.tool_calls.create("search", {"q": 1}, agent_id="asst_a")
    store.tool_calls.transition(search1.id, "executing")
    store.tool_calls.complete(search1.id, "found")
    _set_duration(store, search1.id, 100)
    search2 = store.tool_calls.create("search", {"q": 2}, agent_id="asst_a")
    store.tool_calls.transition(search2.id, "executing")
    store.tool_calls.complete(search2.id, "boom", is_error=True)
    _set_duration(store, search2.id, 300)
    store.tool_calls.create("write_file", {}, agent_id="asst_a")
    store.tool_calls.create("search", {}, agent_id="asst_b")
    sa_ = store.sessions.create(agent_id="asst_a")
    store.messages.append(sa_.id, "user", "hi")
    store.messages.append(sa_.id, "assistant", "hello", agent_id="asst_a")
    store.snapshots.create(sa_.id, label="s1")
    sb = store.sessions.create(agent_id="asst_b")
    store.messages.append(sb.id, "user", "x")
    # A thread without an agent, where asst_a wrote one message.
    thread = store.sessions.create(kind="thread")
    store.messages.append(thread.id, "user", "q")
    store.messages.append(thread.id, "assistant", "a", agent_id="asst_a")


def test_empty_tenant(store: Store) -> None:
    st = store.stats.get()
    assert st.agent_id is None
    assert (st.total_runs, st.llm_calls, st.total_tool_calls, st.messages) == (0, 0, 0, 0)
    assert st.avg_iterations == 0.0
    assert st.cost_usd == Decimal(0) and st.unpriced_calls == 0
    assert st.latency_ms == {"p50": None, "p75": None, "p90": None, "p95": None, "p99": None}
    assert (st.avg_input_tokens_per_call, st.avg_cost_per_call_usd) == (None, None)
    assert st.avg_messages_per_session == 0.0
    assert st.tools == [] and st.tool_calls_by_state == {}


def test_agent_stats(store: Store) -> None:
    _populate(store)
    st = store.stats.get("asst_a")
    assert st.agent_id == "asst_a"
    assert (st.total_runs, st.completed_runs, st.failed_runs, st.cancelled_runs) == (4, 2, 1, 1)
    assert st.avg_iterations == pytest.approx(7 / 4)
    assert (st.llm_calls, st.input_tokens, st.output_tokens) == (4, 100, 10)
    assert st.cost_usd == Decimal("0.75")
    assert st.unpriced_calls == 1
    # percentile_cont over 100, 200, 300, 400.
    assert st.latency_ms == pytest.approx(
        {"p50": 250.0, "p75": 325.0, "p90": 370.0, "p95": 385.0, "p99": 397.0}
    )
    assert (st.avg_input_tokens_per_call, st.avg_output_tokens_per_call) == (25.0, 2.5)
    assert st.avg_cost_per_call_usd == Decimal("0.25")  # 0.75 over its three priced calls
    tools = {t.name: t for t in st.tools}
    assert set(tools) == {"search", "write_file"}
    assert (tools["search"].calls, tools["search"].errors) == (2, 1)
    assert tools["search"].avg_duration_ms == pytest.approx(200.0)
    assert (tools["write_file"].calls, tools["write_file"].avg_duration_ms) == (1, None)
    assert st.tool_calls_by_state == {"completed": 1, "failed": 1, "pending": 1}
    assert st.total_tool_calls == 3
    assert st.sessions == 1
    assert st.messages == 3  # two in its session, one it wrote in the thread
    assert st.snapshots == 1


def test_tenant_wide_stats(store: Store) -> None:
    _populate(store)
    st = store.stats.get()
    assert st.agent_id is None
    assert (st.total_runs, st.completed_runs, st.failed_runs, st.cancelled_runs) == (5, 2, 1, 1)
    assert st.avg_iterations == pytest.approx(17 / 5)
    assert (st.llm_calls, st.unpriced_calls, st.cost_usd) == (5, 2, Decimal("0.75"))
    assert st.latency_ms["p50"] == pytest.approx(300.0)
    assert st.latency_ms["p99"] == pytest.approx(400 + 4600 * 0.96)
    assert {t.name: t.calls for t in st.tools} == {"search": 3, "write_file": 1}
    assert st.tool_calls_by_state == {"completed": 1, "failed": 1, "pending": 2}
    assert st.total_tool_calls == 4
    assert (st.sessions, st.messages, st.snapshots) == (3, 5, 1)
    assert st.avg_messages_per_session == pytest.approx(5 / 3)
    # Another tenant sees none of it.
    other = store.tenant(store.tenant_id + "_other").stats.get()
    assert (other.total_runs, other.llm_calls, other.messages, other.sessions) == (0, 0, 0, 0)


def test_cost_is_unknown_only_when_no_call_is_priced(store: Store) -> None:
    store.usage.record(provider="nobody", model="unknown-model", agent_id="a")
    st = store.stats.get("a")
    assert (st.llm_calls, st.cost_usd, st.unpriced_calls) == (1, None, 1)
    store.usage.record(provider="nobody", model="unknown-model", agent_id="a", cost_usd=Decimal(1))
    st = store.stats.get("a")
    assert (st.llm_calls, st.cost_usd, st.unpriced_calls) == (2, Decimal(1), 1)


def test_single_latency_and_missing_latencies(store: Store) -> None:
    store.usage.record(provider="p", model="m", agent_id="a", latency_ms=42)
    store.usage.record(provider="p", model="m", agent_id="a")  # no latency: not counted
    assert store.stats.get("a").latency_ms == dict.fromkeys(
        ("p50", "p75", "p90", "p95", "p99"), 42.0
    )


def test_percentiles_match_a_reference_on_many_values(store: Store) -> None:
    values = [(i * 7919) % 1000 for i in range(1, 501)]
    for v in values:
        store.usage.record(provider="p", model="m", agent_id="many", latency_ms=v)
    ordered = sorted(values)

    def reference(p: float) -> float:
        pos = p * (len(ordered) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    got = store.stats.get("many").latency_ms
    for name, p in (("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        assert got[name] == pytest.approx(reference(p)), name


def test_percentiles_helper_agrees_with_percentile_cont_on_postgres(_postgres_store: Store) -> None:
    from agentkeep.store.schema import llm_usage as u

    store = _postgres_store.tenant(f"t_pct_{uuid.uuid4().hex[:10]}")
    for v in (3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5):
        store.usage.record(provider="p", model="m", latency_ms=v)
    where = [u.c.tenant_id == store.tenant_id]
    sql = store._core.message_sql

    def read() -> Op[dict[str, float | None]]:
        found = yield Read("percentiles", lambda: percentiles(sql, u.c.latency_ms, where))
        return found

    ours = store._core.run_op(read())
    with store._core.read() as conn:
        for name, p in (("p50", 0.5), ("p75", 0.75), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
            theirs = conn.execute(
                sa.select(sa.func.percentile_cont(p).within_group(u.c.latency_ms)).where(*where)
            ).scalar_one()
            assert ours[name] == pytest.approx(float(theirs)), name


def test_bad_agent_id(store: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        store.stats.get(5)  # type: ignore[arg-type]
    assert err.value.field == "agent_id"


async def test_async_stats(astore: AsyncStore) -> None:
    await astore.usage.record(provider="p", model="m", agent_id="a", latency_ms=10)
    st = await astore.stats.get("a")
    assert st.llm_calls == 1 and st.latency_ms["p50"] == 10.0


def test_cached_and_reasoning_tokens_and_a_time_window(store: Store) -> None:
    early = store.usage.record(
        provider="p",
        model="m",
        agent_id="w",
        input_tokens=10,
        cached_tokens=4,
        output_tokens=2,
        reasoning_tokens=1,
    )
    late = store.usage.record(
        provider="p",
        model="m",
        agent_id="w",
        input_tokens=30,
        cached_tokens=6,
        output_tokens=5,
        reasoning_tokens=5,
    )
    both = store.stats.get("w")
    assert (both.cached_tokens, both.reasoning_tokens, both.input_tokens) == (10, 6, 40)
    assert both.avg_input_tokens_per_call == 20.0
    window = [u for u in (early, late) if u.created_at >= late.created_at]
    recent = store.stats.get("w", created_after=late.created_at)
    assert recent.llm_calls == len(window)
    assert recent.input_tokens == sum(u.input_tokens for u in window)
    before = store.stats.get("w", created_before=late.created_at)
    assert before.llm_calls + recent.llm_calls == 2
    assert store.stats.get(created_after=late.created_at).sessions == 0
