"""The service's commands, registered by ``agentkeep.cli``: ``agentkeep keys ...`` and ``agentkeep serve``."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

import agentkeep
from agentkeep.errors import AgentkeepError
from agentkeep.server.keys import create_key, list_keys, revoke_key
from agentkeep.store import Store

__all__ = ["keys_app", "serve_command"]

keys_app = typer.Typer(
    name="keys", help="Create, list and revoke API keys of the service.", no_args_is_help=True
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Database URL (default: AGENTKEEP_DATABASE_URL, DATABASE_URL, or the SQLite default).",
    ),
]


def _open(database_url: str | None) -> Store:
    try:
        return agentkeep.connect(database_url, auto_migrate=True)
    except AgentkeepError as exc:
        _fail(exc)


def _fail(exc: Exception) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="The tenant the key belongs to.")
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin key: every tenant in the dashboard.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="A label for the key.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key for a tenant (or an admin key) and print it (it is shown only this once)."""
    if tenant is None and not admin:
        Console(stderr=True).print("[red]error:[/red] give --tenant NAME or --admin")
        raise typer.Exit(2)
    with _open(database_url) as store:
        try:
            info, plaintext = create_key(store, tenant=tenant, name=name, admin=admin)
        except AgentkeepError as exc:
            _fail(exc)
    typer.echo(plaintext)
    owner = "admin key" if info.admin else f"key for tenant {info.tenant_id!r}"
    Console(stderr=True).print(f"{owner} {info.id} created; store it now, it is not shown again")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only the keys of this tenant.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List keys (id, tenant, name, prefix, created, revoked); never the keys themselves."""
    with _open(database_url) as store:
        try:
            keys = list_keys(store, tenant=tenant)
        except AgentkeepError as exc:
            _fail(exc)
    table = Table("id", "tenant", "name", "prefix", "created", "revoked")
    for key in keys:
        table.add_row(
            key.id,
            key.tenant_id,
            key.name or "",
            key.prefix + "...",
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    Console(width=200).print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The id of the key (key_...).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    with _open(database_url) as store:
        try:
            info = revoke_key(store, key_id)
        except AgentkeepError as exc:
            _fail(exc)
    typer.echo(f"revoked {info.id} (tenant {info.tenant_id!r})")


def serve_command(
    host: Annotated[
        str, typer.Option("--host", envvar="AGENTKEEP_HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", envvar="AGENTKEEP_PORT", help="Port to listen on.")
    ] = 8080,
    workers: Annotated[
        int,
        typer.Option("--workers", envvar="AGENTKEEP_WORKERS", min=1, help="Worker processes."),
    ] = 1,
) -> None:
    """Run the OpenAI-compatible service (upgrading the database schema first)."""
    from agentkeep.server.serving import serve

    try:
        serve(host=host, port=port, workers=workers)
    except AgentkeepError as exc:
        _fail(exc)
