"""What every command module of the CLI shares: consoles, exit codes, URL and error handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from sqlalchemy.engine import make_url

from agentkeep.config import Settings
from agentkeep.errors import (
    AgentkeepError,
    InvalidInput,
    MigrationRequired,
    SchemaError,
    StoreUnavailable,
)

__all__ = [
    "EXIT_NEEDS_UPGRADE",
    "EXIT_UNAVAILABLE",
    "EXIT_UNKNOWN_REVISION",
    "EXIT_USAGE",
    "DatabaseUrl",
    "display_url",
    "err",
    "errors",
    "fail",
    "out",
    "resolve_url",
]

EXIT_NEEDS_UPGRADE = 1
EXIT_USAGE = 2
EXIT_UNKNOWN_REVISION = 3
EXIT_UNAVAILABLE = 4

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        "-d",
        help="Database URL (default: AGENTKEEP_DATABASE_URL, DATABASE_URL, "
        "then sqlite:///./data/agentkeep.db).",
        show_default=False,
    ),
]


def resolve_url(database_url: str | None) -> str:
    """The URL a command works on: the option, else the environment, else the default."""
    return database_url or Settings.from_env().database_url


def display_url(url: str) -> str:
    """``url`` with any password hidden."""
    if url.startswith("memory://"):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn agentkeep errors into a message on stderr and the documented exit code."""
    try:
        yield
    except MigrationRequired as exc:
        fail(str(exc), EXIT_NEEDS_UPGRADE)
    except SchemaError as exc:
        fail(str(exc), EXIT_UNKNOWN_REVISION)
    except StoreUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except InvalidInput as exc:
        fail(str(exc), EXIT_USAGE)
    except AgentkeepError as exc:
        fail(str(exc), 1)
