"""``python -m benchmarks.responses``: the Responses API against calling its upstream directly.

    python -m benchmarks.responses                      # SQLite and PostgreSQL, 32 clients
    python -m benchmarks.responses --quick              # short phases: a smoke run
    python -m benchmarks.responses --backends sqlite --seconds 10 --reps 3

It starts a chat-completions upstream at a fixed pace
(``benchmarks.fake_upstream``: ``--chunks`` deltas ``--chunk-delay`` apart,
200 ms an answer by default) and, per backend, the real service
(``agentkeep serve``) on a new database pointed at it. ``--clients`` asyncio
tasks then repeat, in alternating order within each repetition:

- ``direct``: ``POST /v1/chat/completions`` on the upstream (not streamed);
- ``responses``: ``POST /v1/responses`` (stored: the service reads nothing,
  calls the upstream, then writes the response, its items and a usage row);
- ``direct, streamed`` and ``responses, streamed``: the same with
  ``stream: true``, read to the end; each request's duration and time to its
  first text delta are kept.

Then one client streams responses alone for a few seconds: the first-delta
baseline. The figures are requests/s, p50/p99 latency, and for streams the
median duration and time to first delta. The ratios are taken within a
repetition: ``responses / direct`` throughput (the issue's floor: 0.8),
direct / responses median stream duration (1.0 = the service streams at the
upstream's pace; the streamed-runs floor, within 1.5x of the direct read, is
0.67), and the first delta at 32 clients over that of one response alone
(floor: 3). Every non-2xx is counted and printed; the exit status is 1
if any. The load generator, the upstream, the service and the database share
the machine's cores: a loaded machine lowers every figure, so compare ratios
of one run. The JSON goes to ``benchmarks/results/responses-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.__main__ import DEFAULT_PG, RESULTS, PostgresDatabases
from benchmarks.service import API_KEY, ROOT, Phase, _free_port, _phase, running_service

BACKENDS = ("sqlite", "postgres")
NAMES = ("direct", "responses", "direct_stream", "responses_stream", "responses_stream_alone")
BODY_INPUT = "Write one short sentence about benchmarks."


@contextlib.contextmanager
def fake_upstream(chunks: int, chunk_delay: float) -> Iterator[str]:
    """The paced upstream in a process of its own; yields its ``/v1`` base URL."""
    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.fake_upstream", "--port", str(port)]
    command += ["--chunks", str(chunks), "--chunk-delay", str(chunk_delay)]
    proc = subprocess.Popen(command, cwd=ROOT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/models", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the fake upstream did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


async def _stream_phase(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], cfg: argparse.Namespace
) -> dict[str, Any]:
    """``cfg.clients`` tasks reading streams to the end; durations and time to first delta."""
    durations: list[float] = []
    firsts: list[float] = []
    failures: list[str] = []
    start = time.perf_counter()
    measure_from = start + cfg.warmup
    stop = measure_from + cfg.seconds

    async def one() -> None:
        while (t0 := time.perf_counter()) < stop:
            first: float | None = None
            try:
                async with client.stream("POST", path, json=body) as r:
                    if r.status_code >= 300:
                        failures.append(f"{r.status_code}: {(await r.aread())[:200]!r}")
                        continue
                    async for line in r.aiter_lines():
                        if first is None and ('"delta"' in line and "word" in line):
                            first = time.perf_counter()
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if t0 >= measure_from:
                durations.append(time.perf_counter() - t0)
                firsts.append((first or time.perf_counter()) - t0)

    await asyncio.gather(*(one() for _ in range(cfg.clients)))
    elapsed = max(time.perf_counter() - measure_from, 1e-9)
    return {
        "streams": len(durations),
        "rps": len(durations) / elapsed,
        "median_duration_ms": statistics.median(durations) * 1000 if durations else None,
        "median_first_delta_ms": statistics.median(firsts) * 1000 if firsts else None,
        "non_2xx": len(failures),
        "error_samples": failures[:5],
    }


async def _repetition(
    service: str, upstream: str, cfg: argparse.Namespace, rep: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=cfg.clients, max_keepalive_connections=cfg.clients)
    ours = httpx.AsyncClient(
        base_url=service, headers={"Authorization": f"Bearer {API_KEY}"}, limits=limits, timeout=60
    )
    theirs = httpx.AsyncClient(base_url=upstream, limits=limits, timeout=60)
    chat = {"model": "bench", "messages": [{"role": "user", "content": BODY_INPUT}]}
    response = {"model": "bench", "input": BODY_INPUT}
    out: dict[str, Any] = {"rep": rep}
    async with ours, theirs:
        plain = [
            ("direct", theirs, Phase("direct", lambda i: "/chat/completions", "POST", chat)),
            ("responses", ours, Phase("responses", lambda i: "/v1/responses", "POST", response)),
        ]
        for name, client, phase in plain if rep % 2 == 0 else plain[::-1]:
            out[name] = await _phase(client, phase, cfg.clients, cfg.seconds, cfg.warmup)
        streamed = [
            ("direct_stream", theirs, "/chat/completions", {**chat, "stream": True}),
            ("responses_stream", ours, "/v1/responses", {**response, "stream": True}),
        ]
        for name, client, path, body in streamed if rep % 2 == 0 else streamed[::-1]:
            out[name] = await _stream_phase(client, path, body, cfg)
        # One streamed response at a time: the first-delta baseline of the streamed-runs floor.
        alone = argparse.Namespace(**{**vars(cfg), "clients": 1, "seconds": min(cfg.seconds, 3.0)})
        out["responses_stream_alone"] = await _stream_phase(
            ours, "/v1/responses", {**response, "stream": True}, alone
        )
    out["throughput_ratio"] = out["responses"]["rps"] / max(out["direct"]["rps"], 1e-9)
    direct_ms = out["direct_stream"]["median_duration_ms"]
    ours_ms = out["responses_stream"]["median_duration_ms"]
    out["stream_pace_ratio"] = direct_ms / ours_ms if direct_ms and ours_ms else None
    first = out["responses_stream"]["median_first_delta_ms"]
    first_alone = out["responses_stream_alone"]["median_first_delta_ms"]
    out["first_delta_ratio"] = first / first_alone if first and first_alone else None
    return out


def run_backend(backend: str, upstream: str, cfg: argparse.Namespace) -> dict[str, Any]:
    pg = PostgresDatabases(cfg.pg_url)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db" if backend == "sqlite" else pg.create()
        os.environ["AGENTKEEP_LLM_BASE_URL"] = upstream
        try:
            with running_service(url, cfg.workers, 60, tmp) as service:
                reps = [
                    asyncio.run(_repetition(service, upstream, cfg, r)) for r in range(cfg.reps)
                ]
        finally:
            if backend == "postgres":
                pg.drop(url)
    return {"backend": backend, "workers": cfg.workers, "reps": reps}


def _print(doc: dict[str, Any]) -> None:
    for run in doc["runs"]:
        for rep in run["reps"]:
            d, r = rep["direct"], rep["responses"]
            ds, rs = rep["direct_stream"], rep["responses_stream"]
            print(
                f"{run['backend']:8} x{run['workers']} rep {rep['rep']}: "
                f"direct {d['rps']:.1f}/s p50 {d['p50_ms']:.0f} ms | "
                f"responses {r['rps']:.1f}/s p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms | "
                f"ratio {rep['throughput_ratio']:.2f} || streams: direct "
                f"{ds['median_duration_ms'] or 0:.0f} ms (first {ds['median_first_delta_ms'] or 0:.0f}) | "
                f"responses {rs['median_duration_ms'] or 0:.0f} ms (first "
                f"{rs['median_first_delta_ms'] or 0:.0f}) | pace ratio {rep['stream_pace_ratio'] or 0:.2f}"
                f" | first delta {rep['first_delta_ratio'] or 0:.2f}x one alone "
                f"({rep['responses_stream_alone']['median_first_delta_ms'] or 0:.0f} ms)"
            )
            for name in NAMES:
                if rep[name]["non_2xx"]:
                    print(
                        f"  !! {name}: {rep[name]['non_2xx']} failed, e.g. {rep[name]['error_samples'][:2]}"
                    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.responses")
    parser.add_argument("--quick", action="store_true", help="2 s phases, one repetition")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--workers", type=int, default=1, help="service processes (agentkeep serve --workers)"
    )
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk-delay", type=float, default=0.025)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--out", type=Path)
    cfg = parser.parse_args(argv)
    if cfg.quick:
        cfg.seconds, cfg.warmup, cfg.reps = 2.0, 0.5, 1
    started = datetime.now(UTC)
    out = cfg.out or RESULTS / f"responses-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "started": started.isoformat(),
        "config": {k: v for k, v in vars(cfg).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "runs": [],
    }
    with fake_upstream(cfg.chunks, cfg.chunk_delay) as upstream:
        for backend in [b.strip() for b in cfg.backends.split(",") if b.strip()]:
            doc["runs"].append(run_backend(backend, upstream, cfg))
            out.write_text(json.dumps(doc, indent=2, default=str))
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    out.write_text(json.dumps(doc, indent=2, default=str))
    _print(doc)
    print(f"JSON: {out}")
    failed = any(
        rep[name]["non_2xx"] for run in doc["runs"] for rep in run["reps"] for name in NAMES
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
