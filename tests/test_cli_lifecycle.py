"""The lifecycle commands through the CLI: exit codes and output (SQLite files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _lifecycle import populate
from typer.testing import CliRunner, Result

import agentkeep
from agentkeep.cli import app


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AGENTKEEP_BACKUP_DIR", str(tmp_path / "backups"))
    db = f"sqlite:///{tmp_path}/cli.db"
    with agentkeep.connect(db) as store:
        populate(store, secret="cli secret")
    return db


def test_backup_commands(url: str, tmp_path: Path) -> None:
    made = run("backup", "create", "-d", url, "--compress", "--json")
    assert made.exit_code == 0, made.output
    backup = json.loads(made.stdout)
    assert backup["path"].endswith(".db.gz") and backup["counts"]["messages"] == 2
    listed = run("backup", "list", "-d", url, "--json")
    assert [b["id"] for b in json.loads(listed.stdout)] == [backup["id"]]
    assert run("backup", "verify", backup["id"], "-d", url).exit_code == 0
    target = f"sqlite:///{tmp_path}/restored.db"
    restored = run("backup", "restore", backup["id"], "--to", target, "-d", url)
    assert restored.exit_code == 0, restored.output
    assert "restored" in restored.stdout
    again = run("backup", "restore", backup["path"], "--to", target)
    assert again.exit_code == 1 and "not empty" in again.output
    Path(backup["path"]).write_bytes(b"garbage")
    bad = run("backup", "verify", backup["path"], "-d", url)
    assert bad.exit_code == 1 and "size" in bad.output
    pruned = run("backup", "prune", "--keep-last", "0", "-d", url)
    assert pruned.exit_code == 0 and "deleted 1 backup" in pruned.stdout


def test_export_import_copy_erase_doctor(url: str, tmp_path: Path) -> None:
    file = tmp_path / "out.jsonl.gz"
    assert run("export", "-d", url, "-o", str(file)).exit_code == 0
    to_stdout = run("export", "-d", url, "--user", "alice")
    assert json.loads(to_stdout.stdout.splitlines()[0])["filters"] == {"user": "alice"}
    other = f"sqlite:///{tmp_path}/other.db"
    dry = run("import", str(file), "-d", other, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["imported"]["messages"] == 2
    done = run("import", str(file), "-d", other, "--mode", "skip")
    assert done.exit_code == 0 and "messages" in done.stdout
    assert run("import", str(file), "-d", other, "--mode", "nope").exit_code == 2
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"format": "agentkeep-jsonl", "version": 1, "counts": {}}\n{"table": 1}\n')
    refused = run("import", str(broken), "-d", other)
    assert refused.exit_code == 2 and "line 2" in refused.output
    copied = run("copy", url, f"sqlite:///{tmp_path}/copy.db")
    assert copied.exit_code == 0 and "copied" in copied.stdout
    erased = run("erase", "--user", "alice", "-d", url, "--json")
    assert erased.exit_code == 0 and json.loads(erased.stdout)["counts"]["sessions"] == 1
    assert "cli secret" not in run("export", "-d", url).stdout
    swept = run("retention", "--tenant", "default", "--compact-events", "--dry-run", "-d", url)
    assert swept.exit_code == 0 and "would delete 0 session(s)" in swept.stdout
    doctor = run("doctor", "-d", url, "--json")
    report = json.loads(doctor.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["integrity"]["ok"] and by_name["schema"]["ok"]
    assert not by_name["last backup"]["ok"] and doctor.exit_code == 1  # no backup yet
    assert run("backup", "create", "-d", url).exit_code == 0
    assert run("doctor", "-d", url).exit_code == 0
