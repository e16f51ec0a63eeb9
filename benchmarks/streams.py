"""``python -m benchmarks.streams``: K concurrent streamed runs through the service, beside the upstream.

    python -m benchmarks.streams                      # K=64, N=300, SQLite and PostgreSQL
    python -m benchmarks.streams --runs 16 --tokens 100 --backends sqlite

A scripted upstream that streams instantly (``benchmarks/upstream_app.py``,
one uvicorn process) answers every chat completion with N tokens. In the same
run, for each backend, alternating which goes first in each repetition:

- **direct**: K clients read K streams straight from the upstream (SSE,
  each chunk parsed as JSON);
- **agentkeep**: K clients each create a thread and a streamed run
  (``POST /v1/threads/runs``, ``stream: true``) on ``agentkeep serve`` (one
  process, ``AGENTKEEP_RUN_CONCURRENCY=K``) and read its events to ``done``;
- **single run**: one streamed run alone, the first-delta baseline;
- **direct, one stream**: one stream read straight from the upstream alone,
  so that the direct read's own first delta at K over it shows what K
  concurrent streams cost this machine and this client with no service at all;
- **steady** (``--steady S`` seconds, ``--clients C``, default 10 s and 8): C
  clients each start streamed runs one after another for S seconds, after
  the rest; the runs a second, each run's time p50/p99 and the service's CPU
  a run (user + system, read from ``/proc`` around the phase). The burst of K
  shares its rounds of writes among many runs; this shows what one run costs
  when they are fewer.

Reported: total time of the K streams (first request to last byte), the
first-delta latency p50/p99 (request sent to first ``thread.message.delta``,
or first content chunk), the ratio of the totals and of the first-delta p50
to the single run's (and, for the direct read, to one direct stream's); and
every finished run's events are replayed (``GET .../events?after=0``) and
must give its full text. Statements per
streamed run are counted at the drivers with the service in-process
(``benchmarks.statements``). The JSON goes to
``benchmarks/results/streams-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.__main__ import DEFAULT_PG, RESULTS, PostgresDatabases
from benchmarks.service import API_KEY, BACKENDS, _free_port, _running, running_service
from benchmarks.upstream_app import text_of

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Stream:
    first_delta_s: float
    total_s: float
    text: str
    ids: tuple[str, str] | None = None  # (thread, run) through agentkeep


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _sse(response: httpx.Response) -> Any:
    """(event, data) of a server-sent event stream."""
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            yield event, line[5:].strip()
            event = ""


async def _direct(client: httpx.AsyncClient, upstream: str, tokens: int) -> Stream:
    body = {
        "model": f"tokens-{tokens}",
        "stream": True,
        "messages": [{"role": "user", "content": "go"}],
    }
    started = time.perf_counter()
    first = 0.0
    parts: list[str] = []
    async with client.stream("POST", upstream + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for _, data in _sse(response):
            if data == "[DONE]":
                break
            for choice in json.loads(data).get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    first = first or time.perf_counter() - started
                    parts.append(content)
    return Stream(first, time.perf_counter() - started, "".join(parts))


async def _through(client: httpx.AsyncClient, base: str, assistant: str) -> Stream:
    body = {
        "assistant_id": assistant,
        "stream": True,
        "thread": {"messages": [{"role": "user", "content": "go"}]},
    }
    started = time.perf_counter()
    first = 0.0
    parts: list[str] = []
    thread = run = ""
    async with client.stream("POST", base + "/v1/threads/runs", json=body) as response:
        response.raise_for_status()
        async for event, data in _sse(response):
            if event == "done":
                break
            payload = json.loads(data)
            if event == "thread.run.created":
                thread, run = payload["thread_id"], payload["id"]
            elif event == "thread.message.delta":
                first = first or time.perf_counter() - started
                parts.append(payload["delta"]["content"][0]["text"]["value"])
            elif event in ("thread.run.failed", "error"):
                why = payload.get("last_error") or payload.get("error") or payload
                raise RuntimeError(f"the run failed: {json.dumps(why)[:300]}")
    return Stream(first, time.perf_counter() - started, "".join(parts), (thread, run))


async def _replay(client: httpx.AsyncClient, base: str, ids: tuple[str, str]) -> str:
    thread, run = ids
    parts: list[str] = []
    path = f"{base}/v1/threads/{thread}/runs/{run}/events"
    async with client.stream("GET", path, params={"after": 0}) as response:
        response.raise_for_status()
        async for event, data in _sse(response):
            if event == "thread.message.delta":
                parts.append(json.loads(data)["delta"]["content"][0]["text"]["value"])
    return "".join(parts)


def _service_cpu(port: int) -> float | None:
    """User + system CPU seconds of the ``agentkeep serve`` process on ``port`` (None: no
    ``/proc`` here, or no such process)."""
    wanted = f"--port\0{port}\0"
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_text()
            if wanted not in command or "serve" not in command:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return (int(fields[11]) + int(fields[12])) / _TICKS
    return None


async def _steady(
    base: str, assistant: str, clients: int, seconds: float, expected: str
) -> dict[str, Any]:
    """``clients`` clients each running streamed runs back to back for ``seconds``."""
    port = int(base.rsplit(":", 1)[1])
    times: list[float] = []
    wrong = 0
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(headers=HEADERS, limits=limits, timeout=300) as client:
        await _through(client, base, assistant)  # warm
        cpu_before = _service_cpu(port)
        started = time.perf_counter()
        end = started + seconds

        async def one_client() -> None:
            nonlocal wrong
            while time.perf_counter() < end:
                stream = await _through(client, base, assistant)
                times.append(stream.total_s)
                wrong += stream.text != expected

        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
        cpu_after = _service_cpu(port)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "clients": clients,
        "seconds": wall,
        "runs": len(times),
        "runs_per_s": len(times) / wall,
        "run_p50_ms": _pct(times, 0.5) * 1000,
        "run_p99_ms": _pct(times, 0.99) * 1000,
        "service_cpu_ms_per_run": None if cpu is None else cpu / len(times) * 1000,
        "texts_wrong": wrong,
    }


def _summary(streams: list[Stream], wall: float) -> dict[str, Any]:
    firsts = [s.first_delta_s for s in streams]
    return {
        "streams": len(streams),
        "total_s": wall,
        "first_delta_p50_ms": _pct(firsts, 0.5) * 1000,
        "first_delta_p99_ms": _pct(firsts, 0.99) * 1000,
        "stream_p50_ms": statistics.median(s.total_s for s in streams) * 1000,
    }


async def _measure(
    base: str, upstream: str, runs: int, tokens: int, reps: int, steady: tuple[int, float]
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=runs + 4, max_keepalive_connections=runs + 4)
    async with httpx.AsyncClient(headers=HEADERS, limits=limits, timeout=300) as client:
        r = await client.post(base + "/v1/assistants", json={"model": f"tokens-{tokens}"})
        r.raise_for_status()
        assistant = r.json()["id"]
        expected = text_of(tokens)
        out: dict[str, list[dict[str, Any]]] = {
            "direct": [],
            "agentkeep": [],
            "single": [],
            "direct_single": [],
        }
        replay_ok = replay_bad = 0
        for rep in range(reps):
            order = ["direct", "agentkeep"] if rep % 2 == 0 else ["agentkeep", "direct"]
            for kind in [*order, "single", "direct_single"]:
                t0 = time.perf_counter()
                if kind == "direct":
                    jobs = [_direct(client, upstream, tokens) for _ in range(runs)]
                elif kind == "direct_single":
                    jobs = [_direct(client, upstream, tokens)]
                elif kind == "agentkeep":
                    jobs = [_through(client, base, assistant) for _ in range(runs)]
                else:
                    jobs = [_through(client, base, assistant)]
                streams = await asyncio.gather(*jobs)
                wall = time.perf_counter() - t0
                if any(s.text != expected for s in streams):
                    raise RuntimeError(f"{kind}: a stream did not give the whole answer")
                out[kind].append(_summary(list(streams), wall))
                for s in streams if not kind.startswith("direct") else ():
                    assert s.ids is not None
                    if await _replay(client, base, s.ids) == expected:
                        replay_ok += 1
                    else:
                        replay_bad += 1
        clients, seconds = steady
        steady_result = (
            await _steady(base, assistant, clients, seconds, expected) if seconds > 0 else None
        )
    result: dict[str, Any] = {
        "repetitions": out,
        "replays_exact": replay_ok,
        "replays_wrong": replay_bad,
        "steady": steady_result,
    }
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in out.items()}
    result["median"] = med
    result["total_ratio"] = med["agentkeep"]["total_s"] / med["direct"]["total_s"]
    result["first_delta_ratio"] = (
        med["agentkeep"]["first_delta_p50_ms"] / med["single"]["first_delta_p50_ms"]
    )
    # The same ratio with no service in the way: what K streams at once cost here.
    result["direct_first_delta_ratio"] = (
        med["direct"]["first_delta_p50_ms"] / med["direct_single"]["first_delta_p50_ms"]
    )
    return result


def statements_per_run(url: str, upstream: str, tokens: int, n: int = 3) -> float:
    """Statements the service issues for one streamed run (create, execute, stream), in-process."""
    from starlette.testclient import TestClient

    from agentkeep.config import Settings
    from agentkeep.server.app import create_app
    from benchmarks.statements import count_statements

    env = {
        **os.environ,
        "AGENTKEEP_DATABASE_URL": url,
        "AGENTKEEP_API_KEYS": f"bench:{API_KEY}",
        "AGENTKEEP_RATE_LIMIT_ENABLED": "0",  # the load would be refused at 100 requests/min
        "AGENTKEEP_BACKUP_ENABLED": "false",  # no daily backup mid-measurement
        "AGENTKEEP_LLM_BASE_URL": upstream + "/v1",
        "AGENTKEEP_AUTO_MIGRATE": "1",  # a new database of its own (PostgreSQL too)
    }
    app = create_app(Settings.from_env(env))
    with count_statements() as counter, TestClient(app, headers=HEADERS) as http:
        assistant = http.post("/v1/assistants", json={"model": f"tokens-{tokens}"}).json()["id"]
        body = {
            "assistant_id": assistant,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": "go"}]},
        }

        def one() -> None:
            with http.stream("POST", "/v1/threads/runs", json=body) as response:
                for _ in response.iter_lines():
                    pass

        one()
        before = counter.n
        for _ in range(n):
            one()
        return (counter.n - before) / n


def run_backend(
    backend: str, args: argparse.Namespace, pg: PostgresDatabases, upstream: str, console: Console
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="akbench_streams_") as tmp:
        urls = [
            pg.create() if backend == "postgres" else f"sqlite:///{tmp}/{n}.db"
            for n in ("service", "count")
        ]
        load_before = os.getloadavg()[0]
        try:
            env = {
                "AGENTKEEP_LLM_BASE_URL": upstream + "/v1",
                "AGENTKEEP_RUN_CONCURRENCY": str(args.runs),
            }
            with running_service(urls[0], 1, 60.0, tmp, **env) as base:
                steady = (args.clients, args.steady)
                result = asyncio.run(
                    _measure(base, upstream, args.runs, args.tokens, args.repetitions, steady)
                )
            result["statements_per_run"] = statements_per_run(urls[1], upstream, args.tokens)
            result["backend"] = backend
            result["loadavg_1m"] = [load_before, os.getloadavg()[0]]
            return result
        except Exception as exc:
            console.print(f"[red]{backend} failed:[/] {exc!r}")
            return {"backend": backend, "error": repr(exc)}
        finally:
            if backend == "postgres":
                for url in urls:
                    with contextlib.suppress(Exception):
                        pg.drop(url)


def print_table(doc: dict[str, Any], console: Console) -> None:
    cfg = doc["config"]
    table = Table(
        title=f"{cfg['runs']} concurrent streamed runs of {cfg['tokens']} tokens, "
        f"medians of {cfg['repetitions']} ({doc['machine']['cpus']} CPUs, shared)"
    )
    for col in (
        "backend",
        "what",
        "total s",
        "first delta p50 ms",
        "p99 ms",
        "ratio",
        "stmts/run",
        "replays exact",
    ):
        table.add_column(col, justify="left" if col in ("backend", "what") else "right")
    for r in doc["results"]:
        if "error" in r:
            table.add_row(r["backend"], "[red]failed[/]", r["error"][:80])
            continue
        med = r["median"]
        for kind, label in (
            ("direct", "direct from upstream"),
            ("agentkeep", "through agentkeep"),
            ("single", "one run alone"),
            ("direct_single", "one stream direct, alone"),
        ):
            m = med[kind]
            ratio = ""
            if kind == "agentkeep":
                ratio = f"total {r['total_ratio']:.2f}x direct, first delta {r['first_delta_ratio']:.2f}x one run"
            elif kind == "direct":
                ratio = f"first delta {r['direct_first_delta_ratio']:.2f}x one stream direct"
            table.add_row(
                r["backend"],
                label,
                f"{m['total_s']:.2f}",
                f"{m['first_delta_p50_ms']:.0f}",
                f"{m['first_delta_p99_ms']:.0f}",
                ratio,
                f"{r['statements_per_run']:.0f}" if kind == "single" else "",
                f"{r['replays_exact']}/{r['replays_exact'] + r['replays_wrong']}"
                if kind == "single"
                else "",
            )
        table.add_section()
    console.print(table)
    steady = [(r["backend"], r["steady"]) for r in doc["results"] if r.get("steady")]
    if not steady:
        return
    table = Table(title="steady: clients each running streamed runs back to back")
    for col in ("backend", "clients", "runs/s", "run p50 ms", "p99 ms", "service CPU ms/run"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for backend, st in steady:
        cpu = st["service_cpu_ms_per_run"]
        table.add_row(
            backend,
            str(st["clients"]),
            f"{st['runs_per_s']:.1f}",
            f"{st['run_p50_ms']:.0f}",
            f"{st['run_p99_ms']:.0f}",
            "n/a" if cpu is None else f"{cpu:.1f}",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.streams", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=64, help="concurrent streamed runs, K (64)")
    parser.add_argument("--tokens", type=int, default=300, help="tokens per answer, N (300)")
    parser.add_argument("--repetitions", type=int, default=3, help="repetitions (3)")
    parser.add_argument(
        "--steady", type=float, default=10.0, help="seconds of the steady phase (10; 0: none)"
    )
    parser.add_argument("--clients", type=int, default=8, help="clients of the steady phase (8)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgres"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL admin URL")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/)")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if any(b not in BACKENDS for b in backends) or args.runs < 1 or args.tokens < 1:
        parser.error("--backends from sqlite,postgres; --runs and --tokens positive")
    if args.steady < 0 or args.clients < 1:
        parser.error("--steady from 0 seconds; --clients positive")
    console = Console(width=160)
    pg = PostgresDatabases(args.pg_url)
    started = datetime.now(UTC)
    out = args.out or RESULTS / f"streams-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "started": started.isoformat(),
        "config": {
            "runs": args.runs,
            "tokens": args.tokens,
            "repetitions": args.repetitions,
            "steady_s": args.steady,
            "clients": args.clients,
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="akbench_upstream_") as tmp:
        port = _free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.upstream_app:app",
            "--no-access-log",
        ]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        with _running(command, dict(os.environ), 60.0, tmp, port, 1) as upstream:
            for backend in backends:
                doc["results"].append(run_backend(backend, args, pg, upstream, console))
                out.write_text(json.dumps(doc, indent=2))
    print_table(doc, console)
    console.print(f"JSON: {out}")
    wrong = any(
        "error" in r or r["replays_wrong"] or (r["steady"] or {}).get("texts_wrong")
        for r in doc["results"]
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
