"""``python -m benchmarks.frameworks``: each integration beside the framework's own backend.

    python -m benchmarks.frameworks                 # every pair, W1-W4, 3 repetitions
    python -m benchmarks.frameworks -f langgraph -w W3 -r 1 --no-postgres

For each framework (LangGraph, OpenAI Agents SDK, LangChain, Google ADK) and
backend (SQLite, PostgreSQL), agentkeep's integration and the framework's own
backend run the same workload (W1 append, W2 read recent, W3 growth over
3,000 turns, W4 bulk; see ``benchmarks/workloads.py``), each in a fresh
process on a fresh database, one right after the other (in alternating order
over repetitions, so a drift of the machine's speed favours neither). A ratio
is taken within a repetition; the report gives their medians and the floors:
at least as fast as the framework everywhere, 3x on append, growth <= 1.15
where the framework's grows. For LangGraph the report adds W3s: W3's growth
counting only the CPU a turn spends inside the checkpointer's calls (both
savers wrapped alike), since a turn's wall time also holds LangGraph's own
work on the whole message list (its ``add_messages`` reducer), whatever the
saver. Needs ``pip install -e '.[bench]'`` plus the
integrations' extras.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.__main__ import DEFAULT_PG, RESULTS, PostgresDatabases, run_one
from benchmarks.integrations import PAIRS
from benchmarks.systems import SYSTEMS
from benchmarks.workloads import Params

WORKLOADS = ["W1", "W2", "W3", "W4"]
HIGHER_IS_BETTER = {"W1", "W2", "W4"}


def params(quick: bool, cap: float) -> Params:
    """Sizes: W3 always 3,000 turns (the growth the issue names); the rest kept short.

    W3 times the last 200 turns of the 3,000 alternating with the first 200 of a
    fresh session, so a drift of a shared machine's speed over the run is not
    read as growth.
    """
    p = Params(
        w1_sessions=20,
        w1_messages=20,
        w2_sessions=50,
        w2_messages=100,
        w2_reads=500,
        w3_appends=3000,
        w3_window=200,
        w3_interleave=True,
        w4_total=5000,
        w4_sessions=10,
        cap=cap,
    )
    if quick:
        p.w2_sessions, p.w2_reads, p.w3_appends, p.w3_window, p.w4_total = 10, 100, 400, 50, 1000
    return p


def _ratio(workload: str, ours: dict[str, Any], theirs: dict[str, Any]) -> float | None:
    """How many times better ours is: throughput ratio, or their growth over ours."""
    if "error" in ours or "error" in theirs or not ours["value"] or not theirs["value"]:
        return None
    if workload in HIGHER_IS_BETTER:
        return float(ours["value"] / theirs["value"])
    return float(theirs["value"] / ours["value"])


def measure(
    pairs: list[str], workloads: list[str], reps: int, p: Params, pg: PostgresDatabases
) -> list[dict[str, Any]]:
    runs = []
    for rep in range(reps):
        for w in workloads:
            for ours in pairs:
                theirs = PAIRS[ours]
                order = [ours, theirs] if rep % 2 == 0 else [theirs, ours]
                got = {}
                for name in order:
                    t0 = time.perf_counter()
                    got[name] = run_one(name, w, p, pg)
                    r = got[name]
                    shown = r.get("error") or f"{r['value']:.4g} {r['unit']}"
                    print(
                        f"[rep {rep + 1}/{reps}] {w} {name}: {shown} ({time.perf_counter() - t0:.0f}s)",
                        file=sys.stderr,
                        flush=True,
                    )
                runs.append(
                    {
                        "rep": rep,
                        "workload": w,
                        "ours": ours,
                        "theirs": theirs,
                        "ours_result": got[ours],
                        "theirs_result": got[theirs],
                        "ratio": _ratio(w, got[ours], got[theirs]),
                    }
                )
    return runs


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["ours"], r["workload"]) for r in runs}, key=lambda k: (k[0], k[1]))
    for ours, w in keys:
        mine = [r for r in runs if r["ours"] == ours and r["workload"] == w]
        ratios = [r["ratio"] for r in mine if r["ratio"] is not None]

        def med(side: str, mine: list[dict[str, Any]] = mine) -> float | None:
            vals = [r[side]["value"] for r in mine if "error" not in r[side]]
            return statistics.median(vals) if vals else None

        row = {
            "ours": ours,
            "theirs": mine[0]["theirs"],
            "workload": w,
            "unit": next(
                (r["ours_result"].get("unit") for r in mine if "unit" in r["ours_result"]), ""
            ),
            "ours_median": med("ours_result"),
            "theirs_median": med("theirs_result"),
            "ratios": ratios,
            "median_ratio": statistics.median(ratios) if ratios else None,
        }
        row["floor"], row["met"] = _floor(w, row)
        rows.append(row)
        if w == "W3":
            own = _own_row(row, mine)
            if own is not None:
                rows.append(own)
    return rows


def _own_row(w3: dict[str, Any], mine: list[dict[str, Any]]) -> dict[str, Any] | None:
    """W3 again, counting only the time a turn spends in the persistence layer's own calls
    (its CPU; see ``SaverClock``), where both sides measure it: LangGraph's savers. The
    turn's wall time (W3) also holds the framework's own work on the whole history."""
    both = [
        r for r in mine if "own_growth" in r["ours_result"] and "own_growth" in r["theirs_result"]
    ]
    if not both:
        return None
    ours = [r["ours_result"]["own_growth"] for r in both]
    theirs = [r["theirs_result"]["own_growth"] for r in both]
    row = {
        **w3,
        "workload": "W3s",
        "unit": "saver's own CPU a turn, last/first",
        "ours_median": statistics.median(ours),
        "theirs_median": statistics.median(theirs),
        "ratios": [t / o for t, o in zip(theirs, ours, strict=True)],
    }
    row["median_ratio"] = statistics.median(row["ratios"])
    row["floor"], row["met"] = _floor("W3", row)
    return row


def _floor(w: str, row: dict[str, Any]) -> tuple[str, bool | None]:
    if w == "W3":
        theirs, ours = row["theirs_median"], row["ours_median"]
        if theirs is None or ours is None:
            return "growth <= 1.15 where theirs grows", None
        if theirs <= 1.15:
            return "no worse than theirs (theirs does not grow)", ours <= max(1.15, theirs)
        return "growth <= 1.15 (theirs grows)", ours <= 1.15
    need = 3.0 if w == "W1" else 1.0
    ratio = row["median_ratio"]
    return f">= {need:g}x theirs", None if ratio is None else ratio >= need


def report(rows: list[dict[str, Any]]) -> None:
    print(f"{'integration':22} {'vs':18} {'W':3} {'ours':>12} {'theirs':>12} {'ratio':>7}  floor")
    for r in rows:

        def f(v: float | None) -> str:
            return "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.3g}")

        ratio = "-" if r["median_ratio"] is None else f"{r['median_ratio']:.2f}x"
        met = {True: "met", False: "NOT MET", None: "not measured"}[r["met"]]
        print(
            f"{r['ours']:22} {r['theirs']:18} {r['workload']:3} {f(r['ours_median']):>12} "
            f"{f(r['theirs_median']):>12} {ratio:>7}  {r['floor']}: {met}  ({r['unit']})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.frameworks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-f", "--frameworks", help="langgraph,oa,langchain,adk (default: all)")
    parser.add_argument("-w", "--workloads", help="comma-separated, of W1-W4 (default: all)")
    parser.add_argument("-r", "--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per timed part")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite pairs only")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL admin URL")
    parser.add_argument(
        "--report", type=Path, help="print the report of a JSON file written before"
    )
    args = parser.parse_args(argv)
    if args.report:
        report(json.loads(args.report.read_text())["summary"])
        return 0
    frameworks = (
        args.frameworks.split(",") if args.frameworks else ["langgraph", "oa", "langchain", "adk"]
    )
    pairs = [n for n in PAIRS if n.split("-")[1] in frameworks]
    if args.no_postgres:
        pairs = [n for n in pairs if SYSTEMS[n].backend == "sqlite"]
    workloads = args.workloads.split(",") if args.workloads else WORKLOADS
    started = datetime.now(UTC)
    runs = measure(
        pairs, workloads, args.reps, params(args.quick, args.cap), PostgresDatabases(args.pg_url)
    )
    rows = summarize(runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"frameworks-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(
        json.dumps({"started": started.isoformat(), "runs": runs, "summary": rows}, indent=2)
    )
    report(rows)
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
