"""LLM usage: recording, costs (caller, price table, unknown), filters, pages, rollups."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, NotFound, Store
from agentkeep.store._prices import price_from_table, price_version

GPT4O: dict[str, Any] = {"provider": "openai", "model": "gpt-4o"}


def test_record_stores_everything_and_get_returns_it(store: Store) -> None:
    u = store.usage.record(
        provider="openai",
        model="gpt-4o",
        input_tokens=1200,
        output_tokens=300,
        cached_tokens=200,
        reasoning_tokens=50,
        latency_ms=850,
        prompt="What is 2+2?",
        response="4",
        input_params={"temperature": 0.2},
        agent_id="asst_1",
        session_id="sess_1",
        run_id="run_1",
        user_id="user_1",
        metadata={"env": "test"},
    )
    assert u.id.startswith("usage_")
    assert (u.prompt_length, u.response_length) == (12, 1)
    assert u.total_tokens == 1500
    assert u.status == "success"
    assert store.usage.get(u.id) == u


def test_prompt_and_response_are_optional(store: Store) -> None:
    u = store.usage.record(provider="openai", model="gpt-4o", input_tokens=1)
    got = store.usage.get(u.id)
    assert (got.prompt, got.response, got.prompt_length, got.response_length) == (
        None,
        None,
        None,
        None,
    )


def test_caller_cost_is_kept_exactly(store: Store) -> None:
    u = store.usage.record(**GPT4O, input_tokens=10, cost_usd=Decimal("0.123456789"))
    assert (u.cost_usd, u.cost_source, u.price_version) == (Decimal("0.123456789"), "caller", None)
    got = store.usage.get(u.id)
    assert got.cost_usd == Decimal("0.123456789")
    assert got.cost_source == "caller"
    # A caller's zero is a known zero, not "unknown".
    free = store.usage.record(provider="local", model="mine", cost_usd=Decimal(0))
    assert store.usage.get(free.id).cost_usd == Decimal(0)


def test_caller_cost_is_rounded_to_the_nano_dollar(store: Store) -> None:
    u = store.usage.record(**GPT4O, cost_usd=Decimal("0.0000000015"))
    assert u.cost_usd == Decimal("0.000000002")  # half-even
    assert store.usage.get(u.id).cost_usd == u.cost_usd


def test_cost_from_the_price_table(store: Store) -> None:
    # gpt-4o: $2.50 / MTok input, $1.25 / MTok cached input, $10 / MTok output.
    u = store.usage.record(**GPT4O, input_tokens=1000, cached_tokens=800, output_tokens=100)
    assert u.cost_usd == Decimal("0.0025")  # 200*2.5e-6 + 800*1.25e-6 + 100*10e-6
    assert u.cost_source == "price_table"
    assert u.price_version == price_version() == "genai-prices==0.2.3"
    assert store.usage.get(u.id).cost_usd == Decimal("0.0025")


def test_price_table_matches_genai_prices_for_other_providers(store: Store) -> None:
    u = store.usage.record(
        provider="anthropic",
        model="claude-3-5-sonnet-latest",
        input_tokens=1_000_000,
        output_tokens=1_000_000,
    )
    assert u.cost_usd == Decimal(18)  # $3 + $15 per MTok
    assert u.cost_source == "price_table"


def test_unknown_model_or_provider_has_unknown_cost(store: Store) -> None:
    for provider, model in (("openai", "no-such-model-xyz"), ("my-vllm", "llama-3-8b")):
        u = store.usage.record(provider=provider, model=model, input_tokens=100, output_tokens=10)
        assert (u.cost_usd, u.cost_source, u.price_version) == (None, None, None)
        got = store.usage.get(u.id)
        assert got.cost_usd is None and got.cost_source is None


def test_pricing_never_uses_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access while pricing")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    priced = price_from_table(
        "openai",
        "gpt-4o-mini",
        input_tokens=1000,
        cached_tokens=0,
        output_tokens=1000,
        at=datetime.now(UTC),
    )
    assert priced is not None and priced[0] > 0


def test_a_model_the_table_lacks_is_searched_once_per_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import genai_prices
    from genai_prices import data_snapshot, types

    args: dict[str, Any] = {"input_tokens": 10, "cached_tokens": 0, "output_tokens": 5}
    at = datetime.now(UTC)
    assert price_from_table("my-vllm", "house-model-q", at=at, **args) is None
    searched: list[str] = []
    calc_price = genai_prices.calc_price

    def counting(*a: Any, **k: Any) -> Any:
        searched.append(a[1])
        return calc_price(*a, **k)

    monkeypatch.setattr(genai_prices, "calc_price", counting)
    assert price_from_table("my-vllm", "house-model-q", at=at, **args) is None
    assert searched == []  # remembered as absent from this table
    # A table replaced in this process (as UpdatePrices does) is searched anew.
    price = types.ModelPrice(input_mtok=Decimal(1), output_mtok=Decimal(2))
    model = types.ModelInfo(
        id="house-model-q", match=types.ClauseEquals(equals="house-model-q"), prices=price
    )
    provider = types.Provider(id="my-vllm", name="mine", api_pattern="x", models=[model])
    snapshot = data_snapshot.DataSnapshot(providers=[provider], from_auto_update=False)
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", snapshot)
    priced = price_from_table("my-vllm", "house-model-q", at=at, **args)
    assert searched == ["house-model-q"]
    assert priced is not None and priced[0] == Decimal("0.00002")


def test_invalid_input_names_the_field(store: Store) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"provider": None, "model": "gpt-4o"}, "provider"),
        ({"provider": "openai", "model": ""}, "model"),
        ({**GPT4O, "input_tokens": -1}, "input_tokens"),
        ({**GPT4O, "output_tokens": 1.5}, "output_tokens"),
        ({**GPT4O, "input_tokens": 5, "cached_tokens": 6}, "cached_tokens"),
        ({**GPT4O, "output_tokens": 5, "reasoning_tokens": 6}, "reasoning_tokens"),
        ({**GPT4O, "latency_ms": -3}, "latency_ms"),
        ({**GPT4O, "status": "weird"}, "status"),
        ({**GPT4O, "cost_usd": Decimal("-0.01")}, "cost_usd"),
        ({**GPT4O, "cost_usd": Decimal("NaN")}, "cost_usd"),
        ({**GPT4O, "cost_usd": True}, "cost_usd"),
        ({**GPT4O, "metadata": {"k": 1}}, "metadata.k"),
        ({**GPT4O, "input_params": [1]}, "input_params"),
        ({**GPT4O, "input_params": {"x": object()}}, "input_params"),
        ({**GPT4O, "created_at": "yesterday"}, "created_at"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidInput) as err:
            store.usage.record(**kwargs)  # type: ignore[arg-type]
        assert err.value.field == field, kwargs
    assert store.usage.list().items == []


def test_missing_usage_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.usage.get("usage_missing")


def test_usage_survives_deleting_its_session(store: Store) -> None:
    s = store.sessions.create(agent_id="asst_x")
    store.messages.append(s.id, "user", "hello")
    u = store.usage.record(**GPT4O, input_tokens=10, session_id=s.id, agent_id="asst_x")
    store.sessions.delete(s.id)
    kept = store.usage.get(u.id)
    assert kept.session_id == s.id
    assert [x.id for x in store.usage.list(session_id=s.id)] == [u.id]


def test_usage_survives_deleting_its_run(store: Store) -> None:
    run = store.runs.create("asst_r")
    u = store.usage.record(**GPT4O, input_tokens=10, run_id=run.id, agent_id="asst_r")
    store.runs.delete(run.id)
    assert store.usage.get(u.id).run_id == run.id


def test_filters(store: Store) -> None:
    a = store.usage.record(**GPT4O, agent_id="a1", user_id="u1", session_id="s1", run_id="r1")
    b = store.usage.record(
        provider="anthropic",
        model="claude-3-5-haiku-latest",
        agent_id="a2",
        user_id="u2",
        status="error",
        error_message="overloaded",
    )
    c = store.usage.record(**GPT4O, agent_id="a1", user_id="u2")

    def ids(**kw: object) -> list[str]:
        return [u.id for u in store.usage.list(order="asc", **kw)]  # type: ignore[arg-type]

    assert ids() == [a.id, b.id, c.id]
    assert ids(agent_id="a1") == [a.id, c.id]
    assert ids(user_id="u2") == [b.id, c.id]
    assert ids(session_id="s1") == [a.id]
    assert ids(run_id="r1") == [a.id]
    assert ids(provider="anthropic") == [b.id]
    assert ids(model="gpt-4o") == [a.id, c.id]
    assert ids(status="error") == [b.id]
    assert ids(status="success", agent_id="a1", user_id="u2") == [c.id]
    assert store.usage.get(b.id).error_message == "overloaded"
    with pytest.raises(InvalidInput) as err:
        store.usage.list(status="nope")
    assert err.value.field == "status"


def test_time_range_filter(store: Store) -> None:
    base = datetime(2025, 3, 1, 12, tzinfo=UTC)
    old = store.usage.record(**GPT4O, created_at=base - timedelta(days=2))
    mid = store.usage.record(**GPT4O, created_at=base)
    new = store.usage.record(**GPT4O, created_at=base + timedelta(days=2))
    assert store.usage.get(mid.id).created_at == base
    got = store.usage.list(created_after=base, created_before=base + timedelta(days=1))
    assert [u.id for u in got] == [mid.id]
    assert [u.id for u in store.usage.list(created_before=base)] == [old.id]
    assert [u.id for u in store.usage.list(created_after=base, order="asc")] == [mid.id, new.id]


def test_cursor_pagination(store: Store) -> None:
    made = [store.usage.record(**GPT4O, input_tokens=i).id for i in range(7)]
    seen: list[str] = []
    after = None
    while True:
        page = store.usage.list(limit=3, after=after, order="asc")
        seen += [u.id for u in page]
        if not page.has_more:
            break
        after = page.last_id
    assert seen == made
    desc = store.usage.list(limit=2)
    assert [u.id for u in desc] == made[::-1][:2] and desc.has_more
    before = store.usage.list(limit=2, before=made[4], order="asc")
    assert [u.id for u in before] == made[2:4]
    with pytest.raises(InvalidInput):
        store.usage.list(limit=0)


def test_tenants_do_not_see_each_other(store: Store) -> None:
    u = store.usage.record(**GPT4O)
    other = store.tenant(store.tenant_id + "_other")
    assert other.usage.list().items == []
    assert other.usage.rollup("model") == []
    with pytest.raises(NotFound):
        other.usage.get(u.id)


def test_rollup_by_model_sums_exactly(store: Store) -> None:
    for _ in range(3):
        store.usage.record(**GPT4O, input_tokens=10, output_tokens=5, cost_usd=Decimal("0.1"))
    store.usage.record(**GPT4O, input_tokens=1, status="error", cost_usd=Decimal("0.000000001"))
    store.usage.record(provider="local", model="tiny", input_tokens=7, cached_tokens=2)
    rows = {r.key: r for r in store.usage.rollup("model")}
    assert set(rows) == {"gpt-4o", "tiny"}
    g = rows["gpt-4o"]
    assert (g.calls, g.error_calls, g.input_tokens, g.output_tokens) == (4, 1, 31, 15)
    assert g.cost_usd == Decimal("0.300000001")
    assert g.unpriced_calls == 0
    tiny = rows["tiny"]
    assert (tiny.calls, tiny.cached_tokens, tiny.cost_usd, tiny.unpriced_calls) == (1, 2, None, 1)


def test_rollup_partly_priced_group_keeps_the_known_sum(store: Store) -> None:
    store.usage.record(provider="p", model="m", agent_id="a", cost_usd=Decimal("1.5"))
    store.usage.record(provider="p", model="m", agent_id="a")  # unknown cost
    [row] = store.usage.rollup("agent")
    assert (row.key, row.calls, row.cost_usd, row.unpriced_calls) == ("a", 2, Decimal("1.5"), 1)


def test_rollup_by_day_agent_user_provider(store: Store) -> None:
    d1 = datetime(2025, 1, 1, 23, 59, tzinfo=UTC)
    d2 = datetime(2025, 1, 2, 0, 1, tzinfo=UTC)
    store.usage.record(**GPT4O, agent_id="a", user_id="u", created_at=d1, cost_usd=Decimal(1))
    store.usage.record(**GPT4O, agent_id="a", created_at=d2, cost_usd=Decimal(2))
    store.usage.record(provider="anthropic", model="m", agent_id="b", created_at=d2)
    days = store.usage.rollup("day")
    assert [(r.key, r.calls, r.cost_usd) for r in days] == [
        ("2025-01-01", 1, Decimal(1)),
        ("2025-01-02", 2, Decimal(2)),
    ]
    assert [(r.key, r.calls) for r in store.usage.rollup("agent")] == [("a", 2), ("b", 1)]
    assert [(r.key, r.calls) for r in store.usage.rollup("user")] == [("u", 1), (None, 2)]
    assert [(r.key, r.calls) for r in store.usage.rollup("provider")] == [
        ("anthropic", 1),
        ("openai", 2),
    ]
    # Filters apply to rollups too.
    only = store.usage.rollup("day", agent_id="a", created_after=d2)
    assert [(r.key, r.calls) for r in only] == [("2025-01-02", 1)]
    with pytest.raises(InvalidInput) as err:
        store.usage.rollup("week")  # type: ignore[arg-type]
    assert err.value.field == "by"


def test_rollups_equal_each_rollup_from_one_read(store: Store) -> None:
    d1 = datetime(2025, 3, 1, 10, tzinfo=UTC)
    d2 = datetime(2025, 3, 2, 10, tzinfo=UTC)
    d3 = datetime(2025, 3, 3, 10, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {**GPT4O, "agent_id": "a", "user_id": "u1", "created_at": d1, "cost_usd": Decimal("0.5")},
        {**GPT4O, "agent_id": "a", "user_id": "u2", "created_at": d1},  # priced by the table
        {"provider": "p", "model": "m", "agent_id": "a", "user_id": "u1", "created_at": d2},
        {"provider": "p", "model": "m", "agent_id": "b", "created_at": d2, "status": "error"},
        {"provider": "p", "model": "m", "user_id": "u2", "created_at": d3, "cost_usd": Decimal(1)},
        {"provider": "p", "model": "m", "created_at": d3},  # no agent, no user, no price
    ]
    for i, values in enumerate(rows):
        store.usage.record(
            **values,
            input_tokens=100 + i,
            output_tokens=10 * i,
            cached_tokens=i,
            reasoning_tokens=i,
        )
    keys = ("day", "model", "agent", "user", "provider")
    for window in ({}, {"created_after": d2}, {"created_after": d2, "created_before": d3}):
        together = store.usage.rollups(keys, **window)
        assert list(together) == list(keys)
        for key in keys:
            assert together[key] == store.usage.rollup(key, **window), (key, window)  # type: ignore[arg-type]
    assert store.usage.rollups(["model"], agent_id="a") == {
        "model": store.usage.rollup("model", agent_id="a")
    }
    unpriced = store.usage.rollups(["user"], created_after=d3)["user"]
    assert [(r.key, r.cost_usd, r.unpriced_calls) for r in unpriced] == [
        ("u2", Decimal(1), 0),
        (None, None, 1),  # unknown, never $0
    ]
    assert store.usage.rollups(["day"], created_after=datetime(2030, 1, 1, tzinfo=UTC)) == {
        "day": []
    }
    for bad in ([], ["week"], "model"):
        with pytest.raises(InvalidInput) as err:
            store.usage.rollups(bad)  # type: ignore[arg-type]
        assert err.value.field == "by"


def test_latency_percentiles_of_a_window(store: Store) -> None:
    old = datetime(2025, 1, 1, tzinfo=UTC)
    new = datetime(2025, 2, 1, tzinfo=UTC)
    for ms in (1000, 2000, 3000):
        store.usage.record(**GPT4O, latency_ms=ms, created_at=old)
    for ms in (10, 20, 30, 40, 50):
        store.usage.record(**GPT4O, latency_ms=ms, created_at=new, agent_id="a")
    store.usage.record(**GPT4O, created_at=new)  # no latency reported: not counted
    recent = store.usage.latency(created_after=new)
    assert recent == {"p50": 30.0, "p75": 40.0, "p90": 46.0, "p95": 48.0, "p99": 49.6}
    assert recent == store.stats.get(created_after=new).latency_ms
    assert store.usage.latency(created_before=new)["p50"] == 2000.0
    assert store.usage.latency()["p50"] == 45.0  # all eight: (40 + 50) / 2
    assert store.usage.latency(agent_id="a")["p99"] == 49.6
    assert store.usage.latency(created_after=datetime(2030, 1, 1, tzinfo=UTC)) == dict.fromkeys(
        ("p50", "p75", "p90", "p95", "p99")
    )


async def test_async_rollups_and_latency(astore: AsyncStore) -> None:
    await astore.usage.record(**GPT4O, input_tokens=5, latency_ms=120)
    both = await astore.usage.rollups(["model", "provider"])
    assert [(r.key, r.calls) for r in both["model"]] == [("gpt-4o", 1)]
    assert [(r.key, r.input_tokens) for r in both["provider"]] == [("openai", 5)]
    assert (await astore.usage.latency())["p50"] == 120.0


def test_large_sums_stay_exact(store: Store) -> None:
    big = Decimal("12345678.123456789")
    for _ in range(50):
        store.usage.record(provider="p", model="m", cost_usd=big)
    [row] = store.usage.rollup("model")
    assert row.cost_usd == big * 50


async def test_async_record_list_rollup(astore: AsyncStore) -> None:
    u = await astore.usage.record(**GPT4O, input_tokens=1000, output_tokens=100)
    assert u.cost_source == "price_table"
    assert (await astore.usage.get(u.id)) == u
    page = await astore.usage.list()
    assert [x.id for x in page] == [u.id]
    [row] = await astore.usage.rollup("provider")
    assert (row.key, row.calls, row.cost_usd) == ("openai", 1, u.cost_usd)


def test_a_pricing_failure_leaves_the_cost_unknown(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import genai_prices

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bad price data")

    monkeypatch.setattr(genai_prices, "calc_price", broken)
    u = store.usage.record(**GPT4O, input_tokens=10)
    assert (u.cost_usd, u.cost_source) == (None, None)
    assert store.usage.get(u.id).cost_usd is None


async def test_the_reports_are_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``usage.rollup``, ``rollups`` and ``latency`` and ``stats.get`` of the async API, with
    no worker thread: each one read, answering as the sync API does over whole days
    (usage_days) and their edges (usage rows), with and without a session filter."""
    d1 = datetime(2025, 3, 1, 10, tzinfo=UTC)
    d2 = datetime(2025, 3, 2, 10, tzinfo=UTC)
    for i, (when, agent) in enumerate([(d1, "a"), (d1, "b"), (d2, "a"), (d2, None)]):
        store.usage.record(
            **GPT4O,
            agent_id=agent,
            input_tokens=10 * (i + 1),
            latency_ms=100 * (i + 1),
            created_at=when,
            status="error" if i == 3 else "success",
        )
    session = store.sessions.create().id
    store.usage.record(provider="p", model="m", session_id=session, created_at=d2)
    no_worker_threads(monkeypatch, "the reports")
    edge = datetime(2025, 3, 1, 12, tzinfo=UTC)  # a partial first day: rows, then days
    for window in ({}, {"created_after": edge}, {"created_after": d1, "created_before": d2}):
        for key in ("day", "model", "agent"):
            assert await astore.usage.rollup(key, **window) == store.usage.rollup(key, **window)  # type: ignore[arg-type]
        together = await astore.usage.rollups(["day", "provider"], **window)
        assert together == store.usage.rollups(["day", "provider"], **window)
        assert await astore.usage.latency(**window) == store.usage.latency(**window)
        assert await astore.stats.get(**window) == store.stats.get(**window)
        assert await astore.stats.get("a", **window) == store.stats.get("a", **window)
    [by_session] = await astore.usage.rollup("model", session_id=session)
    assert (by_session.key, by_session.calls, by_session.cost_usd) == ("m", 1, None)
    days = await astore.usage.rollup("day")
    assert [(r.key, r.calls, r.error_calls) for r in days] == [
        ("2025-03-01", 2, 0),
        ("2025-03-02", 3, 1),
    ]
    assert (await astore.usage.latency(agent_id="a"))["p50"] == 200.0
    stats = await astore.stats.get("a")
    assert (stats.llm_calls, stats.input_tokens) == (2, 40)
    with pytest.raises(InvalidInput) as bad:
        await astore.usage.rollup("week")  # type: ignore[arg-type]
    assert bad.value.field == "by"
