"""The doctor's checks on an open store: every tenant, or one tenant's share of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from _lifecycle import empty_url

import agentkeep
from agentkeep.config import Settings
from agentkeep.lifecycle.doctor import check_store, repair_usage
from agentkeep.store.schema import usage_days as usage_days_table


def test_every_tenant_is_checked_and_a_tenant_sees_only_its_own(tmp_path: Path) -> None:
    with agentkeep.connect(f"sqlite:///{tmp_path}/doctor.db") as store:
        broken = store.tenant("broken")  # a run and a tool call, no session
        agent = broken.agents.create(model="m")
        run = broken.runs.create(agent.id, status="in_progress")
        call = broken.tool_calls.create(name="lookup", run_id=run.id)
        broken.runs.transition(run.id, "failed")
        store.tenant("clean").sessions.create(title="fine")
        settings = Settings(backup_dir=str(tmp_path / "backups"), backup_enabled=False)

        report = check_store(store, settings)
        checks = {c.name: c for c in report.checks}
        assert set(checks) == {
            "database",
            "schema",
            "integrity",
            "consistency",
            "usage totals",
            "disk: backup directory",
            "disk: data directory",
            "last backup",
            "wal",
        }
        assert not report.ok and not checks["consistency"].ok
        assert checks["consistency"].detail == (
            f"1 issue(s): broken: tool_call_without_result {call.id}"
        )
        assert [c.name for c in report.checks if not c.ok] == ["consistency"]

        clean = check_store(store, settings, tenant="clean")
        assert [(c.name, c.ok) for c in clean.checks] == [
            ("database", True),
            ("schema", True),
            ("consistency", True),
        ]
        assert clean.checks[2].detail == "1 tenant(s), no issues"
        assert not check_store(store, settings, tenant="broken").ok


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_daily_usage_totals_that_drift_from_the_rows_are_found_and_repaired(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = empty_url(backend, tmp_path, request, "doctor")
    settings = Settings(backup_dir=str(tmp_path / "backups"), backup_enabled=False)
    with agentkeep.connect(url, auto_migrate=True) as store:
        for tenant, model in (("a", "gpt-4o-mini"), ("a", "house"), ("b", "gpt-4o-mini")):
            for tokens in (10, 20):
                store.tenant(tenant).usage.record(
                    provider="openai", model=model, input_tokens=tokens, output_tokens=1
                )
        totals = {c.name: c for c in check_store(store, settings).checks}["usage totals"]
        assert totals.ok, totals.detail
        before = store.tenant("a").usage.rollup("model")

        with store._core.write("breaking the totals") as conn:  # what a bug could leave
            conn.execute(
                sa.update(usage_days_table)
                .where(usage_days_table.c.tenant_id == "a", usage_days_table.c.model == "house")
                .values(calls=usage_days_table.c.calls + 1)
            )
            conn.execute(sa.delete(usage_days_table).where(usage_days_table.c.tenant_id == "b"))
        totals = {c.name: c for c in check_store(store, settings).checks}["usage totals"]
        assert not totals.ok
        assert totals.detail.startswith("2 daily group(s) differ from the usage rows: ")
        assert "a " in totals.detail and "openai/house: calls 3 (rows: 2)" in totals.detail
        assert "b " in totals.detail and "openai/gpt-4o-mini: missing" in totals.detail
        assert totals.remedy is not None and "--repair-usage" in totals.remedy

    assert repair_usage(url) == 2
    assert repair_usage(url) == 0  # nothing left to repair
    with agentkeep.connect(url) as store:
        totals = {c.name: c for c in check_store(store, settings).checks}["usage totals"]
        assert totals.ok, totals.detail
        assert store.tenant("a").usage.rollup("model") == before
