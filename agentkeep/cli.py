"""The ``agentkeep`` command line: a thin layer over the library.

Commands::

    agentkeep --version
    agentkeep db upgrade | current | check   [-d URL]
    agentkeep stats [-d URL] [--tenant T] [--agent ID] [--since ISO] [--until ISO] [--json]
    agentkeep health [-d URL] [--json]
    agentkeep serve [-d URL] [--host H] [--port P] [--workers N] [--log-format text|json]
    agentkeep keys create --tenant T [--name N] | list | revoke KEY_ID   [-d URL]
    agentkeep prices set MODEL --input USD --output USD [--cached-input USD] [--reasoning USD]
                     [--provider P] | list | delete MODEL | recompute [--since ISO]
                     [--until ISO] [--model M] [--dry-run]   [-t TENANT] [-d URL]

The database URL comes from ``--database-url`` / ``-d``, else the environment
(``AGENTKEEP_DATABASE_URL``, ``DATABASE_URL``, ``DATABASE_PATH``,
``KODE_STORE_TYPE``...), else the embedded SQLite default
(``sqlite:///./data/agentkeep.db``). Every command says which database it
used (password hidden); read-only commands never create one.

Exit codes (every command): 0 success; 1 the database needs ``agentkeep db
upgrade`` (missing, behind, or the health check failed) or the operation
failed; 2 bad usage or URL; 3 the database is at a revision this agentkeep
does not know (written by a newer one: left untouched); 4 the database
cannot be reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table

import agentkeep
from agentkeep._cli_common import (
    EXIT_NEEDS_UPGRADE,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN_REVISION,
    EXIT_USAGE,
    DatabaseUrl,
    announce,
    display_url,
    errors,
    missing_sqlite_file,
    out,
    refuse_missing,
    resolve_url,
    typer_app,
)
from agentkeep.cli_lifecycle import register as _register_lifecycle
from agentkeep.cli_prices import prices_app
from agentkeep.server.cli import keys_app, serve_command
from agentkeep.store import migrate
from agentkeep.store.dialects import Dialect, dialect_for_url

__all__ = [
    "EXIT_NEEDS_UPGRADE",
    "EXIT_UNAVAILABLE",
    "EXIT_UNKNOWN_REVISION",
    "EXIT_USAGE",
    "app",
    "display_url",
]

app = typer_app(
    name="agentkeep", help="agentkeep: the persistence layer for AI agents and assistants."
)
db_app = typer_app(help="Schema migrations (Alembic): upgrade, current, check.")
app.add_typer(db_app, name="db")

app.add_typer(keys_app, name="keys", help="API keys of the service: create, list, revoke.")
app.add_typer(prices_app, name="prices")
app.command("serve", help="Run the OpenAI-compatible HTTP service (uvicorn).")(serve_command)
_register_lifecycle(app)


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"agentkeep {agentkeep.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """agentkeep: the persistence layer for AI agents and assistants."""


@contextmanager
def _dialect(url: str) -> Iterator[Dialect]:
    dialect = dialect_for_url(url)
    try:
        yield dialect
    finally:
        dialect.dispose()


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Bring the database schema to the current revision (creates it when empty)."""
    url = resolve_url(database_url)
    with errors(), _dialect(url) as dialect:
        before = migrate.current_revision(dialect)
        after = migrate.upgrade(dialect)
    where = display_url(url)
    if before == after:
        out.print(f"{where}: already at revision {after} (head)")
    else:
        out.print(f"{where}: upgraded from {before or '(empty)'} to {after} (head)")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's schema revision and whether it is at head."""
    url = resolve_url(database_url)
    head = migrate.head_revision()
    missing = missing_sqlite_file(url)
    if missing is not None:
        out.print(f"{display_url(url)}: (empty: no file at {missing}); head is {head}")
        return
    with errors(), _dialect(url) as dialect:
        current = migrate.current_revision(dialect)
    if current is None:
        state = f"(empty); head is {head}: run `agentkeep db upgrade`"
    elif current == head:
        state = f"{current} (head)"
    else:
        state = f"{current}; head is {head}"
    out.print(f"{display_url(url)}: {state}")


@db_app.command("check")
def db_check(database_url: DatabaseUrl = None) -> None:
    """Exit 0 if the schema is at head, 1 if it needs `agentkeep db upgrade`, 3 if unknown."""
    url = resolve_url(database_url)
    refuse_missing(url)
    with errors(), _dialect(url) as dialect:
        revision = migrate.check_revision(dialect)
    out.print(f"{display_url(url)}: at revision {revision} (head)")


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _per_call(figures: agentkeep.Stats) -> str:
    if figures.avg_input_tokens_per_call is None:
        return "-"
    return (
        f"{figures.avg_input_tokens_per_call:.1f} in, {figures.avg_output_tokens_per_call:.1f} out"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


@app.command("stats")
def stats(
    database_url: DatabaseUrl = None,
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", metavar="TENANT", help="Tenant to report on.")
    ] = ("default"),
    agent: Annotated[
        str | None,
        typer.Option("--agent", "-a", metavar="AGENT_ID", help="Only this agent's figures."),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option("--since", metavar="ISO", help="Only what was created at or after this time."),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option("--until", metavar="ISO", help="Only what was created before this time."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Runs, LLM calls, tokens, cost, latency and tool calls, for a tenant or one agent."""
    url = resolve_url(database_url)
    announce(url)
    refuse_missing(url)
    with errors(), agentkeep.connect(url, tenant=tenant) as store:
        figures = store.stats.get(agent_id=agent, created_after=since, created_before=until)
    if as_json:
        out.print_json(figures.model_dump_json())
        return
    scope = f"agent {agent}" if agent else f"tenant {tenant}"
    out.print(_stats_table(figures, scope))
    if figures.tools:
        out.print(_tools_table(figures))


def _stats_table(figures: agentkeep.Stats, scope: str) -> Table:
    table = Table(title=f"agentkeep stats: {scope}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("sessions", str(figures.sessions)),
        ("messages", str(figures.messages)),
        ("snapshots", str(figures.snapshots)),
        ("runs", str(figures.total_runs)),
        ("  completed", str(figures.completed_runs)),
        ("  failed", str(figures.failed_runs)),
        ("  cancelled", str(figures.cancelled_runs)),
        ("  avg iterations", f"{figures.avg_iterations:.2f}"),
        ("LLM calls", str(figures.llm_calls)),
        ("  input tokens", str(figures.input_tokens)),
        ("  output tokens", str(figures.output_tokens)),
        ("  cached tokens", str(figures.cached_tokens)),
        ("  reasoning tokens", str(figures.reasoning_tokens)),
        ("  avg tokens per call", _per_call(figures)),
        ("  cost", _money(figures.cost_usd)),
        ("  avg cost per call", _money(figures.avg_cost_per_call_usd)),
        ("  unpriced calls", str(figures.unpriced_calls)),
        ("avg messages per session", f"{figures.avg_messages_per_session:.2f}"),
    ]
    rows += [(f"  latency {p}", _ms(v)) for p, v in figures.latency_ms.items()]
    rows.append(("tool calls", str(figures.total_tool_calls)))
    rows += [(f"  {state}", str(n)) for state, n in sorted(figures.tool_calls_by_state.items())]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _tools_table(figures: agentkeep.Stats) -> Table:
    tools = Table(title="tools", show_header=True)
    tools.add_column("tool")
    tools.add_column("calls", justify="right")
    tools.add_column("errors", justify="right")
    tools.add_column("avg duration", justify="right")
    for tool in figures.tools:
        tools.add_row(tool.name, str(tool.calls), str(tool.errors), _ms(tool.avg_duration_ms))
    return tools


@app.command("health")
def health(
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check that the database answers and is at the current revision (exit 1 if not)."""
    url = resolve_url(database_url)
    if not as_json:
        announce(url)
    refuse_missing(url)
    with errors(), agentkeep.connect(url, auto_migrate=False) as store:
        report = store.health()
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        db = report.database
        state = "healthy" if report.healthy else "UNHEALTHY"
        out.print(
            f"{state}: {report.backend} {display_url(url)}, revision {db.get('revision')}, "
            f"latency {_ms(db.get('latency_ms'))}, writable {db.get('writable')}, "
            f"size {db.get('size_bytes')} bytes"
        )
    if not report.healthy:
        raise typer.Exit(EXIT_NEEDS_UPGRADE)
