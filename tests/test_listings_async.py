"""Listings of the async API (agents, runs, tool calls, usage): the sync API's pages, every
filter, read on the async connections (no worker thread); a metadata key of any text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, Store

_PAGING = ("limit", "after", "before", "order", "sort", "offset")


async def _same_pages(listing: Any, alisting: Any, queries: list[dict[str, Any]]) -> list[Any]:
    """Each query's page from the sync ``listing`` and the async one; equal; the sync pages."""
    pages = [listing(**q) for q in queries]
    for q, page in zip(queries, pages, strict=True):
        got = await alisting(**q)
        assert (got.items, got.has_more, got.first_id, got.last_id) == (
            page.items,
            page.has_more,
            page.first_id,
            page.last_id,
        ), q
    return pages


async def test_agents_runs_tool_calls_and_usage_list_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    agents = [
        store.agents.create(
            model="m1" if i % 2 else "m2",
            name=f"agent {i % 3}",
            metadata={'team "a"': str(i % 2), "i": str(i)},
        )
        for i in range(7)
    ]
    s = store.sessions.create()
    runs = [
        store.runs.create(agents[i % 3].id, session_id=s.id if i % 2 else None) for i in range(9)
    ]
    store.runs.transition(runs[0].id, "in_progress")
    store.runs.transition(runs[1].id, "cancelled")
    calls = [
        store.tool_calls.create(f"tool{i % 2}", {"i": i}, run_id=runs[i % 3].id) for i in range(8)
    ]
    store.tool_calls.complete(calls[0].id, {"ok": False}, is_error=True)
    store.tool_calls.complete(calls[1].id, {"ok": True})
    store.tool_calls.require_approval(calls[2].id, by="ops")
    store.tool_calls.decide(calls[2].id, "approved", by="ops")
    usage = [
        store.usage.record(
            provider="openai" if i % 2 else "anthropic",
            model=f"m{i % 3}",
            input_tokens=i,
            run_id=runs[i % 2].id,
            status="error" if i == 5 else "success",
        )
        for i in range(6)
    ]
    no_worker_threads(monkeypatch, "a listing")

    agent_pages = await _same_pages(
        store.agents.list,
        astore.agents.list,
        [
            {},
            {"model": "m1", "limit": 2},
            {"name": "agent 1", "order": "asc"},
            {"metadata": {'team "a"': "1"}},
            {"metadata": {'team "a"': "0", "i": "4"}},
            {"created_after": start, "created_before": datetime.now(UTC) + timedelta(hours=1)},
            {"after": agents[5].id, "before": agents[1].id},
        ],
    )
    assert [a.id for a in agent_pages[3]] == [
        a.id for a in reversed(agents) if int(a.metadata["i"]) % 2
    ]
    assert [a.id for a in agent_pages[4]] == [agents[4].id]

    run_pages = await _same_pages(
        store.runs.list,
        astore.runs.list,
        [
            {},
            {"agent_id": agents[1].id},
            {"session_id": s.id, "order": "asc"},
            {"status": ["in_progress", "cancelled"]},
            {"status": "queued", "limit": 3, "offset": 2},
            {"sort": "created_at", "after": runs[6].id},
            {"sort": "created_at", "before": runs[2].id, "order": "asc"},
        ],
    )
    assert {r.id for r in run_pages[3]} == {runs[0].id, runs[1].id}

    call_pages = await _same_pages(
        store.tool_calls.list,
        astore.tool_calls.list,
        [
            {},
            {"run_id": runs[1].id},
            {"name": "tool0", "order": "asc"},
            {"state": ["completed", "failed"]},
            {"is_error": True},
            {"is_error": False, "limit": 3},
            {"has_approval": True},
            {"has_approval": False, "state": "pending"},
            {"created_after": start, "after": calls[6].id},
        ],
    )
    assert [c.id for c in call_pages[4]] == [calls[0].id]
    assert calls[0].id not in {c.id for c in call_pages[5]}
    assert [c.id for c in call_pages[6]] == [calls[2].id]
    assert calls[2].id not in {c.id for c in call_pages[7]} and len(call_pages[7].items) == 5
    assert call_pages[6].items[0].approval is not None

    usage_pages = await _same_pages(
        store.usage.list,
        astore.usage.list,
        [
            {},
            {"provider": "openai", "model": "m1"},
            {"run_id": runs[0].id, "order": "asc", "limit": 2},
            {"status": "error"},
            {"created_after": start, "before": usage[2].id},
        ],
    )
    assert [u.input_tokens for u in usage_pages[1]] == [1]
    assert [u.input_tokens for u in usage_pages[3]] == [5]
    assert [u.input_tokens for u in usage_pages[4]] == [5, 4, 3]

    with pytest.raises(InvalidInput) as err:
        await astore.runs.list(sort="created_at", after="run_missing")
    assert err.value.field == "after"
    with pytest.raises(InvalidInput) as err:
        await astore.tool_calls.list(is_error=1)  # type: ignore[arg-type]
    assert err.value.field == "is_error"
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    for page in (
        await other.agents.list(),
        await other.runs.list(),
        await other.tool_calls.list(),
        await other.usage.list(),
    ):
        assert page.items == [] and not page.has_more
