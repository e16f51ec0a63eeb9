"""``python -m benchmarks``: every system, every workload, fresh process and database each.

    python -m benchmarks                      # everything installed, 3 repetitions
    python -m benchmarks --quick              # small sizes, 1 repetition: a smoke run
    python -m benchmarks -s agentkeep-sqlite-normal,raw-sqlite-normal -w W1,W2 -r 5

Peers need ``pip install -e .[bench]``; a peer that is not installed is
skipped with a note. PostgreSQL systems need the server at ``--pg-url``
(default postgresql://postgres@127.0.0.1:5432/test): each run gets a new
database there, dropped afterwards. The report prints medians and, for each
repetition, the ratio to the raw driver at the same durability measured in
the same repetition; the JSON goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.systems import SYSTEMS, SystemInfo
from benchmarks.workloads import DESCRIPTIONS, WORKLOADS, Params

RESULTS = Path(__file__).parent / "results"
DEFAULT_PG = os.environ.get(
    "AGENTKEEP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

# Which workloads each system runs: W5 is SQLite-only (one file, several processes).
SQLITE_ONLY = {"W5"}
# The async API is a thread hop over the sync one: measured where latency shows it.
ASYNC_WORKLOADS = {"W1", "W2", "W3", "W4", "W7"}
# history() is another read: the other workloads would run agentkeep again.
HISTORY_WORKLOADS = {"W2"}

PEER_MODULES = {
    "oa-sqlite": "agents",
    "oa-sqla-sqlite": "aiosqlite",
    "oa-sqla-pg": "asyncpg",
    "langchain-sqlite": "langchain_community",
    "langchain-pg": "langchain_community",
    "langgraph-sqlite": "langgraph.checkpoint.sqlite",
    "langgraph-pg": "langgraph.checkpoint.postgres",
    "adk-sqlite": "google.adk",
    "adk-pg": "google.adk",
}


def _installed(name: str) -> bool:
    module = PEER_MODULES.get(name)
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _applies(info: SystemInfo, workload: str) -> bool:
    if workload in SQLITE_ONLY and info.backend != "sqlite":
        return False
    if "history" in info.name and workload not in HISTORY_WORKLOADS:
        return False
    return not ("async" in info.name and workload not in ASYNC_WORKLOADS)


def run_order(workload: str, names: list[str], rep: int) -> list[str]:
    """The systems of one workload in one repetition, each next to its raw reference.

    This machine's speed drifts over seconds (other tenants of the host): a ratio
    is only as good as the closeness in time of its two measurements. So each raw
    driver runs right before the agentkeep systems measured against it, and in
    odd repetitions right after them (the order of each group reversed), so that
    a drift favours neither side over the repetitions. Peers are interleaved
    between the groups (one after each), so no system always runs last.
    """
    applicable = [n for n in names if _applies(SYSTEMS[n], workload)]
    groups: list[list[str]] = []
    for raw in [n for n in applicable if SYSTEMS[n].kind == "raw"]:
        mine = [
            n for n in applicable if SYSTEMS[n].kind == "agentkeep" and SYSTEMS[n].reference == raw
        ]
        group = [raw, *sorted(mine, key=lambda n: "async" in n)]  # the sync API nearest
        groups.append(group[::-1] if rep % 2 else group)
    peers = [n for n in applicable if SYSTEMS[n].kind == "peer"]
    if rep % 2:
        peers.reverse()
    order: list[str] = []
    for k, group in enumerate(groups):
        order += group
        order += peers[k : k + 1] if k < len(groups) - 1 else peers[k:]
    return order + (peers if not groups else [])


# --- one run, in its own process -------------------------------------------------------------


def _worker(spec: dict[str, Any]) -> None:
    from benchmarks.workloads import run_workload

    params = Params(**spec["params"])
    result = asyncio.run(run_workload(spec["system"], spec["workload"], spec["db"], params))
    print("RESULT " + json.dumps(result), flush=True)


class PostgresDatabases:
    """Creates a fresh database per run on the server and drops it afterwards."""

    def __init__(self, url: str) -> None:
        self.admin = url

    def create(self) -> str:
        import psycopg
        from psycopg import sql

        name = f"agentkeep_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.admin.rsplit("/", 1)[0] + "/" + name

    def drop(self, url: str) -> None:
        import psycopg
        from psycopg import sql

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def run_one(system: str, workload: str, params: Params, pg: PostgresDatabases) -> dict[str, Any]:
    """Run one system on one workload in a new process on a new database."""
    info = SYSTEMS[system]
    tmp = tempfile.mkdtemp(prefix="akbench_")
    db = pg.create() if info.backend == "postgresql" else os.path.join(tmp, "bench.db")
    spec = {
        "system": system,
        "workload": workload,
        "db": db,
        "params": dataclasses.asdict(params),
    }
    # The cap bounds the timed part and each preload; the rest is setup and teardown.
    timeout = params.cap * 3 + params.w5_seconds + 180
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=Path(__file__).parent.parent,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
        result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
        result["wall_s"] = time.perf_counter() - started
        return result
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if info.backend == "postgresql":
            try:
                pg.drop(db)
            except Exception as exc:
                print(f"could not drop {db}: {exc}", file=sys.stderr)


# --- the whole benchmark ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-s", "--systems", help="comma-separated systems (default: all installed)")
    parser.add_argument("-w", "--workloads", help="comma-separated workloads (default: W1-W6)")
    parser.add_argument("-r", "--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--cap", type=float, help="seconds per timed part (default 120)")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL admin URL")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL systems")
    parser.add_argument(
        "--out", type=Path, help="JSON file (default benchmarks/results/<time>.json)"
    )
    parser.add_argument(
        "--peer-reps",
        type=int,
        help="repetitions of the peers (default: --reps); raw and agentkeep run every one",
    )
    parser.add_argument(
        "--report", type=Path, help="print the report of a JSON file written before"
    )
    parser.add_argument("--list", action="store_true", help="list systems and workloads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        _worker(json.loads(args.worker))
        return 0

    from benchmarks.report import print_report, summarize

    if args.report:
        doc = json.loads(args.report.read_text())
        doc["summary"] = summarize(doc["runs"], doc["workloads"], list(doc["systems"]))
        print_report(doc)
        return 0

    if args.list:
        for name, info in SYSTEMS.items():
            note = "" if _installed(name) else "  (not installed: pip install -e .[bench])"
            print(f"{name:32} {info.label} [{info.backend}, {info.durability}]{note}")
        for w, d in DESCRIPTIONS.items():
            print(f"{w}  {d}")
        return 0

    params = Params.quick() if args.quick else Params()
    if args.cap is not None:
        params.cap = args.cap
    reps = args.reps or (1 if args.quick else 3)
    workloads = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}; one of {', '.join(WORKLOADS)}")
    names = args.systems.split(",") if args.systems else list(SYSTEMS)
    for n in names:
        if n not in SYSTEMS:
            parser.error(f"unknown system {n!r}; see --list")
    skipped = [n for n in names if not _installed(n)]
    names = [n for n in names if _installed(n)]
    if args.no_postgres:
        names = [n for n in names if SYSTEMS[n].backend != "postgresql"]
    # Every system needs its raw reference measured in the same repetition.
    for n in list(names):
        ref = SYSTEMS[n].reference
        if ref not in names:
            names.insert(0, ref)
    names = sorted(set(names), key=list(SYSTEMS).index)
    for n in skipped:
        print(f"skipping {n}: not installed (pip install -e .[bench])", file=sys.stderr)

    pg = PostgresDatabases(args.pg_url)
    runs: list[dict[str, Any]] = []
    started = datetime.now(UTC)
    out = args.out or RESULTS / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    peer_reps = reps if args.peer_reps is None else args.peer_reps

    def document() -> dict[str, Any]:
        return {
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "quick": args.quick,
            "reps": reps,
            "peer_reps": peer_reps,
            "params": dataclasses.asdict(params),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "workloads": workloads,
            "systems": {n: dataclasses.asdict(SYSTEMS[n]) for n in names},
            "skipped": skipped,
            "runs": runs,
        }

    for rep in range(reps):
        todo = [
            (w, n)
            for w in workloads
            for n in run_order(w, names, rep)
            if rep < peer_reps or SYSTEMS[n].kind != "peer"
        ]
        for i, (w, n) in enumerate(todo):
            t0 = time.perf_counter()
            result = run_one(n, w, params, pg)
            runs.append({"rep": rep, "workload": w, "system": n, **result})
            shown = (
                f"error: {result['error']}"
                if "error" in result
                else f"{result['value']:.4g} {result['unit']}"
                + (" (partial)" if result.get("partial") else "")
            )
            print(
                f"[rep {rep + 1}/{reps} {i + 1}/{len(todo)}] {w} {n}: {shown}"
                f"  ({time.perf_counter() - t0:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
            out.write_text(json.dumps(document(), indent=2))  # a stopped run keeps what it did

    doc = document()
    doc["summary"] = summarize(runs, workloads, names)
    out.write_text(json.dumps(doc, indent=2))
    print_report(doc)
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
