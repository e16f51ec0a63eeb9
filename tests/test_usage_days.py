"""The daily usage table answers rollups exactly as the usage rows do, after every kind of write.

``store.usage.rollup(s)`` read whole days from ``usage_days`` and only the
partial days at a window's edges from the rows. Each test here writes usage
(record, erase, price recompute, import, copy, the migration that fills the
table) and checks every rollup key over several windows against a sum
computed in Python from ``store.usage.list`` (the rows themselves), on every
backend.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from _lifecycle import empty_url
from _statements import sent_statements, verbs, work
from _threads import no_worker_threads

import agentkeep
from agentkeep import AsyncStore, Store
from agentkeep.lifecycle import ExportFilter, copy_database, export, import_file, restore
from agentkeep.models import LLMUsage, UsageRollup
from agentkeep.store import migrate
from agentkeep.store.backup_files import take_backup
from agentkeep.store.dialects import dialect_for_url
from agentkeep.store.dump import encode

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
KEYS: tuple[Literal["day", "model", "agent", "user", "provider"], ...] = (
    "day",
    "model",
    "agent",
    "user",
    "provider",
)


def _key(row: LLMUsage, by: str) -> str | None:
    if by == "day":
        return row.created_at.astimezone(UTC).strftime("%Y-%m-%d")
    return {"model": row.model, "agent": row.agent_id, "user": row.user_id}.get(by, row.provider)


def _expected(rows: list[LLMUsage], by: str) -> list[UsageRollup]:
    """What a rollup must give, summed here from the rows."""
    groups: dict[str | None, dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(
            _key(r, by),
            {"calls": 0, "error_calls": 0, "input_tokens": 0, "output_tokens": 0}
            | {"cached_tokens": 0, "reasoning_tokens": 0, "cost_usd": None, "unpriced_calls": 0},
        )
        g["calls"] += 1
        g["error_calls"] += r.status == "error"
        for kind in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
            g[kind] += getattr(r, kind)
        if r.cost_usd is None:
            g["unpriced_calls"] += 1
        else:
            g["cost_usd"] = (g["cost_usd"] or Decimal(0)) + r.cost_usd
    out = [UsageRollup(key=k, **g) for k, g in groups.items()]
    return sorted(out, key=lambda r: (r.key is None, r.key or ""))


def _all_rows(store: Store) -> list[LLMUsage]:
    rows, after = [], None
    while True:
        page = store.usage.list(limit=100, after=after, order="asc")
        rows += page.items
        if not page.has_more:
            return rows
        after = page.last_id


WINDOWS: list[tuple[datetime | None, datetime | None]] = [
    (None, None),  # every day from the table
    (DAY0, DAY0 + timedelta(days=3)),  # whole days
    (DAY0 + timedelta(hours=5), DAY0 + timedelta(days=2, hours=7)),  # partial edges
    (DAY0 + timedelta(hours=1), DAY0 + timedelta(hours=20)),  # inside one day: rows only
    (DAY0 + timedelta(days=1, hours=3), None),
    (None, DAY0 + timedelta(days=1, hours=12)),
]


def assert_rollups_match_rows(store: Store) -> None:
    """Every key's rollup over every window (and with filters) equals the rows' sums."""
    rows = _all_rows(store)
    for after, before in WINDOWS:
        inside = [
            r
            for r in rows
            if (after is None or r.created_at >= after)
            and (before is None or r.created_at < before)
        ]
        got = store.usage.rollups(KEYS, created_after=after, created_before=before)
        for by in KEYS:
            assert got[by] == _expected(inside, by), (by, after, before)
            assert store.usage.rollup(by, created_after=after, created_before=before) == got[by]
        for flt, value in (("model", "gpt-4o-mini"), ("user_id", ""), ("status", "error")):
            chosen = [r for r in inside if getattr(r, flt) == value]
            assert store.usage.rollup(
                "agent", created_after=after, created_before=before, **{flt: value}
            ) == _expected(chosen, "agent"), (flt, after, before)


def _mix(user: str = "alice", shift: int = 0) -> list[dict[str, Any]]:
    """Calls over three days and their edges: priced, unpriced, caller-priced, errors, None and ''."""
    shapes: list[dict[str, Any]] = [
        {"model": "gpt-4o-mini", "agent_id": "agent-a", "user_id": user},
        {"model": "no-such-model", "agent_id": None, "user_id": user},  # unpriced
        {"model": "no-such-model", "agent_id": "", "user_id": "", "cost_usd": Decimal("0.25")},
        {"model": "gpt-4o-mini", "agent_id": "agent-b", "user_id": None, "status": "error"},
        {"model": "other-unknown", "agent_id": "agent-a", "user_id": "bob"},  # unpriced
    ]
    hours = [0, 1, 4, 6, 12, 23, 24, 29, 30, 47, 50, 55, 71]
    return [
        {
            "provider": "openai",
            "input_tokens": 100 + i,
            "output_tokens": 20 + i,
            "cached_tokens": i % 3,
            "reasoning_tokens": i % 2,
            "latency_ms": 10 * i,
            "created_at": DAY0 + timedelta(hours=hour, minutes=shift, microseconds=i),
            **shapes[i % len(shapes)],
        }
        for i, hour in enumerate(hours)
    ]


def _record_mix(store: Store, user: str = "alice", shift: int = 0) -> None:
    for call in _mix(user, shift):
        store.usage.record(**call)


def test_rollups_equal_the_rows_after_recording(store: Store) -> None:
    assert_rollups_match_rows(store)  # no usage: empty everywhere
    _record_mix(store)
    assert_rollups_match_rows(store)
    unpriced = store.usage.rollup("model", created_after=DAY0, created_before=DAY0 + timedelta(3))
    assert {r.key: r.cost_usd for r in unpriced}["other-unknown"] is None  # unpriced, never $0


def test_rollups_equal_the_rows_after_recording_in_one_transaction(store: Store) -> None:
    """Many calls of one transaction (several on one day row) are summed once, at its end."""
    with store.transaction():
        _record_mix(store)
        _record_mix(store, user="carol", shift=1)
        with pytest.raises(ValueError), store.transaction():  # rolled back: not counted
            store.usage.record(provider="openai", model="gpt-4o-mini", input_tokens=10**6)
            raise ValueError("roll the savepoint back")
    assert_rollups_match_rows(store)
    with pytest.raises(ValueError), store.transaction():  # a transaction that rolls back
        store.usage.record(provider="openai", model="gpt-4o-mini", input_tokens=10**6)
        raise ValueError("roll it back")
    assert_rollups_match_rows(store)


async def test_rollups_equal_the_rows_after_recording_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The async API records without a worker thread: a call and its day's totals are one
    write, one statement on PostgreSQL (two on SQLite), after one read of the user's
    price unless the caller gave the cost."""
    pg = store.url.startswith("postgresql")
    store.prices.set("priced-by-user", input=Decimal("0.000001"), output=Decimal("0.000002"))
    no_worker_threads(monkeypatch, "usage.record")
    for call in _mix("dave", 3):
        await astore.usage.record(**call)
    assert_rollups_match_rows(store)

    with sent_statements(store) as sent:
        given = await astore.usage.record(
            provider="openai", model="m", input_tokens=5, cost_usd=Decimal("0.5")
        )
    assert verbs(work(sent)) == (["WITH"] if pg else ["INSERT", "INSERT"]), work(sent)
    assert (given.cost_usd, given.cost_source) == (Decimal("0.5"), "caller")
    with sent_statements(store) as sent:
        priced = await astore.usage.record(
            provider="openai", model="priced-by-user", input_tokens=1000, output_tokens=10
        )
    assert verbs(work(sent)) == (["SELECT", "WITH"] if pg else ["SELECT", "INSERT", "INSERT"])
    assert (priced.cost_usd, priced.cost_source) == (Decimal("0.00102"), "user")
    assert await astore.usage.get(priced.id) == priced
    assert_rollups_match_rows(store)


def test_rollups_equal_the_rows_after_erasing_a_user(store: Store) -> None:
    _record_mix(store)
    _record_mix(store, user="carol", shift=7)
    store.erase_user("alice")
    assert_rollups_match_rows(store)
    users = {r.key for r in store.usage.rollup("user")}
    assert "alice" not in users and "carol" in users


def test_rollups_equal_the_rows_after_a_price_recompute(store: Store) -> None:
    _record_mix(store)
    store.prices.set("no-such-model", input="0.000001", output="0.000002")
    report = store.prices.recompute(since=DAY0 + timedelta(hours=5))  # part of the rows
    assert report.changed > 0
    assert_rollups_match_rows(store)
    store.prices.delete("no-such-model")
    store.prices.recompute()  # back to unpriced (the caller's cost stays)
    assert_rollups_match_rows(store)
    by_model = {r.key: r for r in store.usage.rollup("model")}
    assert by_model["no-such-model"].cost_usd == Decimal("0.25") * 3  # the caller's, thrice
    assert by_model["other-unknown"].cost_usd is None


def test_rollups_equal_the_rows_after_an_import(store: Store, tmp_path: Path) -> None:
    _record_mix(store)
    file = tmp_path / "usage.jsonl"
    export(store, file, ExportFilter(tenant=store.tenant_id))
    other = store.tenant(f"{store.tenant_id}-copy")
    _record_mix(other, user="dave", shift=3)  # the tenant already has calls on those days
    import_file(other, file, tenant=other.tenant_id)
    assert_rollups_match_rows(other)
    import_file(other, file, tenant=other.tenant_id)  # again: all skipped, nothing counted twice
    assert_rollups_match_rows(other)
    # overwrite: a row moved two days on, with other tokens
    lines = file.read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if json.loads(x).get("table") == "llm_usage")
    item = json.loads(lines[at])
    item["row"]["created_at"] += 2 * 86_400_000_000
    item["row"]["input_tokens"] += 5000
    header = json.loads(lines[0]) | {"counts": {"llm_usage": 1}}
    edited = tmp_path / "edited.jsonl"  # that row alone: its old day is recomputed too
    edited.write_text(f"{encode(header)}\n{encode(item)}\n")
    report = import_file(other, edited, mode="overwrite", tenant=other.tenant_id)
    assert report.imported == {"llm_usage": 1}
    assert_rollups_match_rows(other)


@pytest.mark.slow
@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgres"), ("postgres", "sqlite")])
def test_rollups_equal_the_rows_after_a_copy(
    source: str, target: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source_url = empty_url(source, tmp_path, request, "source")
    target_url = empty_url(target, tmp_path, request, "target")
    with agentkeep.connect(source_url, tenant="t", auto_migrate=True) as store:
        _record_mix(store)
        _record_mix(store.tenant("u"), user="erin")
        expected = store.usage.rollups(KEYS)
    with agentkeep.connect(target_url, tenant="t", auto_migrate=True) as copied:
        _record_mix(copied, user="stale")  # replaced by the copy (--force)
        copy_database(source_url, target_url, force=True)
        assert_rollups_match_rows(copied)
        assert_rollups_match_rows(copied.tenant("u"))
        assert copied.usage.rollups(KEYS) == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend_kind", "backup_kind"),
    [("sqlite", "sqlite"), ("postgres", "pg_dump"), ("postgres", "jsonl")],
)
def test_rollups_equal_the_rows_after_a_restore(
    backend_kind: str, backup_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source_url = empty_url(backend_kind, tmp_path, request, "source")
    target_url = empty_url(backend_kind, tmp_path, request, "target")
    with agentkeep.connect(source_url, tenant="t", auto_migrate=True) as store:
        _record_mix(store)
        expected = store.usage.rollups(KEYS)
    dialect = dialect_for_url(source_url)
    try:
        manifest = take_backup(dialect, tmp_path / "backups", kind=backup_kind)
    finally:
        dialect.dispose()
    with agentkeep.connect(target_url, tenant="t", auto_migrate=True) as restored:
        _record_mix(restored, user="stale")  # replaced by the restore (force)
        _record_mix(restored.tenant("gone"))  # a tenant the backup does not have
        restore(manifest["path"], target_url, force=True)
        assert_rollups_match_rows(restored)
        assert restored.tenant("gone").usage.rollup("day") == []
        assert restored.usage.rollups(KEYS) == expected


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_migration_fills_the_table_from_the_rows_already_there(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = empty_url(kind, tmp_path, request, "before-0012")
    dialect = dialect_for_url(url)
    try:
        migrate.upgrade(dialect, "0011", backup=False)
        with dialect.engine.begin() as conn:  # rows as an agentkeep before 0012 wrote them
            for i, (model, user, cost) in enumerate(
                [("m1", "u1", 5), ("m1", None, None), ("m2", "", 7), ("m2", "u1", None)] * 3
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO llm_usage (tenant_id, id, provider, model, user_id,"
                        " input_params, input_tokens, output_tokens, cached_tokens,"
                        " reasoning_tokens, status, cost_nano_usd, metadata, created_at)"
                        " VALUES ('t', :id, 'p', :model, :user, '{}', :i, 1, 0, 0,"
                        " :status, :cost, '{}', :at)"
                    ),
                    {
                        "id": f"usage_{i:03d}",
                        "model": model,
                        "user": user,
                        "i": i,
                        "status": "error" if i % 5 == 0 else "success",
                        "cost": cost,
                        "at": int((DAY0 + timedelta(hours=9 * i)).timestamp() * 1_000_000),
                    },
                )
        migrate.upgrade(dialect, backup=False)
    finally:
        dialect.dispose()
    with agentkeep.connect(url, tenant="t") as store:
        assert len(_all_rows(store)) == 12
        assert_rollups_match_rows(store)
