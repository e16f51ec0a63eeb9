"""The service's commands, registered by ``agentkeep.cli``: ``agentkeep keys ...`` and ``agentkeep serve``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import agentkeep
from agentkeep._cli_common import (
    DatabaseUrl,
    announce,
    display_url,
    err,
    errors,
    fail,
    refuse_missing,
    resolve_url,
    typer_app,
)
from agentkeep.store.api_keys import create_key, list_keys, revoke_key

__all__ = ["keys_app", "serve_command"]

keys_app = typer_app(name="keys", help="Create, list and revoke API keys of the service.")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", metavar="TENANT", help="The tenant the key belongs to."),
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin key: every tenant in the dashboard.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="A label for the key.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key for a tenant (or an admin key) and print it (it is shown only this once).

    The database is created (or upgraded) when needed: the service reads its keys from it.
    """
    if tenant is None and not admin:
        fail("give --tenant NAME or --admin", 2)
    url = resolve_url(database_url)
    with errors(), agentkeep.connect(url, auto_migrate=True) as store:
        info, plaintext = create_key(store, tenant=tenant, name=name, admin=admin)
    typer.echo(plaintext)
    owner = "admin key" if info.admin else f"key for tenant {info.tenant_id!r}"
    err.print(
        f"{owner} {info.id} created in {display_url(url)}; "
        "store it now, it is not shown again. Serve this database to use it: "
        f"agentkeep serve -d {display_url(url)}"
    )


@keys_app.command("list")
def keys_list(
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", metavar="TENANT", help="Only the keys of this tenant."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List keys (id, tenant, name, prefix, created, revoked); never the keys themselves."""
    url = resolve_url(database_url)
    announce(url)
    refuse_missing(url)
    with errors(), agentkeep.connect(url) as store:
        keys = list_keys(store, tenant=tenant)
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
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", hidden=True)],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke the key KEY_ID (key_..., see `keys list`): requests with it get 401 from now on."""
    url = resolve_url(database_url)
    announce(url)
    refuse_missing(url)
    with errors(), agentkeep.connect(url) as store:
        info = revoke_key(store, key_id)
    typer.echo(f"revoked {info.id} (tenant {info.tenant_id!r})")


def serve_command(
    database_url: DatabaseUrl = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", envvar="AGENTKEEP_HOST", metavar="HOST", help="Interface to listen on."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", envvar="AGENTKEEP_PORT", metavar="PORT", help="Port to listen on."),
    ] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", envvar="AGENTKEEP_WORKERS", min=1, metavar="N", help="Worker processes."
        ),
    ] = 1,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            envvar="AGENTKEEP_LOG_FORMAT",
            metavar="text|json",
            help="text (uvicorn's lines) or json (one object per line, with request fields).",
        ),
    ] = None,
) -> None:
    """Run the OpenAI-compatible service.

    On SQLite the schema is created or upgraded first; on PostgreSQL only with
    AGENTKEEP_AUTO_MIGRATE=1, else the service refuses to start until
    `agentkeep db upgrade` has run.
    """
    from agentkeep.server.serving import serve

    url = resolve_url(database_url)
    if (log_format or "text").lower() != "json":  # a JSON log has no plain lines
        announce(url)
    with errors():
        serve(host=host, port=port, workers=workers, database_url=url, log_format=log_format)
