"""Scheduled backups: the slot arithmetic, the settings (with the seed's names), one taker per slot."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from _lifecycle import empty_url
from _multiproc import run_together

import agentkeep
from agentkeep import InvalidInput
from agentkeep.config import Settings
from agentkeep.lifecycle.schedule import next_slot

TAKE_SLOT = """
import dataclasses
from datetime import datetime
import agentkeep
from agentkeep.config import Settings
from agentkeep.lifecycle.schedule import BackupScheduler

def work(arg):
    settings = dataclasses.replace(Settings.from_env({}), backup_dir=arg["dir"])
    with agentkeep.connect(arg["url"]) as store:
        result = BackupScheduler(store, settings).run_slot(datetime.fromisoformat(arg["slot"]))
    return result.backup.id if result.backup else None
"""


def test_next_slot_is_today_or_tomorrow() -> None:
    now = datetime(2026, 12, 5, 1, 30).astimezone()
    assert next_slot(now, "02:00") == now.replace(hour=2, minute=0)
    assert next_slot(now, "01:00:05") == now.replace(hour=1, minute=0, second=5) + timedelta(days=1)


def test_settings_read_agentkeep_names_then_the_seeds() -> None:
    seed = Settings.from_env(
        {
            "DATABASE_BACKUP_DIR": "/srv/b",
            "AUTO_BACKUP_ENABLED": "false",
            "AUTO_BACKUP_TIME": "3:05",
            "BACKUP_RETENTION_DAYS": "7",
        }
    )
    assert (seed.backup_dir, seed.backup_enabled, seed.backup_time, seed.backup_retention_days) == (
        "/srv/b",
        False,
        "03:05",
        7,
    )
    ours = Settings.from_env({"AGENTKEEP_BACKUP_DIR": "/a", "DATABASE_BACKUP_DIR": "/srv/b"})
    assert (ours.backup_dir, ours.backup_time, ours.backup_retention_days) == ("/a", "02:00", 30)
    with pytest.raises(InvalidInput, match="AGENTKEEP_BACKUP_TIME"):
        Settings.from_env({"AGENTKEEP_BACKUP_TIME": "25:00"})


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_of_three_processes_one_takes_the_slot(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = empty_url(backend, tmp_path, request)
    with agentkeep.connect(url, auto_migrate=True) as store:
        store.sessions.create()
    slot = datetime.now().astimezone().isoformat()
    arg = {"url": url, "dir": str(tmp_path / "b"), "slot": slot}
    taken = [r for r in run_together(TAKE_SLOT, [arg] * 3, tmp_path / "procs") if r]
    with agentkeep.connect(url) as store:
        assert [b.id for b in store.backups.list()] == taken and len(taken) == 1
