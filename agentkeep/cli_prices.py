"""``agentkeep prices set | list | delete | recompute``: the user's price table (``store.prices``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

import agentkeep
from agentkeep._cli_common import (
    DatabaseUrl,
    announce,
    errors,
    out,
    refuse_missing,
    resolve_url,
    typer_app,
)

__all__ = ["prices_app"]

prices_app = typer_app(
    help="The user's price table (USD per token) over the maintained one: set, list, delete, recompute."
)

Tenant = Annotated[str, typer.Option("--tenant", "-t", metavar="TENANT", help="The tenant.")]
Provider = Annotated[
    str | None,
    typer.Option(
        "--provider", metavar="PROVIDER", help="Only this provider's calls (default: any)."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@prices_app.command("set")
def prices_set(
    model: Annotated[str, typer.Argument(metavar="MODEL", hidden=True)],
    input: Annotated[str, typer.Option("--input", metavar="USD", help="USD per input token.")],
    output: Annotated[str, typer.Option("--output", metavar="USD", help="USD per output token.")],
    cached_input: Annotated[
        str | None,
        typer.Option(
            "--cached-input", metavar="USD", help="USD per cached input token (default: --input)."
        ),
    ] = None,
    reasoning: Annotated[
        str | None,
        typer.Option(
            "--reasoning", metavar="USD", help="USD per reasoning token (default: --output)."
        ),
    ] = None,
    provider: Provider = None,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Set MODEL's prices; calls recorded from now on use them (`recompute` for earlier ones)."""
    url = resolve_url(database_url)
    announce(url)
    with errors(), agentkeep.connect(url, tenant=tenant) as store:
        price = store.prices.set(
            model,
            input=input,
            output=output,
            cached_input=cached_input,
            reasoning=reasoning,
            provider=provider,
        )
    out.print(f"{tenant}: {price.provider or '*'}/{price.model} priced (version {price.version})")


@prices_app.command("list")
def prices_list(
    tenant: Tenant = "default", database_url: DatabaseUrl = None, as_json: Json = False
) -> None:
    """The stored prices of a tenant (the AGENTKEEP_PRICES file is not listed)."""
    url = resolve_url(database_url)
    if not as_json:
        announce(url)
    refuse_missing(url)
    with errors(), agentkeep.connect(url, tenant=tenant) as store:
        prices = store.prices.list()
    if as_json:
        out.print_json(json.dumps([json.loads(p.model_dump_json()) for p in prices]))
        return
    table = Table(title=f"prices of {tenant} (USD per token)", show_header=True)
    for name in ("provider", "model", "input", "output", "cached input", "reasoning", "version"):
        table.add_column(name)
    for p in prices:
        table.add_row(
            p.provider or "*",
            p.model,
            str(p.input),
            str(p.output),
            "-" if p.cached_input is None else str(p.cached_input),
            "-" if p.reasoning is None else str(p.reasoning),
            str(p.version),
        )
    out.print(table)


@prices_app.command("delete")
def prices_delete(
    model: Annotated[str, typer.Argument(metavar="MODEL", hidden=True)],
    provider: Provider = None,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
) -> None:
    """Remove MODEL's stored price (it falls back to the file or the maintained table)."""
    url = resolve_url(database_url)
    announce(url)
    refuse_missing(url)
    with errors(), agentkeep.connect(url, tenant=tenant) as store:
        store.prices.delete(model, provider=provider)
    out.print(f"{tenant}: {provider or '*'}/{model} deleted")


@prices_app.command("recompute")
def prices_recompute(
    since: Annotated[
        datetime | None,
        typer.Option("--since", metavar="ISO", help="Calls recorded at or after this time."),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option("--until", metavar="ISO", help="Calls recorded before this time."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="MODEL", help="Only this model.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would change.")
    ] = False,
    tenant: Tenant = "default",
    database_url: DatabaseUrl = None,
    as_json: Json = False,
) -> None:
    """Price recorded calls again with today's prices (a caller's own cost is kept)."""
    url = resolve_url(database_url)
    if not as_json:
        announce(url)
    refuse_missing(url)
    with errors(), agentkeep.connect(url, tenant=tenant) as store:
        report = store.prices.recompute(since=since, until=until, model=model, dry_run=dry_run)
    if as_json:
        out.print_json(report.model_dump_json())
        return
    verb = "would change" if dry_run else "changed"
    sources = ", ".join(f"{k} {v}" for k, v in report.by_source.items())
    out.print(f"{tenant}: {report.rows} call(s) looked at, {verb} {report.changed} ({sources})")
