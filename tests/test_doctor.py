"""The doctor's checks on an open store: every tenant, or one tenant's share of them."""

from __future__ import annotations

from pathlib import Path

import agentkeep
from agentkeep.config import Settings
from agentkeep.lifecycle.doctor import check_store


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
