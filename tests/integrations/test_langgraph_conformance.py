"""LangGraph's own published conformance suite, every capability, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from agentkeep import Store
from agentkeep.integrations.langgraph import AgentkeepSaver


async def test_conformance_every_capability(store: Store) -> None:
    @checkpointer_test(name=f"AgentkeepSaver[{store.backend}]")
    async def saver() -> AsyncIterator[AgentkeepSaver]:
        yield AgentkeepSaver(store)

    report = await validate(saver)
    failures = {cap: result.failures for cap, result in report.results.items() if not result.passed}
    assert not failures, failures
    assert {cap for cap, r in report.results.items() if r.detected} == {
        c.value for c in ALL_CAPABILITIES
    }
