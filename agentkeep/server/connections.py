"""How many database connections a service process may open: its share of the server's.

On PostgreSQL a service process opens connections of three kinds, each at most
``pool_size + max_overflow`` at once: SQLAlchemy's pool (transactions, the
resources' reads), the message statements' own connections (the sync fast
path: request threads and the run worker), and the async path's (the message
routes, on the event loop). With ``--workers N`` there are N such processes,
and PostgreSQL refuses connections past ``max_connections`` ("too many
clients"). So, unless ``AGENTKEEP_POOL_SIZE`` or ``AGENTKEEP_POOL_MAX_OVERFLOW``
is set, each process sizes its pools to its share: ``SHARE`` of what the server
allows clients (``max_connections`` less the reserved ones), divided among the
processes and the three kinds, at most the defaults (30 + 10). SQLite has no
such limit: the defaults stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

import agentkeep
from agentkeep.config import Settings
from agentkeep.store import Store

__all__ = [
    "KINDS",
    "MAX_OVERFLOW",
    "POOL_SIZE",
    "SHARE",
    "Budget",
    "budget",
    "check_schema",
    "fit",
    "log_budget",
    "open_store",
    "server_allows",
]

log = logging.getLogger("agentkeep.server")

# Connections for the request threads (AnyIO's pool has 40) and the run worker. Most are
# kept: under load, connections opened beyond the pool's size are closed as soon as they
# are returned and opened again by the next burst (a server process started each time on
# PostgreSQL). At most 40 at once.
POOL_SIZE = 30
MAX_OVERFLOW = 10
SHARE = 0.8
"""Of the connections the server allows, what the service's processes take together: the
rest stays for everyone else (psql, ``agentkeep db upgrade``, backups, other clients)."""
KINDS = 3
"""Kinds of connection a process opens, each up to ``pool_size + max_overflow``."""

_ALLOWED = sa.text(
    "SELECT current_setting('max_connections')::int"
    " - current_setting('superuser_reserved_connections')::int"
    " - coalesce(current_setting('reserved_connections', true)::int, 0)"
)


@dataclass(frozen=True)
class Budget:
    """A service process's connections to PostgreSQL."""

    pool_size: int
    max_overflow: int
    workers: int
    server_allows: int
    """``max_connections`` less the connections the server reserves."""

    @property
    def per_process(self) -> int:
        return KINDS * (self.pool_size + self.max_overflow)

    @property
    def fits(self) -> bool:
        return self.workers * self.per_process <= self.server_allows


def fit(server_allows: int, workers: int) -> tuple[int, int]:
    """``(pool_size, max_overflow)`` of each of ``workers`` processes: their share of the
    ``server_allows`` connections, at most the defaults, at least one connection each."""
    each = int(server_allows * SHARE) // (max(workers, 1) * KINDS)
    each = min(POOL_SIZE + MAX_OVERFLOW, max(each, 1))
    size = max(1, each * 3 // 4)
    return size, each - size


def server_allows(store: Store) -> int:
    """Connections the PostgreSQL server of ``store`` allows its (non-superuser) clients."""
    with store._core.engine.connect() as conn:
        return int(conn.execute(_ALLOWED).scalar_one())


def budget(store: Store, settings: Settings) -> Budget | None:
    """``store``'s connection budget (None off PostgreSQL)."""
    if store.backend != "postgresql":
        return None
    dialect = store._core.dialect
    return Budget(dialect.pool_size, dialect.max_overflow, settings.workers, server_allows(store))


def open_store(settings: Settings) -> Store:
    """The service's store on ``settings.database_url``, its pools sized as this module says.

    The library's migration rule: an embedded SQLite database is created or
    upgraded; PostgreSQL only with ``AGENTKEEP_AUTO_MIGRATE=1``, otherwise a
    database behind head raises ``MigrationRequired`` naming ``agentkeep db upgrade``.
    """
    pool = settings.pool
    explicit = pool.size is not None or pool.max_overflow is not None
    size = pool.size or POOL_SIZE
    overflow = pool.max_overflow if pool.max_overflow is not None else MAX_OVERFLOW
    store = _connect(settings, size, overflow)
    if explicit or store.backend != "postgresql":
        return store
    try:
        fitted = fit(server_allows(store), settings.workers)
    except BaseException:
        store.close()
        raise
    if fitted == (size, overflow):
        return store
    store.close()
    return _connect(settings, *fitted)


def check_schema(settings: Settings) -> None:
    """What ``serve`` does before it starts serving: the schema upgraded or checked by the
    library's migration rule (as ``open_store`` does), on one connection, no pools fitted."""
    _connect(settings, 1, 0).close()


def _connect(settings: Settings, size: int, overflow: int) -> Store:
    return agentkeep.connect(
        settings.database_url,
        auto_migrate=settings.auto_migrate,
        pool_size=size,
        max_overflow=overflow,
    )


def log_budget(store: Store, settings: Settings) -> None:
    """Say how many connections this process may open; warn when the processes' sum
    exceeds what the server allows (the pool sizes were set by hand)."""
    found = budget(store, settings)
    if found is None:
        return
    line = (
        "PostgreSQL connections: up to %d for this process (%d x (%d + %d)), %d process(es); "
        "the server allows %d"
    )
    args = (
        found.per_process,
        KINDS,
        found.pool_size,
        found.max_overflow,
        found.workers,
        found.server_allows,
    )
    if found.fits:
        log.info(line, *args)
    else:
        log.warning(
            line + ": under load the server refuses the excess (503); lower "
            "AGENTKEEP_POOL_SIZE / AGENTKEEP_POOL_MAX_OVERFLOW or raise max_connections",
            *args,
        )
