"""``python -m benchmarks.lifecycle``: export, import, backup and copy rates, beside the raw tools.

    python -m benchmarks.lifecycle --messages 1000000      # the issue's size (slow on a shared box)
    python -m benchmarks.lifecycle --messages 100000       # what fits on a shared machine

One SQLite database of N messages (100 sessions, 1 KiB-ish text each) is built
once. Every operation then runs in a fresh Python process, which reports its
wall time and peak RSS (``ru_maxrss``), so memory is measured per operation;
each runs at N/4 and N to show whether peak memory grows with the data.
Rates are messages per second; the raw baselines are ``sqlite3 DB ".backup"``
(the SQLite shell's own online backup) and ``pg_dump -Fc`` on the copied
PostgreSQL database, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import agentkeep

PG = os.environ.get("AGENTKEEP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

_CHILD = """
import json, resource, sys, time
import agentkeep
from agentkeep.lifecycle import copy_database, export, import_file, ExportFilter
op, a, b = sys.argv[1:4]
started = time.perf_counter()
if op == "export":
    with agentkeep.connect(a) as s:
        export(s, b)
elif op == "import":
    with agentkeep.connect(b, auto_migrate=True) as s:
        import_file(s, a)
elif op == "backup":
    with agentkeep.connect(a, auto_migrate=True) as s:
        s.backups.create(to=b)
elif op == "copy":
    copy_database(a, b)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(op: str, a: str, b: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, op, a, b], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{op} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def _build(path: Path, messages: int) -> None:
    text = "lorem ipsum dolor sit amet " * 40
    per = messages // 100
    with agentkeep.connect(f"sqlite:///{path}", durability="off") as store:
        for _ in range(100):
            session = store.sessions.create(user_id="bench")
            for start in range(0, per, 1000):
                batch = [
                    {"role": "user", "content": f"{i} {text}"}
                    for i in range(start, min(per, start + 1000))
                ]
                store.messages.append_many(session.id, batch)


def _pg_database() -> tuple[str, str]:
    name = f"agentkeep_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, PG.rsplit("/", 1)[0] + "/" + name


def _drop(name: str) -> None:
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def run_size(messages: int, work: Path) -> dict[str, Any]:
    db = work / f"source_{messages}.db"
    _build(db, messages)
    url = f"sqlite:///{db}"
    out: dict[str, Any] = {"messages": messages}
    dump = str(work / f"e_{messages}.jsonl")
    out["sqlite_export"] = _child("export", url, dump)
    out["sqlite_import"] = _child("import", dump, f"sqlite:///{work}/i_{messages}.db")
    out["sqlite_backup"] = _child("backup", url, str(work / f"b_{messages}"))
    out["raw_sqlite3_backup_s"] = _timed(["sqlite3", str(db), f".backup {work}/raw_{messages}.db"])
    name, pg_url = _pg_database()
    other, pg_import_url = _pg_database()
    try:
        out["copy_sqlite_to_postgres"] = _child("copy", url, pg_url)
        pg_dump_file = str(work / f"pe_{messages}.jsonl")
        out["postgres_export"] = _child("export", pg_url, pg_dump_file)
        out["postgres_import"] = _child("import", pg_dump_file, pg_import_url)
        out["postgres_backup"] = _child("backup", pg_url, str(work / f"pb_{messages}"))
        out["raw_pg_dump_s"] = _timed(
            ["pg_dump", "-Fc", "-f", str(work / f"raw_{messages}.dump"), pg_url]
        )
        out["copy_postgres_to_sqlite"] = _child("copy", pg_url, f"sqlite:///{work}/c_{messages}.db")
    finally:
        _drop(name)
        _drop(other)
    return out


OPS = (
    "sqlite_export",
    "sqlite_import",
    "sqlite_backup",
    "copy_sqlite_to_postgres",
    "postgres_export",
    "postgres_import",
    "postgres_backup",
    "copy_postgres_to_sqlite",
)


def report(result: dict[str, Any]) -> None:
    n = result["messages"]
    print(f"\n{n:,} messages")
    for op in OPS:
        r = result[op]
        print(
            f"  {op:24} {n / r['seconds']:>10,.0f} msg/s  {r['seconds']:8.2f} s  peak {r['peak_mib']:6.0f} MiB"
        )
    raw = result["raw_sqlite3_backup_s"]
    print(
        f"  {'sqlite3 .backup':24} {n / raw:>10,.0f} msg/s  {raw:8.2f} s   (agentkeep backup / raw: {result['sqlite_backup']['seconds'] / raw:.2f}x the time)"
    )
    raw = result["raw_pg_dump_s"]
    print(
        f"  {'pg_dump -Fc':24} {n / raw:>10,.0f} msg/s  {raw:8.2f} s   (agentkeep backup / raw: {result['postgres_backup']['seconds'] / raw:.2f}x the time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages at the full size")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentkeep-lifecycle-bench-"))
    try:
        results = [run_size(max(100, args.messages // 4), work), run_size(args.messages, work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for result in results:
        report(result)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
