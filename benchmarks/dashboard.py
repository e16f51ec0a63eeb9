"""``python -m benchmarks.dashboard``: server time to render each dashboard page on a large database.

    python -m benchmarks.dashboard                              # 1M messages, SQLite and PostgreSQL
    python -m benchmarks.dashboard --messages 200000 --backends sqlite --repeat 10
    python -m benchmarks.dashboard --keep build/bench   # seed once, keep, re-measure later


Seeds a new database (a SQLite file in a temporary directory, or a PostgreSQL
database created at ``--pg-url`` and dropped afterwards) through the store:
``--messages`` messages, a tenth of them in one long conversation and the rest
in sessions of 200 (so 1M messages make ~4,500 sessions), one LLM usage row
per 20 messages spread over 30 days and 8 models / 20 users / 5 agents, 200
runs with steps, events, usage and tool calls. Then it asks the app for every
page in process (the ASGI app through Starlette's test client: routing, the
cookie check, the store reads and the template, no network) and prints the
p50 and p95 of the wall time of ``--repeat`` renders per page and of the CPU
time the process spent on one, with the load average when it started (the doctor's on-demand checks: 3 runs). The usage page
is timed twice: as a repeated view (its figures kept by the page, as when
nothing was recorded meanwhile) and computed (a new window each time).
Nothing is asserted.

With ``--keep DIR`` the databases are kept (``DIR/dashboard-<N>.db`` and the
PostgreSQL database ``bench_dash_<N>``) and a later run with the same
``--messages`` measures them again without seeding (after upgrading the
schema, so a new index is measured too).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

import agentkeep
from agentkeep.config import Settings
from agentkeep.models.common import to_micros
from agentkeep.server import create_app
from agentkeep.store import Store
from agentkeep.store._steps import Op, Read
from agentkeep.store.usage import _merge

TENANT = "bench"
KEY = "bench-dashboard-key"
SESSION_SIZE = 200
MODELS = [f"gpt-bench-{i}" for i in range(7)] + ["gpt-4o-mini"]


@contextmanager
def database(backend: str, pg_url: str, keep: Path | None, messages: int) -> Iterator[str]:
    if keep is not None:
        if backend == "sqlite":
            keep.mkdir(parents=True, exist_ok=True)
            yield f"sqlite:///{(keep / f'dashboard-{messages}.db').resolve()}"
            return
        name = f"bench_dash_{messages}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            if (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                is None
            ):
                conn.execute(f'CREATE DATABASE "{name}"')
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
        return
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'dashboard.db'}"
        return
    name = f"bench_dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(store: Store, messages: int) -> dict[str, str]:
    """Fill the tenant; returns ids of the objects whose pages are measured."""
    rng = random.Random(7)
    agents = [store.agents.create(model="gpt-4o-mini", name=f"agent {i}") for i in range(5)]
    long_session = store.sessions.create(title="The long conversation", user_id="user-0")
    long_count = messages // 10
    batch = [
        {"role": "user" if i % 2 else "assistant", "content": f"message {i} " * 8}
        for i in range(SESSION_SIZE)
    ]
    for _ in range(long_count // SESSION_SIZE):
        store.messages.append_many(long_session.id, batch)
    left = messages - long_count
    sessions = 0
    while left > 0:
        session = store.sessions.create(
            title=f"Chat about order {sessions}",
            user_id=f"user-{sessions % 20}",
            agent_id=agents[sessions % 5].id,
        )
        store.messages.append_many(session.id, batch[: min(SESSION_SIZE, left)])
        left -= SESSION_SIZE
        sessions += 1
    start = datetime.now(UTC) - timedelta(days=30)
    calls = messages // 20
    for first in range(0, calls, 1000):
        with store.transaction():  # one commit per 1000 rows
            for i in range(first, min(first + 1000, calls)):
                store.usage.record(
                    provider="openai",
                    model=MODELS[i % len(MODELS)],
                    input_tokens=rng.randint(100, 4000),
                    output_tokens=rng.randint(10, 800),
                    cached_tokens=rng.randint(0, 100),
                    latency_ms=rng.randint(50, 3000),
                    agent_id=agents[i % 5].id,
                    user_id=f"user-{i % 20}",
                    created_at=start + timedelta(seconds=i * 30 * 86400 / max(calls, 1)),
                )
    run = None
    for i in range(200):
        run = store.runs.create(agents[i % 5].id, session_id=long_session.id, status="in_progress")
        step = store.run_steps.create(run.id, "tool_calls")
        call = store.tool_calls.create(
            name="lookup", input={"i": i}, run_id=run.id, step_id=step.id
        )
        store.tool_calls.complete(call.id, {"ok": True})
        store.run_steps.update(step.id, status="completed")
        store.usage.record(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=900,
            output_tokens=80,
            run_id=run.id,
            latency_ms=700,
        )
        store.events.append("thread.run.step.completed", run_id=run.id, data={"i": i})
        store.runs.transition(run.id, "completed")
    assert run is not None
    return {
        "long_session": long_session.id,
        "run": run.id,
        "user": "user-3",
        "sessions": str(sessions + 1),
    }


def seeded(store: Store) -> dict[str, str] | None:
    """The ids :func:`seed` returned, found again in a kept database (None if it is empty)."""
    found = store.sessions.list(title_contains="The long conversation", limit=1).items
    if not found:
        return None
    run = store.runs.list(session_id=found[0].id, limit=1).items[0]
    sessions = store.sessions.count()
    return {"long_session": found[0].id, "run": run.id, "user": "user-3", "sessions": str(sessions)}


def sign_in(client: TestClient) -> None:
    page = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    done = client.post(
        "/ui/login", data={"csrf": csrf.group(1), "key": KEY}, follow_redirects=False
    )
    assert done.status_code == 303, done.text


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(len(ordered) * 0.95) - 1, 0)]


def measure(
    client: TestClient,
    path: str | Callable[[int], str],
    repeat: int,
    form: dict[str, str] | None = None,
) -> tuple[float, float, float, float]:
    """p50 and p95 wall ms of ``repeat`` renders, and p50 and p95 CPU ms of this process.

    CPU time is what the page costs the service process (with SQLite: the
    queries too; PostgreSQL's own work is not in it). On a loaded machine the
    wall time includes waiting for a core; the CPU time does not.
    """

    def get(i: int) -> int:
        url = path(i) if callable(path) else path
        if form is None:
            return client.get(url).status_code
        return client.post(url, data=form).status_code

    get(repeat)  # warm
    times, cpu = [], []
    for i in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        status = get(i)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert status == 200, (path, status)
    return statistics.median(times), _p95(times), statistics.median(cpu), _p95(cpu)


def _line(name: str, figures: tuple[float, float, float, float]) -> None:
    print(name.ljust(30) + "".join(f"{v:>10.1f}" for v in figures), flush=True)


def figures_ratio(store: Store, repeat: int) -> None:
    """The usage page's four charts from usage_days against the same sums from every row.

    Timed alternately in this run, so the ratio holds on a loaded machine too.
    The rows' sums are what the page computed before revision 0012.
    """
    today = datetime.now(UTC).date()
    start = datetime.combine(today - timedelta(days=29), datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    keys = ["day", "model", "agent", "user"]
    span = [(to_micros(start), to_micros(end))]

    def rows_summed() -> Op[object]:
        rows = yield Read("summing usage", lambda: store.usage._rows(keys, [], span))
        return {k: _merge(rows, k) for k in keys}

    def from_rows() -> object:
        return store._core.run_op(rows_summed())

    def from_days() -> object:
        return store.usage.rollups(keys, created_after=start, created_before=end)  # type: ignore[arg-type]

    assert from_rows() == from_days()
    wall: dict[str, list[float]] = {"rows": [], "days": []}
    cpu: dict[str, list[float]] = {"rows": [], "days": []}
    for _ in range(repeat):
        for name, read in (("rows", from_rows), ("days", from_days)):
            started, started_cpu = time.perf_counter(), time.process_time()
            read()
            wall[name].append((time.perf_counter() - started) * 1000)
            cpu[name].append((time.process_time() - started_cpu) * 1000)
    for kind, took in (("wall", wall), ("CPU", cpu)):
        rows, days = statistics.median(took["rows"]), statistics.median(took["days"])
        print(
            f"usage charts, {kind} p50: {rows:.1f} ms from the rows, {days:.1f} ms from "
            f"usage_days ({rows / days:.1f}x less)"
        )


def run_backend(
    backend: str, messages: int, repeat: int, pg_url: str, keep: Path | None, seed_only: bool
) -> None:
    with database(backend, pg_url, keep, messages) as url:
        store = agentkeep.connect(url, tenant=TENANT, auto_migrate=True)
        began = time.perf_counter()
        kept = seeded(store) if keep is not None else None
        if kept is None:
            ids = seed(store, messages)
            print(
                f"\n{backend}: seeded {messages:,} messages in {ids['sessions']} sessions in {time.perf_counter() - began:.0f} s",
                flush=True,
            )
        else:
            ids = kept
            print(
                f"\n{backend}: kept database, {messages:,} messages in {ids['sessions']} sessions"
            )
        if backend == "postgres":  # statistics for the planner, as autovacuum keeps them
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
        if seed_only:
            store.close()
            return
        # (no daily backup mid-measurement)
        settings = Settings(database_url=url, api_keys=f"{TENANT}:{KEY}", backup_enabled=False)
        older = store.messages.list(ids["long_session"], order="desc", limit=50).last_id
        deep = store.sessions.list(sort="created_at", limit=1000).last_id
        pages = {
            "sessions (first page)": "/ui/sessions",
            "sessions (1000 in)": f"/ui/sessions?after={deep}",
            "sessions (title search)": "/ui/sessions?q=order%2042",
            "sessions (user filter)": f"/ui/sessions?user={ids['user']}",
            "conversation (newest)": f"/ui/sessions/{ids['long_session']}",
            "conversation (older page)": f"/ui/sessions/{ids['long_session']}?after={older}",
            "run": f"/ui/runs/{ids['run']}",
            "usage (30 days, kept)": "/ui/usage",
            "usage CSV (by model)": "/ui/usage.csv?by=model",
            "operations": "/ui/operations",
        }
        with TestClient(create_app(settings, store=store)) as client:
            sign_in(client)
            load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
            print(f"load average at the start: {load}")
            print(
                "page".ljust(30)
                + "".join(h.rjust(10) for h in ("p50 ms", "p95 ms", "CPU p50", "CPU p95"))
            )
            for name, path in pages.items():
                _line(name, measure(client, path, repeat))
            # A new window each time: the figures are computed, not taken from the page's cache
            today = datetime.now(UTC).date()
            computed = measure(
                client, lambda i: f"/ui/usage?since={today - timedelta(days=31 + i)}", repeat
            )
            _line("usage (30 days, computed)", computed)
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/operations").text)
            assert csrf is not None
            doctor = measure(
                client, "/ui/operations/doctor", min(repeat, 3), {"csrf": csrf.group(1)}
            )
            _line("doctor (on demand, tenant)", doctor)
        figures_ratio(store, repeat)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--keep", type=Path, help="keep the databases (SQLite files in this directory)"
    )
    parser.add_argument("--seed-only", action="store_true", help="seed (with --keep) and stop")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run_backend(backend, args.messages, args.repeat, args.pg_url, args.keep, args.seed_only)


if __name__ == "__main__":
    main()
