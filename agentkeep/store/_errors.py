"""The one place where driver errors become agentkeep errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc as sa_exc

from agentkeep.errors import AgentkeepError, Conflict, InvalidInput, SchemaError, StoreUnavailable

__all__ = ["translate", "translating"]


def translate(exc: Exception, what: str = "database") -> AgentkeepError:
    """The agentkeep error for a driver error (chain it with ``from exc``)."""
    if isinstance(exc, AgentkeepError):
        return exc
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else repr(exc)
    lowered = f"{type(getattr(exc, 'orig', exc)).__name__} {text}".lower()
    if "untranslatablecharacter" in lowered or "unsupported unicode escape" in lowered:
        return InvalidInput(f"{what}: PostgreSQL cannot store the NUL character (\\u0000) ({text})")
    if isinstance(exc, sa_exc.IntegrityError):
        return Conflict(f"{what}: the write conflicts with a stored row ({text})")
    if "no such table" in lowered or "undefinedtable" in lowered:
        return SchemaError(f"{what}: the schema is missing ({text}); run `agentkeep db upgrade`")
    if isinstance(exc, sa_exc.TimeoutError):
        return StoreUnavailable(f"{what}: no connection free in the pool ({text})")
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        if "locked" in lowered or "busy" in lowered:
            return StoreUnavailable(
                f"{what}: the database stayed busy past the busy timeout ({text})"
            )
        return StoreUnavailable(f"{what}: the database cannot be reached ({text})")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return StoreUnavailable(f"{what}: the connection was lost ({text})")
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return AgentkeepError(f"{what}: {text}")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"{what}: {text}")
    raise exc


@contextmanager
def translating(what: str = "database") -> Iterator[None]:
    """Translate driver errors raised in the block."""
    try:
        yield
    except AgentkeepError:
        raise
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise translate(exc, what) from exc
