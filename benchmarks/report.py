"""Medians, ratios to the raw driver of the same repetition, the issue's floors, and a Rich table."""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.systems import ASYNC_PEERS, SYSTEMS

__all__ = ["FLOORS", "check_floors", "print_report", "summarize"]

# For ratio workloads higher is better; W3 (growth) and W6 (RSS) are judged on their own.
_RATIO_WORKLOADS = {"W1", "W2", "W4", "W5", "W7"}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(
    runs: list[dict[str, Any]], workloads: list[str], names: list[str]
) -> list[dict[str, Any]]:
    """One row per workload and system: medians over repetitions and per-repetition ratios."""
    by: dict[tuple[str, str, int], dict[str, Any]] = {
        (r["workload"], r["system"], r["rep"]): r for r in runs
    }
    reps = sorted({r["rep"] for r in runs})
    rows = []
    for w in workloads:
        for n in names:
            mine = [by[(w, n, rep)] for rep in reps if (w, n, rep) in by]
            if not mine:
                continue
            ok = [r for r in mine if "error" not in r]
            info = SYSTEMS[n]
            ratios: list[float | None] = []
            if w in _RATIO_WORKLOADS:
                for rep in reps:
                    if (w, n, rep) not in by:
                        continue  # a peer measured in fewer repetitions
                    r, ref = by.get((w, n, rep)), by.get((w, info.reference, rep))
                    if r and ref and "error" not in r and "error" not in ref and ref["value"]:
                        ratios.append(r["value"] / ref["value"])
                    else:
                        ratios.append(None)
            row: dict[str, Any] = {
                "workload": w,
                "system": n,
                "label": info.label,
                "backend": info.backend,
                "durability": info.durability,
                "kind": info.kind,
                "unit": ok[0]["unit"] if ok else None,
                "median": _median([r["value"] for r in ok]),
                "values": [r.get("value") for r in mine],
                "ratios": ratios,
                "median_ratio": _median([x for x in ratios if x is not None]),
                "partial": any(r.get("partial") for r in ok),
                "errors": [r["error"] for r in mine if "error" in r],
            }
            for key in (
                "p50_us",
                "p99_us",
                "first_us",
                "last_us",
                "errors",
                "rss_at_10pct_mb",
                "rss_at_end_mb",
            ):
                vals = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
                if vals:
                    row[f"median_{key}"] = _median(vals)
            if w == "W6" and ok:
                row["flat"] = all(r.get("flat") for r in ok)
            if w == "W5" and ok:
                row["write_errors"] = sum(int(r.get("errors", 0)) for r in ok)
            rows.append(row)
    return rows


# (workload, agentkeep system, what, test(row, rows) -> bool | None)
def _row(rows: list[dict[str, Any]], w: str, n: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["workload"] == w and r["system"] == n), None)


def _peer_factors(
    runs: list[dict[str, Any]], w: str, n: str, *, same: bool = False
) -> dict[str, float]:
    """For each peer on ``n``'s backend: the median over repetitions of ``n`` / the peer.

    With ``same``: only peers at ``n``'s durability, and for agentkeep's async
    API only async peers (like for like).

    Each ratio is taken within one repetition, as the ratios to raw are: the two
    measurements are minutes apart at most, not the whole run.
    """
    backend = SYSTEMS[n].backend
    mine = {
        r["rep"]: r["value"]
        for r in runs
        if r["workload"] == w and r["system"] == n and "error" not in r and r["value"]
    }
    per_peer: dict[str, list[float]] = {}
    for r in runs:
        info = SYSTEMS.get(r["system"])
        if (
            r["workload"] != w
            or info is None
            or info.kind != "peer"
            or info.backend != backend
            or (same and info.durability != SYSTEMS[n].durability)
            or (same and "async" in n and r["system"] not in ASYNC_PEERS)
            or "error" in r
            or not r["value"]
            or r["rep"] not in mine
        ):
            continue
        per_peer.setdefault(r["system"], []).append(mine[r["rep"]] / r["value"])
    return {peer: statistics.median(ratios) for peer, ratios in per_peer.items()}


def _ratio_at_least(w: str, n: str, floor: float) -> Any:
    def test(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
        r = _row(rows, w, n)
        if r is None or r["median_ratio"] is None:
            return None, "not measured"
        return r["median_ratio"] >= floor, f"{r['median_ratio']:.2f} of raw (floor {floor:.2f})"

    return test


def _times_best_peer(w: str, n: str, factor: float, *, same: bool = False) -> Any:
    def test(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
        factors = _peer_factors(runs, w, n, same=same)
        if not factors:
            return None, "not measured"
        best = min(factors, key=factors.__getitem__)
        return factors[best] >= factor, (
            f"{factors[best]:.1f}x the best peer, {best} (floor {factor:g}x)"
        )

    return test


def _versus(w: str, n: str, other: str, floor: float) -> Any:
    """``n`` / ``other`` on workload ``w``, taken per repetition, median over them."""

    def test(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
        def values(name: str) -> dict[int, float]:
            return {
                r["rep"]: r["value"]
                for r in runs
                if r["workload"] == w and r["system"] == name and "error" not in r and r["value"]
            }

        mine, theirs = values(n), values(other)
        ratios = [mine[k] / theirs[k] for k in mine if k in theirs]
        if not ratios:
            return None, "not measured"
        got = statistics.median(ratios)
        return got >= floor, f"{got:.2f}x {other} (floor {floor:g}x)"

    return test


def _growth(n: str) -> Any:
    def test(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
        r = _row(rows, "W3", n)
        if r is None or r["median"] is None:
            return None, "not measured"
        return r["median"] <= 1.15, f"growth {r['median']:.2f} (floor <= 1.15)"

    return test


def _no_errors_and_ratio(n: str, floor: float) -> Any:
    def test(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
        r = _row(rows, "W5", n)
        if r is None or r["median_ratio"] is None:
            return None, "not measured"
        errs = r.get("write_errors", 0)
        ok = errs == 0 and r["median_ratio"] >= floor
        return ok, f"{errs} errors, {r['median_ratio']:.2f} of raw (floor 0 errors, {floor:.2f})"

    return test


def _flat(n: str) -> Any:
    def test(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
        r = _row(rows, "W6", n)
        if r is None or "flat" not in r:
            return None, "not measured"
        return bool(r["flat"]), (
            f"RSS {r.get('median_rss_at_10pct_mb', 0):.0f} MiB at 10% -> "
            f"{r.get('median_rss_at_end_mb', 0):.0f} MiB at the end"
        )

    return test


FLOORS: list[tuple[str, Any]] = [
    (
        "W1 SQLite NORMAL >= 25% of raw NORMAL",
        _ratio_at_least("W1", "agentkeep-sqlite-normal", 0.25),
    ),
    ("W1 SQLite NORMAL >= 4x best peer", _times_best_peer("W1", "agentkeep-sqlite-normal", 4)),
    ("W1 SQLite FULL >= 60% of raw FULL", _ratio_at_least("W1", "agentkeep-sqlite-full", 0.60)),
    ("W1 PostgreSQL >= 70% of raw", _ratio_at_least("W1", "agentkeep-pg", 0.70)),
    (
        "W2 SQLite >= 40% of raw, history() (chat dicts)",
        _ratio_at_least("W2", "agentkeep-history-sqlite-normal", 0.40),
    ),
    (
        "W2 SQLite >= 50% of raw, recent() (Message objects)",
        _ratio_at_least("W2", "agentkeep-sqlite-normal", 0.50),
    ),
    (
        "W2 PostgreSQL >= 70% of raw, history() (chat dicts)",
        _ratio_at_least("W2", "agentkeep-history-pg", 0.70),
    ),
    (
        "W2 PostgreSQL >= 70% of raw, recent() (Message objects)",
        _ratio_at_least("W2", "agentkeep-pg", 0.70),
    ),
    ("W3 SQLite growth <= 1.15", _growth("agentkeep-sqlite-normal")),
    ("W3 PostgreSQL growth <= 1.15", _growth("agentkeep-pg")),
    ("W4 SQLite >= 40% of raw", _ratio_at_least("W4", "agentkeep-sqlite-normal", 0.40)),
    ("W4 SQLite ahead of every peer", _times_best_peer("W4", "agentkeep-sqlite-normal", 1)),
    ("W4 PostgreSQL >= 50% of raw", _ratio_at_least("W4", "agentkeep-pg", 0.50)),
    ("W5 NORMAL: 0 errors, >= 25% of raw", _no_errors_and_ratio("agentkeep-sqlite-normal", 0.25)),
    ("W5 FULL: 0 errors, >= 25% of raw", _no_errors_and_ratio("agentkeep-sqlite-full", 0.25)),
    ("W6 SQLite flat peak RSS", _flat("agentkeep-sqlite-normal")),
    ("W6 PostgreSQL flat peak RSS", _flat("agentkeep-pg")),
    # Like for like: the same durability, async beside async.
    (
        "W1 SQLite FULL >= 2x best peer at FULL",
        _times_best_peer("W1", "agentkeep-sqlite-full", 2, same=True),
    ),
    (
        "W1 SQLite FULL async >= 2x best async peer at FULL",
        _times_best_peer("W1", "agentkeep-async-sqlite-full", 2, same=True),
    ),
    (
        "W7 SQLite FULL async, 32 tasks >= 4x best async peer at FULL",
        _times_best_peer("W7", "agentkeep-async-sqlite-full", 4, same=True),
    ),
    (
        "W7 SQLite FULL async, 32 tasks >= 3x the sync API (sequential)",
        _versus("W7", "agentkeep-async-sqlite-full", "agentkeep-sqlite-full", 3),
    ),
    *[
        (
            f"{w} {label} async >= 0.8x the sync API",
            _versus(w, f"agentkeep-async-{name}", f"agentkeep-{name}", 0.8),
        )
        for w in ("W1", "W2")
        for name, label in (
            ("sqlite-normal", "SQLite NORMAL"),
            ("sqlite-full", "SQLite FULL"),
            ("pg", "PostgreSQL"),
        )
    ],
]


def check_floors(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for what, test in FLOORS:
        met, detail = test(rows, runs)
        out.append({"floor": what, "met": met, "detail": detail})
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def print_report(doc: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=200)
    rows = doc["summary"]
    table = Table(
        title=f"agentkeep benchmark ({doc['reps']} repetition(s){', quick sizes' if doc['quick'] else ''})",
        show_lines=False,
    )
    for col, just in [
        ("workload", "left"),
        ("system", "left"),
        ("durability", "left"),
        ("median", "right"),
        ("unit", "left"),
        ("x raw (median)", "right"),
        ("x raw per rep", "left"),
        ("details", "left"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    last_w = None
    for r in rows:
        details = []
        if "median_p50_us" in r:
            details.append(f"p50 {r['median_p50_us']:.0f}us p99 {r['median_p99_us']:.0f}us")
        if "median_first_us" in r:
            details.append(f"first {r['median_first_us']:.0f}us last {r['median_last_us']:.0f}us")
        if "write_errors" in r:
            details.append(f"{r['write_errors']} errors")
        if "flat" in r:
            details.append(
                f"{'flat' if r['flat'] else 'GROWS'} "
                f"({r.get('median_rss_at_10pct_mb', 0):.0f}->{r.get('median_rss_at_end_mb', 0):.0f} MiB)"
            )
        if r["partial"]:
            details.append("partial (cap)")
        if r["errors"]:
            details.append("failed: " + r["errors"][0][:80])
        ratios = " ".join("-" if x is None else f"{x:.2f}" for x in r["ratios"])
        style = "bold" if r["kind"] == "agentkeep" else ("dim" if r["kind"] == "raw" else None)
        if last_w is not None and r["workload"] != last_w:
            table.add_section()
        last_w = r["workload"]
        table.add_row(
            r["workload"],
            f"{r['system']}",
            r["durability"],
            _fmt(r["median"]),
            r["unit"] or "",
            "-" if r["median_ratio"] is None else f"{r['median_ratio']:.2f}",
            ratios,
            "; ".join(details),
            style=style,
        )
    console.print(table)
    floors = Table(title="floors (issues 3 and 15)")
    floors.add_column("floor")
    floors.add_column("met")
    floors.add_column("measured")
    for f in check_floors(rows, doc["runs"]):
        mark = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[yellow]n/a[/]"}[f["met"]]
        floors.add_row(f["floor"], mark, f["detail"])
    console.print(floors)
