"""``python -m benchmarks.lifecycle``: export, import, backup and copy rates, beside the raw tools.

    python -m benchmarks.lifecycle --messages 1000000      # the issue's size (and 100,000)
    python -m benchmarks.lifecycle --messages 100000 --small 10000
    python -m benchmarks.lifecycle --snapshots             # snapshot creation and message update

At each size (``--small``, default N/10, then N) one SQLite database of that
many messages (100 sessions, 1 KiB-ish text each) is seeded through
``messages.append_many`` in batches of 10,000. Every operation then runs in a
fresh Python process, which reports its wall time and its own peak RSS
(``VmHWM``), so memory is measured per operation; the two sizes show
whether peak memory grows with the data. A size's files are deleted once it
is reported.
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
import sqlalchemy as sa
from psycopg import sql

import agentkeep

PG = os.environ.get("AGENTKEEP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

_CHILD = """
import json, sys, time
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
# VmHWM: this process's own peak RSS. ru_maxrss would not do: Linux carries the
# parent's RSS at fork across exec into it, so it never reads below the parent's.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mib": int(hwm.split()[1]) / 1024}))
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


SEED_BATCH = 10_000


def _build(path: Path, messages: int) -> float:
    """Seed ``path`` with ``messages`` messages in 100 sessions; returns the seconds it took."""
    text = "lorem ipsum dolor sit amet " * 40
    per = messages // 100
    started = time.perf_counter()
    with agentkeep.connect(f"sqlite:///{path}", durability="off") as store:
        for _ in range(100):
            session = store.sessions.create(user_id="bench")
            for start in range(0, per, SEED_BATCH):
                batch = [
                    {"role": "user", "content": f"{i} {text}"}
                    for i in range(start, min(per, start + SEED_BATCH))
                ]
                store.messages.append_many(session.id, batch)
    return time.perf_counter() - started


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
    out: dict[str, Any] = {"messages": messages, "seed_s": _build(db, messages)}
    url = f"sqlite:///{db}"
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
    print(f"\n{n:,} messages (seeded by append_many at {n / result['seed_s']:,.0f} msg/s)")
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


def _mean_ms(fn: Any, times: int) -> float:
    started = time.perf_counter()
    for _ in range(times):
        fn()
    return (time.perf_counter() - started) * 1000 / times


def _capture_at_time_ms(store: agentkeep.Store, session_id: str, times: int) -> float:
    """What the other design would pay per snapshot: every covered message copied, in SQL."""
    from agentkeep.store.schema import messages as mt
    from agentkeep.store.schema import snapshot_messages as kt

    columns = [
        "tenant_id", "snapshot_id", "seq", "session_id", "message_id", "role", "content",
        "content_types", "run_id", "agent_id", "idempotency_key", "metadata", "extra",
        "message_created_at", "created_at",
    ]  # fmt: skip
    total = 0.0
    for _ in range(times):
        snap = store.snapshots.create(session_id)
        source = sa.select(
            mt.c.tenant_id, sa.literal(snap.id), mt.c.seq, mt.c.session_id, mt.c.id, mt.c.role,
            mt.c.content, mt.c.content_types, mt.c.run_id, mt.c.agent_id, mt.c.idempotency_key,
            mt.c.metadata, mt.c.extra, mt.c.created_at, mt.c.created_at,
        ).where(mt.c.tenant_id == store.tenant_id, mt.c.session_id == session_id)  # fmt: skip
        with store._core.write("benchmark") as conn:
            started = time.perf_counter()
            conn.execute(sa.insert(kt).from_select(columns, source))
            total += time.perf_counter() - started
        store.snapshots.delete(snap.id)
    return total * 1000 / times


def snapshot_costs(url: str, messages: int) -> dict[str, float]:
    """Snapshot creation and message update, with copy-on-write, on a session of ``messages``."""
    with agentkeep.connect(url, auto_migrate=True) as store:
        store = store.tenant(f"bench_{uuid.uuid4().hex[:8]}")
        session = store.sessions.create()
        made = []
        for start in range(0, messages, 1000):
            batch = [
                {"role": "user", "content": f"{i} lorem ipsum"}
                for i in range(start, min(messages, start + 1000))
            ]
            made += store.messages.append_many(session.id, batch)
        plain = made[messages // 2].id
        out = {"messages": float(messages)}
        out["update_no_snapshot_ms"] = _mean_ms(
            lambda: store.messages.update(plain, content="edited"), 50
        )
        out["snapshot_create_ms"] = _mean_ms(lambda: store.snapshots.create(session.id), 20)
        out["capture_at_time_ms"] = _capture_at_time_ms(store, session.id, 5)
        # 20 snapshots now cover every message: the first edit of each copies 20 rows.
        fresh = iter(m.id for m in made[: messages // 2])
        out["first_update_under_20_snapshots_ms"] = _mean_ms(
            lambda: store.messages.update(next(fresh), content="edited"), 50
        )
        out["repeat_update_under_20_snapshots_ms"] = _mean_ms(
            lambda: store.messages.update(plain, content="edited again"), 50
        )
        out["fork_from_snapshot_ms"] = _mean_ms(
            lambda: store.sessions.fork(
                session.id, snapshot_id=store.snapshots.list(session.id, limit=1).items[0].id
            ),
            3,
        )
    return out


def snapshot_report() -> None:
    name, pg_url = _pg_database()
    work = Path(tempfile.mkdtemp(prefix="agentkeep-snapshot-bench-"))
    try:
        rows = []
        for backend, url in (("sqlite", f"sqlite:///{work}/s.db"), ("postgres", pg_url)):
            for n in (1_000, 10_000):
                rows.append((backend, snapshot_costs(url, n)))
    finally:
        _drop(name)
        shutil.rmtree(work, ignore_errors=True)
    keys = [k for k in rows[0][1] if k != "messages"]
    print(f"{'backend':9} {'messages':>8} " + " ".join(f"{k:>14.14}" for k in keys))
    for backend, r in rows:
        print(f"{backend:9} {int(r['messages']):>8} " + " ".join(f"{r[k]:>14.2f}" for k in keys))
    print(json.dumps([{"backend": b, **r} for b, r in rows], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages at the full size")
    parser.add_argument(
        "--small", type=int, default=0, help="messages at the smaller size (default N/10)"
    )
    parser.add_argument(
        "--snapshots",
        action="store_true",
        help="only the snapshot costs: creation and message update (copy-on-write)",
    )
    args = parser.parse_args()
    if args.snapshots:
        snapshot_report()
        return
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores, load {os.getloadavg()}"
    )
    for size in (args.small or max(100, args.messages // 10), args.messages):
        work = Path(tempfile.mkdtemp(prefix="agentkeep-lifecycle-bench-"))
        try:
            result = run_size(size, work)  # each size reported as soon as it is done
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report(result)
        print(json.dumps(result, indent=2), flush=True)
    print(f"done {time.strftime('%H:%M:%S %Z')}, load {os.getloadavg()}")


if __name__ == "__main__":
    main()
