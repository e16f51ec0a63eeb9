"""The one place where driver errors become agentkeep errors.

Errors are told apart by class and code, never by their message text:
PostgreSQL's by SQLSTATE (``psycopg.Error.sqlstate``: its class, the first two
characters, or the full code), SQLite's by the extended result code name
(``sqlite3.Error.sqlite_errorname``, Python 3.11+). A driver error may come
bare (statements run on a driver cursor) or wrapped by SQLAlchemy (``.orig``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy.exc as sa_exc

from agentkeep.errors import (
    AgentkeepError,
    Conflict,
    InvalidInput,
    NotFound,
    SchemaError,
    SessionBusy,
    StoreUnavailable,
)

__all__ = ["DRIVER_ERRORS", "translate", "translating"]

#: What ``translating`` catches besides SQLAlchemy's own errors.
DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, OSError)

_CAUGHT: tuple[type[Exception], ...] = (sa_exc.SQLAlchemyError, *DRIVER_ERRORS)
_SCHEMA = "the schema is missing or differs ({}); run `agentkeep db upgrade`"
_UNREACHABLE = "the database cannot be reached ({})"
_BUSY = "the database stayed busy past the busy timeout ({})"

# PostgreSQL: full SQLSTATE codes first, then classes (the first two characters).
_PG_CODES: dict[str, tuple[type[AgentkeepError], str]] = {
    "22P05": (InvalidInput, "PostgreSQL cannot store the NUL character (\\u0000) ({})"),
    "42P01": (SchemaError, _SCHEMA),  # undefined_table
    "42703": (SchemaError, _SCHEMA),  # undefined_column
    "55P03": (StoreUnavailable, _BUSY),  # lock_not_available
    "57014": (StoreUnavailable, "the statement was cancelled ({})"),  # query_canceled
}
_PG_CLASSES: dict[str, tuple[type[AgentkeepError], str]] = {
    "22": (InvalidInput, "a value cannot be stored ({})"),  # data exception
    "23": (Conflict, "the write conflicts with a stored row ({})"),  # integrity
    "40": (StoreUnavailable, "the transaction was rolled back by the server; retry ({})"),
    "08": (StoreUnavailable, _UNREACHABLE),  # connection exception
    "53": (StoreUnavailable, "the server is out of resources ({})"),
    "57": (StoreUnavailable, "the server is shutting down or restarting ({})"),
    "58": (StoreUnavailable, "the server had a system error ({})"),
}
# Raised by agentkeep_session_idle() (migration 0014), the check of messages.append_if_idle.
_GUARDS: dict[str, Callable[[dict[str, str]], AgentkeepError]] = {
    "AKB01": lambda d: SessionBusy(d["session_id"], d["run_id"]),
    "AKN01": lambda d: NotFound(d["kind"], d["session_id"]),
}
# SQLite: extended result code names, then primary ones (the name up to a second "_").
_SQLITE_CODES: dict[str, tuple[type[AgentkeepError], str]] = {
    "SQLITE_CONSTRAINT": (Conflict, "the write conflicts with a stored row ({})"),
    "SQLITE_BUSY": (StoreUnavailable, _BUSY),
    "SQLITE_LOCKED": (StoreUnavailable, _BUSY),
    # A statement of ours naming no table or column the file has: the schema differs.
    "SQLITE_ERROR": (SchemaError, _SCHEMA),
    "SQLITE_CANTOPEN": (StoreUnavailable, "the database file cannot be opened ({})"),
    "SQLITE_IOERR": (StoreUnavailable, "the database file cannot be read or written ({})"),
    "SQLITE_FULL": (StoreUnavailable, "the disk is full ({})"),
    "SQLITE_READONLY": (StoreUnavailable, "the database is read-only ({})"),
    "SQLITE_NOTADB": (StoreUnavailable, "the file is not a SQLite database ({})"),
    "SQLITE_CORRUPT": (StoreUnavailable, "the database file is corrupt ({})"),
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def _from_psycopg(exc: psycopg.Error, what: str) -> AgentkeepError:
    text = _first_line(exc)
    code = exc.sqlstate
    if code in _GUARDS:
        return _GUARDS[code](json.loads(exc.diag.message_detail or "{}"))
    if code is not None:
        found = _PG_CODES.get(code) or _PG_CLASSES.get(code[:2])
        if found is not None:
            kind, message = found
            return kind(f"{what}: {message.format(text)}")
    if isinstance(exc, psycopg.DataError):
        # No SQLSTATE: refused by the driver before sending (a NUL character in a text value).
        return InvalidInput(f"{what}: a value cannot be stored ({text})")
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        # No SQLSTATE: the connection failed or was lost on the client's side.
        return StoreUnavailable(f"{what}: {_UNREACHABLE.format(text)}")
    return AgentkeepError(f"{what}: {text}")


def _from_sqlite(exc: sqlite3.Error, what: str) -> AgentkeepError:
    text = _first_line(exc)
    name = getattr(exc, "sqlite_errorname", None) or ""
    primary = "_".join(name.split("_")[:2])
    found = _SQLITE_CODES.get(name) or _SQLITE_CODES.get(primary)
    if found is not None:
        kind, message = found
        return kind(f"{what}: {message.format(text)}")
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(f"{what}: the write conflicts with a stored row ({text})")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"{what}: {_UNREACHABLE.format(text)}")
    return AgentkeepError(f"{what}: {text}")


def translate(exc: BaseException, what: str = "database") -> AgentkeepError:
    """The agentkeep error for a driver error, bare or wrapped by SQLAlchemy (chain it with ``from exc``)."""
    if isinstance(exc, AgentkeepError):
        return exc
    orig = getattr(exc, "orig", None) if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(orig, psycopg.Error):
        return _from_psycopg(orig, what)
    if isinstance(orig, sqlite3.Error):
        return _from_sqlite(orig, what)
    text = _first_line(exc)
    if isinstance(exc, sa_exc.TimeoutError):
        return StoreUnavailable(f"{what}: no connection free in the pool ({text})")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return StoreUnavailable(f"{what}: the connection was lost ({text})")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"{what}: {text}")
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return AgentkeepError(f"{what}: {text}")
    raise exc


@contextmanager
def translating(what: str = "database") -> Iterator[None]:
    """Translate driver errors raised in the block."""
    try:
        yield
    except AgentkeepError:
        raise
    except _CAUGHT as exc:
        raise translate(exc, what) from exc
