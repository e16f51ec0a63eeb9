"""``python -m benchmarks.service``: the HTTP service under 32 concurrent clients, and its overhead.

    python -m benchmarks.service                        # SQLite and PostgreSQL, 1 and 2 workers
    python -m benchmarks.service --quick                # short phases: a smoke run
    python -m benchmarks.service --backends sqlite --workers 1 --clients 32 --seconds 10

For every backend and worker count it starts the real service
(``agentkeep serve --workers N``) on 127.0.0.1 on a new database -- a SQLite
file in a temporary directory, or a PostgreSQL database created at
``--pg-url`` and dropped afterwards -- with ``AGENTKEEP_API_KEYS=bench:bench-key``,
and measures:

- overhead: the median latency of one sequential client creating a message
  (``POST /v1/threads/{id}/messages``) and listing 20 (``GET ...?limit=20``)
  against the same operation on the same database through an in-process
  ``agentkeep.connect(url)`` store (``store.messages.append`` and
  ``store.messages.list``), in alternating rounds. The HTTP figure includes
  everything the service does around the store call (auth, the thread lookup
  and the active-run check in the same transaction, JSON both ways) and the
  client's own HTTP work;
- throughput: ``--clients`` keep-alive connections for ``--seconds``:
  create-message on the clients' own threads, create-message with all clients
  on one shared thread, and list-messages (``limit=20``) on their own threads;
  then the Conversations API's items: create one item and list 20
  (``/v1/conversations/{id}/items``), each client on its own conversation.
  Requests/s, p50 and p99 latency, and every non-2xx response (there must be
  none; 5xx are printed loudly). The load comes from ``wrk`` when it is
  installed (``apt-get install wrk``; ``benchmarks/wrk_load.py``: one wrk
  thread, a Lua script cycling through the clients' threads), else from
  ``--clients`` asyncio tasks sharing one ``httpx.AsyncClient`` pool
  (``--generator httpx``). ``client CPU`` is the share of one core the load
  generator used: near 100% means the client, not the service, was the limit,
  as the httpx clients are on two cores (measured: about 7 ms of client CPU a
  request, so both servers ran at the client's pace and the ratios were
  flattered; wrk uses 2-5% of a core).

A request that fails without a response (a reset connection, a timeout) counts
as failed, with its exception, like a non-2xx; the exit status is 1 if any did.
With ``--workers`` above 1 uvicorn 0.54 binds the listening socket itself and
its connections lose ``TCP_NODELAY`` (Kludex/uvicorn#3149): every keep-alive
request then waits ~40 ms on the client's delayed ACK, which the overhead
table shows as it is.

The machine's cores are shared by the service, the database and the load
generator, so treat the figures as what one small machine does, not as a
ceiling. The JSON goes to ``benchmarks/results/service-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.__main__ import DEFAULT_PG, RESULTS, PostgresDatabases
from benchmarks.report import _fmt
from benchmarks.wrk_load import available as wrk_available
from benchmarks.wrk_load import wrk_phase

API_KEY = "bench-key"
TENANT = "bench"
BACKENDS = ("sqlite", "postgres")
ROOT = Path(__file__).parent.parent


@dataclass
class Config:
    clients: int = 32
    seconds: float = 10.0  # per throughput phase
    warmup: float = 1.0  # per throughput phase, not counted
    overhead_ops: int = 600  # per operation and path, over the rounds
    generator: str = "wrk"  # what sends the throughput phases' requests: wrk or httpx
    overhead_rounds: int = 6
    startup_timeout: float = 60.0

    @classmethod
    def quick(cls) -> Config:
        return cls(seconds=2.0, warmup=0.5, overhead_ops=120, overhead_rounds=3)


# --- the service, as a subprocess --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command() -> list[str]:
    script = Path(sys.executable).parent / "agentkeep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentkeep"]


@contextlib.contextmanager
def _running(
    command: list[str], env: dict[str, str], timeout: float, log_dir: str, port: int, workers: int
) -> Iterator[str]:
    """Start ``command`` (an HTTP server on ``port``); yield its base URL once ``/healthz`` answers."""
    log_path = Path(log_dir) / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: uvicorn's worker processes stop with it
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{command[-1]} exited with {proc.returncode}: "
                    + log_path.read_text(errors="replace")[-800:]
                )
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base} did not answer /healthz within {timeout:.0f}s")
            time.sleep(0.1)
        if workers > 1:
            time.sleep(1.0)  # /healthz answered by one worker; give the others a moment
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def running_service(
    url: str, workers: int, timeout: float, log_dir: str, **env: str
) -> contextlib.AbstractContextManager[str]:
    """``agentkeep serve --workers N`` on ``url`` (``env``: more ``AGENTKEEP_*`` settings)."""
    port = _free_port()
    environ = {
        **os.environ,
        "AGENTKEEP_DATABASE_URL": url,
        "AGENTKEEP_API_KEYS": f"{TENANT}:{API_KEY}",
        "AGENTKEEP_RATE_LIMIT_ENABLED": "0",  # the load would be refused at 100 requests/min
        # No daily backup in the middle of a measurement (nor in the checkout's ./data).
        "AGENTKEEP_BACKUP_ENABLED": "false",
        "AGENTKEEP_BACKUP_DIR": str(Path(log_dir) / "backups"),
        **env,
    }
    environ.pop("DATABASE_URL", None)
    if url.startswith("postgresql"):
        # The service upgrades only an embedded SQLite database by itself (the library's
        # migration rule): a PostgreSQL one is upgraded first, as an operator would.
        upgrade = [*_serve_command(), "db", "upgrade", "-d", url]
        subprocess.run(upgrade, env=environ, check=True, capture_output=True, timeout=timeout)
    command = [*_serve_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return _running([*command, "--workers", str(workers)], environ, timeout, log_dir, port, workers)


def running_reference(
    url: str, timeout: float, log_dir: str
) -> contextlib.AbstractContextManager[str]:
    """The bare FastAPI reference (``benchmarks/reference_app.py``) on the same uvicorn."""
    port = _free_port()
    environ = {**os.environ, "REFERENCE_DATABASE_URL": url, "REFERENCE_API_KEY": API_KEY}
    # uvicorn's defaults as ``agentkeep serve`` uses them (access log on), one process.
    command = [sys.executable, "-m", "uvicorn", "benchmarks.reference_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--timeout-keep-alive", "75"]
    return _running(command, environ, timeout, log_dir, port, 1)


# --- measurements ------------------------------------------------------------------------------


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


@dataclass
class Phase:
    name: str
    path: Callable[[int], str]  # client index -> URL path
    method: str
    body: dict[str, Any] | None = None


async def _phase(
    client: httpx.AsyncClient, phase: Phase, clients: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """``clients`` tasks repeating one request for ``warmup`` then ``seconds``; counts the latter."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds

    async def one(i: int) -> None:
        path = phase.path(i)
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            try:
                r = await client.request(phase.method, path, json=phase.body)
                status, text = str(r.status_code), ("" if r.is_success else r.text)
            except httpx.HTTPError as exc:
                status, text = f"{type(exc).__name__}", str(exc)
            t1 = time.perf_counter()
            if t0 >= measure_from:
                statuses[status] += 1
                if status.isdigit() and 200 <= int(status) < 300:
                    latencies.append(t1 - t0)
                elif len(samples) < 5:
                    at = t0 - measure_from
                    samples.append(f"{status} at {at:.2f}s after {t1 - t0:.2f}s: {text[:200]}")

    cpu0 = time.process_time()
    await asyncio.gather(*(one(i) for i in range(clients)))
    elapsed = max(time.perf_counter() - measure_from, 1e-9)
    cpu = time.process_time() - cpu0
    latencies.sort()
    total = sum(statuses.values())
    ok = len(latencies)
    return {
        "phase": phase.name,
        "requests": total,
        "ok": ok,
        "seconds": elapsed,
        "rps": ok / elapsed,
        "p50_ms": (_pct(latencies, 0.50) or 0) * 1000,
        "p99_ms": (_pct(latencies, 0.99) or 0) * 1000,
        "max_ms": (latencies[-1] if latencies else 0) * 1000,
        "non_2xx": total - ok,
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5")),
        "statuses": dict(statuses),
        "error_samples": samples,
        "client_cpu": cpu / (elapsed + warmup),
    }


async def throughput(bases: dict[str, str], cfg: Config) -> dict[str, list[dict[str, Any]]]:
    """The phases against each service in ``bases``, alternating which goes first per phase."""
    limits = httpx.Limits(max_connections=cfg.clients, max_keepalive_connections=cfg.clients)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"role": "user", "content": "a benchmark message of ordinary length, " * 3}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in bases}
    clients: dict[str, httpx.AsyncClient] = {}
    phases: dict[str, list[Phase]] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name, base in bases.items():
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60)
            )
            clients[name] = client

            async def new_thread(client: httpx.AsyncClient = client) -> str:
                r = await client.post("/v1/threads", json={})
                r.raise_for_status()
                return str(r.json()["id"])

            async def new_conversation(client: httpx.AsyncClient = client) -> str:
                r = await client.post("/v1/conversations", json={})
                r.raise_for_status()
                return str(r.json()["id"])

            own = [await new_thread() for _ in range(cfg.clients)]
            shared = await new_thread()
            conversations = [await new_conversation() for _ in range(cfg.clients)]
            phases[name] = [
                Phase("create, own thread", functools.partial(_messages, own), "POST", body),
                Phase(
                    "create, shared thread",
                    lambda i, t=shared: f"/v1/threads/{t}/messages",
                    "POST",
                    body,
                ),
                Phase(
                    "list 20, own thread",
                    functools.partial(_messages, own, query="?limit=20"),
                    "GET",
                ),
                Phase(
                    "items create, own conversation",
                    functools.partial(_items, conversations),
                    "POST",
                    {"items": [body]},
                ),
                Phase(
                    "items list 20, own conversation",
                    functools.partial(_items, conversations, query="?limit=20"),
                    "GET",
                ),
            ]
        names = list(bases)
        for k in range(len(phases[names[0]])):
            for name in names if k % 2 == 0 else names[::-1]:
                phase = phases[name][k]
                if cfg.generator == "wrk":
                    paths = sorted({phase.path(i) for i in range(cfg.clients)})
                    done = await asyncio.to_thread(
                        wrk_phase,
                        bases[name],
                        phase.name,
                        paths,
                        phase.method,
                        phase.body,
                        api_key=API_KEY,
                        clients=cfg.clients,
                        seconds=cfg.seconds,
                        warmup=cfg.warmup,
                    )
                else:
                    done = await _phase(clients[name], phase, cfg.clients, cfg.seconds, cfg.warmup)
                results[name].append(done)
    return results


def _messages(threads: list[str], i: int, query: str = "") -> str:
    return f"/v1/threads/{threads[i]}/messages{query}"


def _items(conversations: list[str], i: int, query: str = "") -> str:
    return f"/v1/conversations/{conversations[i]}/items{query}"


def overhead(base: str, url: str, cfg: Config) -> dict[str, Any]:
    """Median latency of one sequential client: in-process store vs HTTP, same operations."""
    import agentkeep

    root = agentkeep.connect(url)
    store = root.tenant(TENANT)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    text = "a benchmark message of ordinary length, " * 3
    times: dict[str, list[float]] = {
        k: [] for k in ("direct_append", "http_append", "direct_list", "http_list")
    }
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            r = http.post("/v1/threads", json={})
            r.raise_for_status()
            http_thread = r.json()["id"]
            direct_thread = store.sessions.create().id
            path = f"/v1/threads/{http_thread}/messages"

            def d_append() -> None:
                store.messages.append(direct_thread, "user", text)

            def h_append() -> None:
                http.post(path, json={"role": "user", "content": text}).raise_for_status()

            def d_list() -> None:
                page = store.messages.list(direct_thread, limit=20, order="desc")
                assert len(page.items) == 20

            def h_list() -> None:
                resp = http.get(path, params={"limit": 20})
                resp.raise_for_status()
                assert len(resp.json()["data"]) == 20

            for fn in (d_append, h_append) * 10:  # warm-up, and 20 messages to list
                fn()
            per_round = max(1, cfg.overhead_ops // cfg.overhead_rounds)
            plan: list[tuple[str, Callable[[], None]]] = [
                ("direct_append", d_append),
                ("http_append", h_append),
                ("direct_list", d_list),
                ("http_list", h_list),
            ]
            for rnd in range(cfg.overhead_rounds):
                # Alternate which path goes first, so drift does not favour one.
                order = plan if rnd % 2 == 0 else [plan[1], plan[0], plan[3], plan[2]]
                for key, fn in order:
                    for _ in range(per_round):
                        t0 = time.perf_counter()
                        fn()
                        times[key].append(time.perf_counter() - t0)
    finally:
        root.close()
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    return {
        "ops_per_path": len(times["direct_append"]),
        **{f"{k}_p50_us": v for k, v in med.items()},
        "append_overhead_us": med["http_append"] - med["direct_append"],
        "list_overhead_us": med["http_list"] - med["direct_list"],
    }


# --- one configuration, and the whole benchmark -----------------------------------------------


def statements(url: str, ref_url: str) -> dict[str, dict[str, float]]:
    """Statements per request (``benchmarks.statements``), agentkeep and the reference, in-process.

    agentkeep is asked with a key made by ``agentkeep keys create`` (stored
    hashed), not a bootstrap key, so a key lookup shows where it happens.
    """
    import importlib

    from starlette.testclient import TestClient

    import agentkeep
    from agentkeep.config import Settings
    from agentkeep.server.app import create_app
    from agentkeep.store.api_keys import create_key
    from benchmarks.statements import count_statements, per_request

    text = "a benchmark message of ordinary length, " * 3
    out: dict[str, dict[str, float]] = {}
    with agentkeep.connect(url, auto_migrate=True) as root:
        _, key = create_key(root, tenant=TENANT, name="bench")
    settings = Settings.from_env(
        {
            **os.environ,
            "AGENTKEEP_DATABASE_URL": url,
            "AGENTKEEP_RATE_LIMIT_ENABLED": "0",
            "AGENTKEEP_BACKUP_ENABLED": "false",  # no daily backup mid-measurement
        }
    )
    os.environ.update(REFERENCE_DATABASE_URL=ref_url, REFERENCE_API_KEY=API_KEY)
    import benchmarks.reference_app as reference

    reference = importlib.reload(reference)
    apps = {"agentkeep": (create_app(settings), key), "reference": (reference.app, API_KEY)}
    with count_statements() as counter:
        for name, (app, bearer) in apps.items():
            with TestClient(app, headers={"Authorization": f"Bearer {bearer}"}) as http:
                thread = http.post("/v1/threads", json={}).json()["id"]
                path = f"/v1/threads/{thread}/messages"

                def create(http: TestClient = http, path: str = path) -> None:
                    http.post(path, json={"role": "user", "content": text}).raise_for_status()

                def list20(http: TestClient = http, path: str = path) -> None:
                    http.get(path, params={"limit": 20}).raise_for_status()

                out[name] = {
                    "create-message": per_request(counter, create),
                    "list-messages (20)": per_request(counter, list20),
                }
    return out


def run_config(
    backend: str, workers: int, cfg: Config, pg: PostgresDatabases, console: Console
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="akbench_service_") as tmp:
        urls = [
            pg.create() if backend == "postgres" else f"sqlite:///{tmp}/{n}.db"
            for n in ("service", "reference")
        ]
        url, ref_url = urls
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        try:
            with contextlib.ExitStack() as stack:
                base = stack.enter_context(running_service(url, workers, cfg.startup_timeout, tmp))
                bases = {"agentkeep": base}
                if workers == 1:  # the reference runs in one process, beside agentkeep's one
                    bases["reference"] = stack.enter_context(
                        running_reference(ref_url, cfg.startup_timeout, tmp)
                    )
                over = overhead(base, url, cfg)
                by_target = asyncio.run(throughput(bases, cfg))
            counted = statements(url, ref_url) if workers == 1 else None
            # What the service logged beyond its access lines: tracebacks, warnings.
            log = "".join(p.read_text(errors="replace") for p in Path(tmp).glob("serve-*.log"))
            noteworthy = [
                line
                for line in log.splitlines()
                if not line.startswith("INFO:") and ' HTTP/1.1" ' not in line
            ]
            return {
                "backend": backend,
                "workers": workers,
                "overhead": over,
                "phases": by_target["agentkeep"],
                "reference": by_target.get("reference"),
                "statements": counted,
                "wall_s": time.perf_counter() - started,
                "server_log": noteworthy[:40],
                # Other work on the machine skews the figures: the 1-minute load, before and after.
                "loadavg_1m": [load_before, os.getloadavg()[0]],
            }
        except Exception as exc:
            console.print(f"[red]{backend} x{workers} failed:[/] {exc!r}")
            return {"backend": backend, "workers": workers, "error": str(exc)}
        finally:
            if backend == "postgres":
                for made in urls:
                    try:
                        pg.drop(made)
                    except Exception as exc:
                        print(f"could not drop {made}: {exc}", file=sys.stderr)


def _phase_row(run: dict[str, Any], p: dict[str, Any], server: str, ratio: str) -> list[str]:
    errs = str(p["non_2xx"])
    if p["server_errors"]:
        errs = f"[bold red]{p['non_2xx']} ({p['server_errors']} 5xx)[/]"
    elif p["non_2xx"]:
        errs = f"[red]{p['non_2xx']}[/]"
    return [
        run["backend"],
        str(run["workers"]),
        p["phase"],
        server,
        _fmt(p["rps"]),
        ratio,
        f"{p['p50_ms']:.1f}",
        f"{p['p99_ms']:.1f}",
        errs,
        f"{p['client_cpu']:.0%}",
    ]


def print_tables(doc: dict[str, Any], console: Console) -> None:
    cfg = doc["config"]
    table = Table(
        title=f"agentkeep service over HTTP: {cfg['clients']} concurrent clients "
        f"({cfg.get('generator', 'httpx')}), {cfg['seconds']:g}s per phase "
        f"({doc['machine']['cpus']} CPUs)"
    )
    for col, just in [
        ("backend", "left"),
        ("workers", "right"),
        ("phase", "left"),
        ("server", "left"),
        ("requests/s", "right"),
        ("of reference", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("non-2xx/failed", "right"),
        ("client CPU", "right"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    over = Table(title="overhead of the service: one sequential client, median latency")
    for col in (
        "backend",
        "workers",
        "append direct",
        "append HTTP",
        "+ service",
        "list direct",
        "list HTTP",
        "+ service",
    ):
        over.add_column(col, justify="left" if col == "backend" else "right")
    for i, run in enumerate(doc["runs"]):
        if i:
            table.add_section()
        if "error" in run:
            table.add_row(
                run["backend"], str(run["workers"]), "[red]failed: " + run["error"][:80] + "[/]"
            )
            continue
        reference = run.get("reference") or []
        for k, p in enumerate(run["phases"]):
            ref = reference[k] if k < len(reference) else None
            ratio = f"{p['rps'] / ref['rps']:.2f}" if ref and ref["rps"] else ""
            table.add_row(*_phase_row(run, p, "agentkeep", ratio))
            if ref is not None:
                table.add_row(*_phase_row(run, ref, "reference", ""))
        o = run["overhead"]
        over.add_row(
            run["backend"],
            str(run["workers"]),
            f"{o['direct_append_p50_us'] / 1000:.2f} ms",
            f"{o['http_append_p50_us'] / 1000:.2f} ms",
            f"{o['append_overhead_us'] / 1000:+.2f} ms",
            f"{o['direct_list_p50_us'] / 1000:.2f} ms",
            f"{o['http_list_p50_us'] / 1000:.2f} ms",
            f"{o['list_overhead_us'] / 1000:+.2f} ms",
        )
    console.print(table)
    console.print(over)
    counted = Table(title="statements per request (counted at the drivers, in-process)")
    for col in ("backend", "server", "create-message", "list-messages (20)"):
        counted.add_column(col, justify="left" if col in ("backend", "server") else "right")
    for run in doc["runs"]:
        for server, figures in (run.get("statements") or {}).items():
            counted.add_row(run["backend"], server, *(f"{v:.1f}" for v in figures.values()))
    console.print(counted)
    for run in doc["runs"]:
        if run.get("server_log"):
            console.print(f"[yellow]{run['backend']} x{run['workers']}: the service logged[/]")
            for line in run["server_log"][:10]:
                console.print("  " + line, markup=False, highlight=False)
        for p in run.get("phases", []):
            if p["non_2xx"]:
                loud = "[bold red]5xx![/] " if p["server_errors"] else ""
                console.print(
                    f"{loud}{run['backend']} x{run['workers']} {p['phase']}: "
                    f"{p['statuses']} e.g. {p['error_samples'][:2]}"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.service", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgres"
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--seconds", type=float, help="seconds per phase (10; 2 with --quick)")
    parser.add_argument(
        "--workers",
        default="1,2" if (os.cpu_count() or 1) >= 2 else "1",
        help="comma-separated uvicorn worker counts to run (default 1,2 on 2+ cores)",
    )
    parser.add_argument(
        "--generator",
        choices=("wrk", "httpx"),
        help="what sends the load: wrk (default when installed: apt-get install wrk) or "
        "the in-process asyncio + httpx clients, which use about a core themselves",
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL admin URL")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/)")
    args = parser.parse_args(argv)

    cfg = Config.quick() if args.quick else Config()
    cfg.clients = args.clients
    cfg.generator = args.generator or ("wrk" if wrk_available() else "httpx")
    if cfg.generator == "wrk" and not wrk_available():
        parser.error("--generator wrk: wrk is not installed (apt-get install wrk)")
    if args.seconds is not None:
        cfg.seconds = args.seconds
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}; one of {', '.join(BACKENDS)}")
    try:
        worker_counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes comma-separated integers")
    if cfg.clients < 1 or any(w < 1 for w in worker_counts):
        parser.error("--clients and --workers must be positive")

    console = Console(width=160)
    pg = PostgresDatabases(args.pg_url)
    started = datetime.now(UTC)
    out = args.out or RESULTS / f"service-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "started": started.isoformat(),
        "quick": args.quick,
        "config": vars(cfg).copy(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "runs": [],
    }
    for backend in backends:
        for workers in worker_counts:
            t0 = time.perf_counter()
            run = run_config(backend, workers, cfg, pg, console)
            doc["runs"].append(run)
            doc["finished"] = datetime.now(UTC).isoformat()
            out.write_text(json.dumps(doc, indent=2))
            print(
                f"{backend} x{workers}: {'failed' if 'error' in run else 'done'}"
                f" ({time.perf_counter() - t0:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    print_tables(doc, console)
    console.print(f"JSON: {out}")
    failed = any(
        "error" in r or any(p["non_2xx"] for p in r["phases"] + (r.get("reference") or []))
        for r in doc["runs"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
