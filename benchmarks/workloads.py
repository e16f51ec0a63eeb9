"""The workloads W1-W6, written once against ``systems.System``.

Each returns a result dict: ``value`` (the headline number, in ``unit``),
``done`` (operations completed), ``elapsed`` (seconds), ``partial`` (True when
the cap stopped it early: rates are then over what was done) and details.
Messages are 200-400 characters, alternating user/assistant.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.systems import System, open_system

__all__ = ["WORKLOADS", "Params", "run_workload"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz      .,"
_rng = random.Random(7)
_BASE = "".join(_rng.choice(_ALPHABET) for _ in range(4096))


def text(i: int) -> str:
    """Message ``i``: 200-400 characters."""
    start = (i * 131) % 3000
    return _BASE[start : start + 200 + (i * 37) % 201]


def role(i: int) -> str:
    return "user" if i % 2 == 0 else "assistant"


@dataclass
class Params:
    """Sizes of the workloads; ``quick()`` shrinks them for a smoke run."""

    w1_sessions: int = 100
    w1_messages: int = 50
    w2_sessions: int = 1000
    w2_messages: int = 100
    w2_reads: int = 2000
    w3_appends: int = 3000
    w3_window: int = 200
    w3_interleave: bool = False  # time the last window beside a fresh session's first (below)
    w4_total: int = 100_000
    w4_batch: int = 100
    w4_sessions: int = 100
    w5_procs: int = 4
    w5_seconds: float = 10.0
    w6_total: int = 1_000_000
    w6_sessions: int = 1000
    w6_batch: int = 100
    w7_tasks: int = 32
    w7_messages: int = 100
    cap: float = 120.0

    @classmethod
    def quick(cls) -> Params:
        return cls(
            w1_sessions=20,
            w1_messages=10,
            w2_sessions=50,
            w2_messages=40,
            w2_reads=300,
            w3_appends=600,
            w3_window=100,
            w4_total=5000,
            w4_sessions=10,
            w5_seconds=2.0,
            w6_total=50_000,
            w6_sessions=100,
            w7_messages=20,
            cap=20.0,
        )


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def w1_append_one(sys_: System, p: Params) -> dict[str, Any]:
    sessions = [await sys_.new_session(i) for i in range(p.w1_sessions)]
    deadline = time.perf_counter() + p.cap
    done = 0
    start = time.perf_counter()
    for m in range(p.w1_messages):
        for s in sessions:
            await sys_.append(s, role(m), text(done))
            done += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - start
    total = p.w1_sessions * p.w1_messages
    return {
        "value": done / elapsed,
        "unit": "msg/s",
        "done": done,
        "elapsed": elapsed,
        "partial": done < total,
    }


async def _preload(sys_: System, sessions: int, per: int, cap: float) -> tuple[list[Any], bool]:
    out = []
    deadline = time.perf_counter() + cap
    for i in range(sessions):
        s = await sys_.new_session(i)
        await sys_.append_batch(s, [(role(k), text(i * per + k)) for k in range(per)])
        out.append(s)
        if time.perf_counter() > deadline:
            return out, True
    return out, False


async def w2_read_recent(sys_: System, p: Params) -> dict[str, Any]:
    sessions, cut = await _preload(sys_, p.w2_sessions, p.w2_messages, p.cap)
    rng = random.Random(11)
    lat: list[float] = []
    deadline = time.perf_counter() + p.cap
    start = time.perf_counter()
    for _ in range(p.w2_reads):
        s = sessions[rng.randrange(len(sessions))]
        t0 = time.perf_counter()
        got = await sys_.recent(s, 20)
        lat.append(time.perf_counter() - t0)
        if len(got) != 20:
            raise AssertionError(f"recent returned {len(got)} messages, not 20")
        if t0 > deadline:
            break
    elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "value": len(lat) / elapsed,
        "unit": "reads/s",
        "done": len(lat),
        "elapsed": elapsed,
        "partial": cut or len(lat) < p.w2_reads,
        "p50_us": lat[len(lat) // 2] * 1e6,
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6,
        "preloaded_sessions": len(sessions),
    }


async def w3_growth(sys_: System, p: Params) -> dict[str, Any]:
    if p.w3_interleave:
        return await _w3_interleaved(sys_, p)
    s = await sys_.new_session(0)
    times: list[float] = []
    deadline = time.perf_counter() + p.cap
    for i in range(p.w3_appends):
        t0 = time.perf_counter()
        await sys_.append(s, role(i), text(i))
        times.append(time.perf_counter() - t0)
        if t0 > deadline:
            break
    w = min(p.w3_window, len(times) // 2)
    first = statistics.fmean(times[:w])
    last = statistics.fmean(times[-w:])
    return {
        "value": last / first,
        "unit": "last/first",
        "done": len(times),
        "elapsed": sum(times),
        "partial": len(times) < p.w3_appends,
        "first_us": first * 1e6,
        "last_us": last * 1e6,
    }


async def _w3_interleaved(sys_: System, p: Params) -> dict[str, Any]:
    """Growth measured side by side: the last ``w3_window`` appends of a session of
    ``w3_appends`` alternate with the first appends of a fresh session.

    Both windows then run under the same load of the machine: on a shared
    machine whose speed drifts over a run, first-then-last measures the drift.
    """
    long = await sys_.new_session(0)
    deadline = time.perf_counter() + p.cap * 2  # within run_one's timeout (cap * 3 + ...)
    w = min(p.w3_window, p.w3_appends // 2)
    done = 0
    for i in range(p.w3_appends - w):
        await sys_.append(long, role(i), text(i))
        done += 1
        if time.perf_counter() > deadline:
            break
    fresh = await sys_.new_session(1)
    last: list[float] = []
    first: list[float] = []
    # the persistence layer's own part of each turn, where the system measures it
    own: dict[str, list[tuple[float, float]]] = {"last": [], "first": []}
    for k in range(w):
        pair = [(long, done + k, last, "last"), (fresh, k, first, "first")]
        for session, i, times, window in pair if k % 2 == 0 else pair[::-1]:
            before = sys_.own_time()
            t0 = time.perf_counter()
            await sys_.append(session, role(i), text(i))
            times.append(time.perf_counter() - t0)
            after = sys_.own_time()
            if before is not None and after is not None:
                own[window].append((after[0] - before[0], after[1] - before[1]))
    f, lst = statistics.fmean(first), statistics.fmean(last)
    result = {
        "value": lst / f,
        "unit": "last/first",
        "done": done + w,
        "elapsed": sum(first) + sum(last),
        "partial": done + w < p.w3_appends,
        "first_us": f * 1e6,
        "last_us": lst * 1e6,
        "interleaved": True,
    }
    if own["first"] and own["last"]:
        result.update(_own_growth(own["first"], own["last"]))
    return result


def _own_growth(
    first: list[tuple[float, float]], last: list[tuple[float, float]]
) -> dict[str, float]:
    """The growth of the persistence layer's own time a turn: CPU (the headline) and wall."""
    fw, fc = statistics.fmean(w for w, _ in first), statistics.fmean(c for _, c in first)
    lw, lc = statistics.fmean(w for w, _ in last), statistics.fmean(c for _, c in last)
    return {
        "own_growth": lc / fc,
        "own_first_us": fc * 1e6,
        "own_last_us": lc * 1e6,
        "own_wall_growth": lw / fw,
        "own_wall_first_us": fw * 1e6,
        "own_wall_last_us": lw * 1e6,
    }


async def w4_bulk(sys_: System, p: Params) -> dict[str, Any]:
    sessions = [await sys_.new_session(i) for i in range(p.w4_sessions)]
    batches = p.w4_total // p.w4_batch
    deadline = time.perf_counter() + p.cap
    done = 0
    start = time.perf_counter()
    for b in range(batches):
        s = sessions[b % len(sessions)]
        await sys_.append_batch(s, [(role(done + k), text(done + k)) for k in range(p.w4_batch)])
        done += p.w4_batch
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - start
    return {
        "value": done / elapsed,
        "unit": "msg/s",
        "done": done,
        "elapsed": elapsed,
        "partial": done < p.w4_total,
    }


async def w6_memory(sys_: System, p: Params) -> dict[str, Any]:
    sessions = [await sys_.new_session(i) for i in range(p.w6_sessions)]
    batches = p.w6_total // p.w6_batch
    deadline = time.perf_counter() + p.cap
    done = 0
    samples: list[tuple[int, float]] = []
    step = max(1, batches // 20)
    start = time.perf_counter()
    for b in range(batches):
        s = sessions[b % len(sessions)]
        await sys_.append_batch(s, [(role(done + k), text(done + k)) for k in range(p.w6_batch)])
        done += p.w6_batch
        if b % step == 0:
            samples.append((done, _rss_mb()))
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - start
    samples.append((done, _rss_mb()))
    # Flat: the RSS after the first tenth stays within 10 % (or 16 MiB) of its value then.
    tenth = next((r for d, r in samples if d >= done / 10), samples[0][1])
    last = samples[-1][1]
    flat = last <= max(tenth * 1.10, tenth + 16)
    return {
        "value": _peak_rss_mb(),
        "unit": "MiB peak RSS",
        "done": done,
        "elapsed": elapsed,
        "partial": done < p.w6_total,
        "rss_at_10pct_mb": tenth,
        "rss_at_end_mb": last,
        "flat": flat,
        "msg_per_s": done / elapsed,
    }


def _w5_child(name: str, db: str, index: int, seconds: float, ready: Any, go: Any, q: Any) -> None:
    async def main() -> tuple[int, int, list[str], float]:
        sys_ = open_system(name)
        await sys_.open(db, create=False)
        s = await sys_.new_session(10_000 + index)
        ok = errors = 0
        kinds: list[str] = []
        ready.put(index)
        go.wait()
        start = time.perf_counter()
        end = start + seconds
        i = 0
        while time.perf_counter() < end:
            try:
                await sys_.append(s, role(i), text(i))
                ok += 1
            except Exception as exc:
                errors += 1
                if len(kinds) < 5:
                    kinds.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            i += 1
        elapsed = time.perf_counter() - start
        await sys_.close()
        return ok, errors, kinds, elapsed

    try:
        q.put(("ok", *asyncio.run(main())))
    except Exception as exc:
        ready.put(index)
        q.put(("failed", 0, 1, [f"{type(exc).__name__}: {exc}"], seconds))


async def w5_concurrency(sys_: System, p: Params, *, name: str, db: str) -> dict[str, Any]:
    # The parent made the schema (open with create=True, one session); the children
    # connect, make a session each, and start together once all are ready.
    await sys_.new_session(-1)
    ctx = mp.get_context("spawn")
    q, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_w5_child, args=(name, db, i, p.w5_seconds, ready, go, q))
        for i in range(p.w5_procs)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    go.set()
    results = [q.get(timeout=p.w5_seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    ok = sum(r[1] for r in results)
    errors = sum(r[2] for r in results)
    kinds = [k for r in results for k in r[3]]
    window = max(r[4] for r in results)
    return {
        "value": ok / window,
        "unit": "msg/s",
        "done": ok,
        "elapsed": window,
        "partial": False,
        "errors": errors,
        "error_kinds": kinds[:5],
        "per_process": [r[1] for r in results],
    }


async def w7_concurrent_appends(sys_: System, p: Params) -> dict[str, Any]:
    """``w7_tasks`` tasks of one event loop, each appending to its own session.

    A library whose calls do not await (a sync API) runs them one after the
    other: its rate is its sequential rate. An async one overlaps them (group
    commit for agentkeep's async API on SQLite).
    """
    sessions = [await sys_.new_session(i) for i in range(p.w7_tasks)]
    deadline = time.perf_counter() + p.cap
    done = 0

    async def task(k: int, session: Any) -> None:
        nonlocal done
        for m in range(p.w7_messages):
            if time.perf_counter() > deadline:
                return
            await sys_.append(session, role(m), text(k * p.w7_messages + m))
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(task(k, s) for k, s in enumerate(sessions)))
    elapsed = time.perf_counter() - start
    total = p.w7_tasks * p.w7_messages
    return {
        "value": done / elapsed,
        "unit": "msg/s",
        "done": done,
        "elapsed": elapsed,
        "partial": done < total,
    }


WORKLOADS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "W1": w1_append_one,
    "W2": w2_read_recent,
    "W3": w3_growth,
    "W4": w4_bulk,
    "W5": w5_concurrency,
    "W6": w6_memory,
    "W7": w7_concurrent_appends,
}

DESCRIPTIONS = {
    "W1": "append-one: sessions x messages, one durable append per call, interleaved",
    "W2": "read-recent: last 20 of a random session after a preload",
    "W3": "growth: appends to one session, mean of the last window / the first",
    "W4": "bulk: appends in batches of 100",
    "W5": "concurrency: 4 processes appending to one SQLite file",
    "W6": "memory: peak RSS while appending in batches of 100 across sessions",
    "W7": "concurrent: 32 tasks of one event loop, each appending to its own session",
}


async def run_workload(name: str, workload: str, db: str, p: Params) -> dict[str, Any]:
    sys_ = open_system(name)
    await sys_.open(db, create=True)
    try:
        if workload == "W5":
            return await w5_concurrency(sys_, p, name=name, db=db)
        return await WORKLOADS[workload](sys_, p)
    finally:
        await sys_.close()
