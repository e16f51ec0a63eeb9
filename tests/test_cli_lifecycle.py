"""The lifecycle commands through the CLI: exit codes and output (SQLite files; doctor on PostgreSQL too)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from _lifecycle import populate
from typer.testing import CliRunner, Result

import agentkeep
from agentkeep.cli import app
from agentkeep.store import migrate
from agentkeep.store.dialects import dialect_for_url
from agentkeep.store.schema import sessions


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
    made = run("backup", "create", "-d", url, "--compress", "gzip", "--json")
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
    zstd = run("backup", "create", "-d", url, "--compress", "zstd", "--json")
    assert zstd.exit_code == 0, zstd.output
    packed = json.loads(zstd.stdout)
    assert packed["path"].endswith(".db.zst") and packed["compression"] == "zstd"
    assert run("backup", "verify", packed["id"], "-d", url).exit_code == 0
    unknown = run("backup", "create", "-d", url, "--compress", "lz4")
    assert unknown.exit_code == 2 and "compress" in unknown.output
    pruned = run("backup", "prune", "--keep-last", "0", "-d", url)
    assert pruned.exit_code == 0 and "deleted 2 backup" in pruned.stdout


def test_export_import_copy_erase_doctor(url: str, tmp_path: Path) -> None:
    file = tmp_path / "out.jsonl.gz"
    assert run("export", "-d", url, "-o", str(file)).exit_code == 0
    to_stdout = run("export", "-d", url, "--user", "alice")
    assert json.loads(to_stdout.stdout.splitlines()[0])["filters"] == {"user": "alice"}
    zstd_stdout = run("export", "-d", url, "--compress", "zstd")
    assert zstd_stdout.exit_code == 0, zstd_stdout.output
    zst_file = tmp_path / "stdout.jsonl"  # no suffix: the import reads what the bytes are
    zst_file.write_bytes(zstd_stdout.stdout_bytes)
    assert zst_file.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    zst_import = run("import", str(zst_file), "-d", f"sqlite:///{tmp_path}/z.db", "--json")
    assert zst_import.exit_code == 0, zst_import.output
    assert json.loads(zst_import.stdout)["imported"]["messages"] == 2
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
    with agentkeep.connect(url) as store:  # daily usage totals a bug left wrong
        store.usage.record(provider="openai", model="m", input_tokens=5)
        with store._core.write("breaking the totals") as conn:
            conn.exec_driver_sql("UPDATE usage_days SET calls = calls + 7 WHERE model = 'm'")
    assert run("doctor", "-d", url).exit_code == 1
    repaired = run("doctor", "-d", url, "--repair-usage")
    assert repaired.exit_code == 0, repaired.output
    assert "1 daily group(s) recomputed" in repaired.stdout


def test_progress_is_logged_as_plain_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path}/many.db"
    with agentkeep.connect(db) as store:
        chat = store.sessions.create()
        store.messages.append_many(
            chat.id, [{"role": "user", "content": f"m{i}"} for i in range(2500)]
        )
    env = {**os.environ, "AGENTKEEP_PROGRESS_SECONDS": "0"}
    command = [
        sys.executable,
        "-m",
        "agentkeep",
        "export",
        "-d",
        db,
        "-o",
        str(tmp_path / "x.jsonl"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("exporting:")]
    assert any(
        re.fullmatch(
            r"exporting: messages 2,000 rows, [\d,]+ rows in all, [\d,]+ rows/s, [\d.,]+ s", line
        )
        for line in lines
    ), done.stderr
    assert re.fullmatch(r"exporting: done, 2,50\d rows in all, .* rows/s, .* s", lines[-1]), lines
    assert "\x1b[" not in done.stderr  # no terminal control codes in a log

    quiet = subprocess.run(  # the default interval: a short job logs only its end
        [*command[:-1], str(tmp_path / "y.jsonl")],
        capture_output=True,
        text=True,
        env={**env, "AGENTKEEP_PROGRESS_SECONDS": "3600"},
        timeout=300,
    )
    progress = [line for line in quiet.stderr.splitlines() if line.startswith("exporting:")]
    assert len(progress) == 1 and progress[0].startswith("exporting: done")
    bad = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**env, "AGENTKEEP_PROGRESS_SECONDS": "soon"},
        timeout=300,
    )
    assert bad.returncode == 2 and "AGENTKEEP_PROGRESS_SECONDS" in bad.stderr


def _doctor(url: str) -> tuple[int, dict[str, Any]]:
    done = run("doctor", "-d", url, "--json")
    return done.exit_code, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def test_doctor_on_postgresql_says_what_is_wrong_and_what_to_do(
    postgres_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKEEP_BACKUP_DIR", str(tmp_path / "backups"))
    url = postgres_server.new_database()

    code, checks = _doctor(url)  # no schema yet
    assert code == 1 and not checks["database"]["ok"]
    assert "agentkeep db upgrade" in checks["database"]["remedy"]

    dialect = dialect_for_url(url)
    try:
        migrate.upgrade(dialect, "0001")
    finally:
        dialect.dispose()
    code, checks = _doctor(url)  # behind head
    assert code == 1 and "agentkeep db upgrade" in checks["database"]["remedy"]

    assert run("db", "upgrade", "-d", url).exit_code == 0
    with agentkeep.connect(url) as store:
        populate(store, secret="doctor secret")
        chat = store.sessions.list().items[0]
        with store._core.write("breaking a count") as conn:
            conn.execute(
                sa.update(sessions).where(sessions.c.id == chat.id).values(message_count=99)
            )
    code, checks = _doctor(url)
    assert code == 1
    assert checks["schema"]["ok"] and checks["integrity"]["ok"]
    assert "data checksums" in checks["integrity"]["detail"]
    assert not checks["consistency"]["ok"] and chat.id in checks["consistency"]["detail"]
    assert checks["consistency"]["remedy"]
    assert not checks["last backup"]["ok"] and "backup create" in checks["last backup"]["remedy"]

    with agentkeep.connect(url) as store, store._core.write("fixing the count") as conn:
        conn.execute(sa.update(sessions).where(sessions.c.id == chat.id).values(message_count=2))
    assert run("backup", "create", "-d", url).exit_code == 0
    code, checks = _doctor(url)
    assert code == 0 and all(c["ok"] for c in checks.values()), checks
    assert checks["last backup"]["detail"].startswith("bak_")
