"""What every ``agentkeep`` command shares: options, exit codes, error output, which database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from agentkeep.config import display_url, normalize_url, url_from_env
from agentkeep.errors import (
    AgentkeepError,
    InvalidInput,
    MigrationRequired,
    SchemaError,
    StoreUnavailable,
)

__all__ = [
    "CONTEXT",
    "EXIT_NEEDS_UPGRADE",
    "EXIT_UNAVAILABLE",
    "EXIT_UNKNOWN_REVISION",
    "EXIT_USAGE",
    "DatabaseUrl",
    "announce",
    "display_url",
    "err",
    "errors",
    "fail",
    "missing_sqlite_file",
    "out",
    "refuse_missing",
    "resolve_url",
    "typer_app",
]

EXIT_NEEDS_UPGRADE = 1
EXIT_USAGE = 2
EXIT_UNKNOWN_REVISION = 3
EXIT_UNAVAILABLE = 4

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def typer_app(**kwargs: Any) -> typer.Typer:
    """A Typer group with ``-h``, plain help (no ``<str>`` type noise) and no completion."""
    return typer.Typer(
        context_settings=CONTEXT,
        rich_markup_mode=None,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        **kwargs,
    )


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        "-d",
        metavar="URL",
        help="Database URL (default: AGENTKEEP_DATABASE_URL, DATABASE_URL, DATABASE_PATH, "
        "KODE_STORE_TYPE..., then sqlite:///./data/agentkeep.db).",
        show_default=False,
    ),
]


def resolve_url(database_url: str | None) -> str:
    """The URL a command works on: the option, else the environment, else the default."""
    return normalize_url(database_url) if database_url else url_from_env()


def announce(url: str) -> None:
    """Say on stderr which database the command uses (stdout stays the command's output)."""
    err.print(f"database: {display_url(url)}")


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite URL whose file does not exist yet (read-only commands don't create it)."""
    if url.startswith("sqlite:") and "///" in url:
        path = url.split("///", 1)[1]
        if path and path != ":memory:" and not os.path.exists(path):
            return path
    return None


def fail(message: str, code: int) -> NoReturn:
    err.print(f"error: {message}")
    raise typer.Exit(code)


def refuse_missing(url: str) -> None:
    """Exit 1 when ``url`` is a SQLite file that does not exist (and leave it uncreated)."""
    missing = missing_sqlite_file(url)
    if missing is not None:
        fail(
            f"{display_url(url)}: no database at {missing}; create it with `agentkeep db upgrade` "
            "(or start `agentkeep serve`)",
            EXIT_NEEDS_UPGRADE,
        )


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
