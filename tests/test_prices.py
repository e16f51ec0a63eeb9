"""The user's price table: store.prices and AGENTKEEP_PRICES over the maintained one; recompute."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from _statements import sent_statements, work
from _threads import no_worker_threads

import agentkeep
from agentkeep import AsyncStore, InvalidInput, NotFound, Store

HOUSE = "house-llm-1"  # no maintained price: unpriced unless the user prices it


def _call(
    store: Store, model: str = HOUSE, provider: str = "acme", **kw: object
) -> agentkeep.LLMUsage:
    tokens = {
        "input_tokens": 1000,
        "cached_tokens": 400,
        "output_tokens": 300,
        "reasoning_tokens": 100,
    }
    return store.usage.record(provider=provider, model=model, **{**tokens, **kw})  # type: ignore[arg-type]


def test_a_user_price_prices_later_calls_exactly(store: Store) -> None:
    before = _call(store)
    assert (before.cost_usd, before.cost_source, before.price_version) == (None, None, None)
    price = store.prices.set(
        HOUSE,
        input="0.000001",
        output="0.000004",
        cached_input=Decimal("0.00000025"),
        reasoning=0.000008,
    )
    assert (price.model, price.provider, price.version) == (HOUSE, None, 1)
    assert price.reasoning == Decimal("0.000008")
    after = _call(store)
    # 600 input at 1e-6, 400 cached at 2.5e-7, 200 output at 4e-6, 100 reasoning at 8e-6
    assert after.cost_usd == Decimal("0.0006") + Decimal("0.0001") + Decimal("0.0008") + Decimal(
        "0.0008"
    )
    assert after.cost_source == "user"
    assert after.price_version == f"store.prices:*/{HOUSE}@v1"
    assert store.usage.get(after.id).cost_usd == after.cost_usd
    # without cached/reasoning prices those tokens are billed as input/output
    store.prices.set(HOUSE, input="0.000001", output="0.000004")
    plain = _call(store)
    assert plain.cost_usd == Decimal("0.001") + Decimal("0.0012")
    assert plain.price_version == f"store.prices:*/{HOUSE}@v2"
    assert store.prices.get(HOUSE).version == 2
    assert [p.model for p in store.prices.list()] == [HOUSE]
    assert store.tenant(store.tenant_id + "_x").prices.list() == []


def test_provider_price_first_and_the_maintained_table_overridden(store: Store) -> None:
    store.prices.set(HOUSE, input=1, output=1)
    store.prices.set(HOUSE, provider="acme", input=2, output=2)
    assert (
        _call(store, input_tokens=1, cached_tokens=0, output_tokens=0, reasoning_tokens=0).cost_usd
        == 2
    )
    other = _call(
        store, provider="zeta", input_tokens=1, cached_tokens=0, output_tokens=0, reasoning_tokens=0
    )
    assert (other.cost_usd, other.price_version) == (1, f"store.prices:*/{HOUSE}@v1")

    maintained = _call(store, model="gpt-4o-mini", provider="openai")
    assert maintained.cost_source == "price_table" and maintained.cost_usd
    store.prices.set("gpt-4o-mini", provider="openai", input=0, output=0)
    overridden = _call(store, model="gpt-4o-mini", provider="openai")
    assert (overridden.cost_usd, overridden.cost_source) == (0, "user")  # the user's own $0
    store.prices.delete("gpt-4o-mini", provider="openai")
    assert _call(store, model="gpt-4o-mini", provider="openai").cost_source == "price_table"
    with pytest.raises(NotFound):
        store.prices.delete("gpt-4o-mini", provider="openai")
    given = _call(store, cost_usd=Decimal("0.5"))
    assert (given.cost_usd, given.cost_source) == (Decimal("0.5"), "caller")


def test_bad_prices_name_the_field_and_write_nothing(store: Store) -> None:
    for kwargs, field in (
        ({"input": -1, "output": 1}, "input"),
        ({"input": "cheap", "output": 1}, "input"),
        ({"input": 1, "output": None}, "output"),
        ({"input": 1, "output": float("inf")}, "output"),
        ({"input": 1, "output": 1, "cached_input": True}, "cached_input"),
        ({"input": 1, "output": 1, "provider": ""}, "provider"),
    ):
        with pytest.raises(InvalidInput) as err:
            store.prices.set(HOUSE, **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field, kwargs
    with pytest.raises(InvalidInput) as err:
        store.prices.set("", input=1, output=1)
    assert err.value.field == "model"
    assert store.prices.list() == []


def test_recompute_reprices_past_calls(store: Store) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    early = _call(store, created_at=old)
    recent = _call(store)
    other = _call(store, model="house-llm-2")
    given = _call(store, cost_usd=Decimal("0.25"))
    store.prices.set(HOUSE, input="0.000001", output="0.000001")
    store.prices.set("house-llm-2", input="0.000002", output="0.000002")

    dry = store.prices.recompute(model=HOUSE, dry_run=True)
    assert (dry.rows, dry.changed) == (2, 2)
    assert store.usage.get(recent.id).cost_usd is None  # a dry run writes nothing

    since = store.prices.recompute(since=old + timedelta(days=1), model=HOUSE)
    assert (since.rows, since.changed, since.by_source["user"]) == (1, 1, 1)
    assert store.usage.get(recent.id).cost_usd == Decimal("0.0013")
    assert store.usage.get(early.id).cost_usd is None  # before `since`
    report = store.prices.recompute()
    assert report.rows == 3  # every row but the caller's
    assert report.changed == 2 and store.usage.get(early.id).cost_source == "user"
    assert store.usage.get(other.id).cost_usd == Decimal("0.0026")
    assert store.usage.get(given.id).cost_usd == Decimal("0.25")  # the caller's cost stays
    assert store.prices.recompute().changed == 0  # nothing left to change

    store.prices.delete(HOUSE)
    gone = store.prices.recompute(model=HOUSE)
    assert gone.by_source["unpriced"] == 2
    unpriced = store.usage.get(recent.id)
    assert (unpriced.cost_usd, unpriced.cost_source, unpriced.price_version) == (None, None, None)
    assert store.usage.rollup("model")[0].unpriced_calls >= 1
    with pytest.raises(InvalidInput) as err:
        store.prices.recompute(since="yesterday")  # type: ignore[arg-type]
    assert err.value.field == "since"


def _price_reads(statements: list[str]) -> int:
    return sum(1 for s in statements if s.lstrip().upper().startswith("SELECT") and "prices" in s)


def test_calls_recorded_in_one_transaction_read_each_price_once(store: Store) -> None:
    """A round of calls (the settles of many responses) reads a model's price once; a price
    set or deleted in the same transaction prices the calls after it."""
    store.prices.set(HOUSE, input=1, output=1)
    plain = {"input_tokens": 2, "cached_tokens": 0, "output_tokens": 1, "reasoning_tokens": 0}
    with sent_statements(store) as statements, store.transaction():
        first = [_call(store, **plain) for _ in range(3)]
        other = _call(store, model="house-llm-2", **plain)
        reads_before_set = _price_reads(statements)
        store.prices.set(HOUSE, input=10, output=10)
        repriced = _call(store, **plain)
        store.prices.delete(HOUSE)
        unpriced = _call(store, **plain)
    assert [c.cost_usd for c in first] == [3, 3, 3]
    assert other.cost_usd is None
    assert reads_before_set == 2  # HOUSE once, house-llm-2 once
    assert (repriced.cost_usd, repriced.price_version) == (30, f"store.prices:*/{HOUSE}@v2")
    assert (unpriced.cost_usd, unpriced.cost_source) == (None, None)
    # Stored as answered; outside a transaction each call reads the table again.
    assert [store.usage.get(c.id).cost_usd for c in (*first, repriced, unpriced)] == [
        3,
        3,
        3,
        30,
        None,
    ]
    store.prices.set(HOUSE, input=5, output=5)
    assert _call(store, **plain).cost_usd == 15
    # A price set in a savepoint that rolls back is forgotten with it.
    with store.transaction():
        assert _call(store, **plain).cost_usd == 15
        with pytest.raises(RuntimeError), store.transaction():
            store.prices.set(HOUSE, input=7, output=7)
            assert _call(store, **plain).cost_usd == 21
            raise RuntimeError("rolled back")
        assert _call(store, **plain).cost_usd == 15
    with sent_statements(store) as statements:
        _call(store, **plain)
        _call(store, **plain)
    assert _price_reads(statements) == 2


def test_every_process_sees_a_stored_price(store: Store, backend: str, db_url: str) -> None:
    if backend == "memory":
        pytest.skip("an in-memory database is private to its store")
    other = agentkeep.connect(db_url).tenant(store.tenant_id)
    try:
        store.prices.set(HOUSE, input=1, output=1)
        priced = _call(other, input_tokens=2, cached_tokens=0, output_tokens=0, reasoning_tokens=0)
        assert (priced.cost_usd, priced.cost_source) == (2, "user")
    finally:
        other.close()


def _price_file(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_a_price_file_overrides_the_maintained_table(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = {
        HOUSE: {"input": 0.000001, "output": "0.000002"},
        "gpt-4o-mini": {"input": 0, "output": 0, "provider": "openai"},
    }
    monkeypatch.setenv("AGENTKEEP_PRICES", _price_file(tmp_path, "prices.json", json.dumps(prices)))
    with agentkeep.connect(db_url) as opened:
        store = opened.tenant("file_" + os.urandom(4).hex())
        usage = _call(store, input_tokens=10, cached_tokens=0, output_tokens=10, reasoning_tokens=0)
        assert usage.cost_usd == Decimal("0.00003") and usage.cost_source == "user"
        assert usage.price_version is not None and usage.price_version.startswith(
            "AGENTKEEP_PRICES:sha256:"
        )
        assert _call(store, model="gpt-4o-mini", provider="openai").cost_usd == 0
        assert _call(store, model="gpt-4o-mini", provider="azure").cost_source != "user"
        store.prices.set(HOUSE, input=1, output=1)  # the stored price comes before the file
        assert (
            _call(
                store, input_tokens=1, cached_tokens=0, output_tokens=0, reasoning_tokens=0
            ).cost_usd
            == 1
        )


def test_a_toml_price_file_and_bad_files(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = f'["{HOUSE}"]\ninput = "0.000003"\noutput = 0.000004\n'
    monkeypatch.setenv("AGENTKEEP_PRICES", _price_file(tmp_path, "prices.toml", toml))
    with agentkeep.connect(db_url) as opened:
        store = opened.tenant("toml_" + os.urandom(4).hex())
        assert _call(
            store, input_tokens=1, cached_tokens=0, output_tokens=1, reasoning_tokens=0
        ).cost_usd == Decimal("0.000007")
    for content, field in (
        (json.dumps({HOUSE: {"input": -1, "output": 1}}), f"AGENTKEEP_PRICES.{HOUSE}.input"),
        (json.dumps({HOUSE: {"input": 1}}), f"AGENTKEEP_PRICES.{HOUSE}.output"),
        (json.dumps({HOUSE: {"input": 1, "output": 1, "per": "1M"}}), f"AGENTKEEP_PRICES.{HOUSE}"),
        ("{not json", "AGENTKEEP_PRICES"),
    ):
        monkeypatch.setenv("AGENTKEEP_PRICES", _price_file(tmp_path, "bad.json", content))
        with pytest.raises(InvalidInput) as err:
            agentkeep.connect(db_url)
        assert err.value.field == field
    monkeypatch.setenv("AGENTKEEP_PRICES", str(tmp_path / "missing.json"))
    with pytest.raises(InvalidInput, match="cannot read"):
        agentkeep.connect(db_url)


def test_a_changed_price_file_is_read_again(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(
        _price_file(tmp_path, "prices.json", json.dumps({HOUSE: {"input": 1, "output": 1}}))
    )
    monkeypatch.setenv("AGENTKEEP_PRICES", str(path))
    one = {"input_tokens": 1, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}
    with agentkeep.connect(db_url) as opened:
        store = opened.tenant("reload_" + os.urandom(4).hex())
        assert _call(store, **one).cost_usd == 1
        path.write_text(json.dumps({HOUSE: {"input": 2, "output": 2}}))
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
        assert _call(store, **one).cost_usd == 2
        path.write_text("{broken")  # a broken rewrite keeps the last good prices
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))
        assert _call(store, **one).cost_usd == 2


async def test_async_prices(astore: AsyncStore) -> None:
    await astore.prices.set(HOUSE, input=1, output=1)
    usage = await astore.usage.record(provider="acme", model=HOUSE, input_tokens=3)
    assert usage.cost_usd == 3
    assert (await astore.prices.recompute(model=HOUSE)).rows == 1


async def test_prices_are_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get`` and ``list`` are one statement each on the store's own connections, the
    sync API's answers, no worker thread."""
    store.prices.set(HOUSE, input=1, output=2)
    store.prices.set(HOUSE, input=3, output=4, provider="acme")
    no_worker_threads(monkeypatch, "prices")
    with sent_statements(store) as sent:
        got = await astore.prices.get(HOUSE, provider="acme")
    assert len(work(sent)) == 1 and got == store.prices.get(HOUSE, provider="acme")
    assert (got.input, got.output, got.provider) == (3, 4, "acme")
    assert (await astore.prices.get(HOUSE)).input == 1
    listed = await astore.prices.list()
    assert listed == store.prices.list() and [p.provider for p in listed] == [None, "acme"]
    with pytest.raises(NotFound):
        await astore.prices.get("no-such-model")


async def test_prices_are_set_and_deleted_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``set`` is one statement (an upsert: version 1, then one more at each set, the first
    ``created_at`` kept) and so is ``delete``, no worker thread; the calls after each are
    priced by what it left."""
    no_worker_threads(monkeypatch, "prices.set")
    with sent_statements(store) as sent:
        first = await astore.prices.set(HOUSE, input=1, output="0.5", cached_input=Decimal("0.1"))
    assert len(work(sent)) == 1, work(sent)
    assert (first.version, first.input, first.output, first.cached_input) == (
        1,
        Decimal(1),
        Decimal("0.5"),
        Decimal("0.1"),
    )
    assert first == store.prices.get(HOUSE)
    second = await astore.prices.set(HOUSE, input=2, output=2)
    assert (second.version, second.created_at, second.cached_input) == (2, first.created_at, None)
    assert second.updated_at >= first.updated_at and second == store.prices.get(HOUSE)
    other = await astore.prices.set(HOUSE, input=9, output=9, provider="acme")
    assert other.version == 1 and store.prices.get(HOUSE).version == 2
    usage = await astore.usage.record(provider="other", model=HOUSE, input_tokens=3)
    assert usage.cost_usd == 6
    with sent_statements(store) as sent:
        await astore.prices.delete(HOUSE)
    assert len(work(sent)) == 1, work(sent)
    with pytest.raises(NotFound):
        await astore.prices.delete(HOUSE)
    assert (
        await astore.usage.record(provider="other", model=HOUSE, input_tokens=3)
    ).cost_usd is None
    with pytest.raises(InvalidInput) as bad:
        await astore.prices.set(HOUSE, input=-1, output=1)
    assert bad.value.field == "input"
    assert [p.provider for p in store.prices.list()] == ["acme"]


async def test_a_recompute_of_several_batches_runs_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prices.recompute`` of the async API, with no worker thread: its batches (500 rows
    each, one write each; two here) reprice the calls and move their days' totals, as the
    usage rows then sum them; a dry run counts and writes nothing."""
    import agentkeep.store.prices as prices_module

    monkeypatch.setattr(prices_module, "_BATCH", 3)  # 7 rows: three batches
    calls = [_call(store) for _ in range(6)] + [_call(store, model="house-llm-2")]
    store.prices.set(HOUSE, input="0.000001", output="0.000001")
    no_worker_threads(monkeypatch, "prices.recompute")
    dry = await astore.prices.recompute(dry_run=True)
    assert (dry.rows, dry.changed, dry.by_source) == (
        7,
        6,
        {"user": 6, "price_table": 0, "unpriced": 1},
    )
    assert [(await astore.usage.get(c.id)).cost_usd for c in calls] == [None] * 7
    done = await astore.prices.recompute()
    assert (done.rows, done.changed) == (7, 6)
    costs = [(await astore.usage.get(c.id)).cost_usd for c in calls]
    assert costs == [Decimal("0.0013")] * 6 + [None]
    [house, other] = await astore.usage.rollup("model")
    assert (house.key, house.cost_usd, house.unpriced_calls) == (HOUSE, Decimal("0.0078"), 0)
    assert (other.key, other.cost_usd, other.unpriced_calls) == ("house-llm-2", None, 1)
    assert (await astore.prices.recompute()).changed == 0
