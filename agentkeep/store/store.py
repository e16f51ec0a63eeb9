"""The Store: one database, one tenant, every entity as a resource."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from agentkeep.config import Pool, Settings, normalize_url
from agentkeep.errors import InvalidInput
from agentkeep.models import (
    ConsistencyReport,
    ErasureReceipt,
    Health,
    OperationMetrics,
    StoreMetrics,
)
from agentkeep.store import migrate
from agentkeep.store._core import Core
from agentkeep.store.agents import Agents
from agentkeep.store.backups import Backups
from agentkeep.store.checkpoints import Checkpoints
from agentkeep.store.consistency import check_consistency
from agentkeep.store.dialects import Dialect, dialect_for_url
from agentkeep.store.erasure import erase_user
from agentkeep.store.events import Events
from agentkeep.store.graph_items import GraphItems
from agentkeep.store.history import History
from agentkeep.store.locks import hold_lock
from agentkeep.store.media import MediaCache
from agentkeep.store.messages import Messages
from agentkeep.store.prices import PriceFile, Prices
from agentkeep.store.rate_limits import RateLimits
from agentkeep.store.responses import Responses
from agentkeep.store.run_steps import RunSteps
from agentkeep.store.runs import Runs
from agentkeep.store.schema import agents as agents_table
from agentkeep.store.schema import runs as runs_table
from agentkeep.store.schema import sessions as sessions_table
from agentkeep.store.schema import tool_calls as tool_calls_table
from agentkeep.store.sessions import Sessions
from agentkeep.store.snapshots import Snapshots
from agentkeep.store.state import StateDocs
from agentkeep.store.stats import Stats
from agentkeep.store.tool_calls import ToolCalls
from agentkeep.store.usage import Usage

__all__ = ["DEFAULT_TENANT", "Store", "connect"]

T = TypeVar("T")

DEFAULT_TENANT = "default"
_DURABILITY = ("normal", "full", "off")


class Store:
    """Everything an agent system remembers, for one tenant of one database.

    Get one with :func:`agentkeep.connect`; ``store.tenant("acme")`` gives a
    view of the same database scoped to another tenant.
    """

    def __init__(self, core: Core, tenant_id: str = DEFAULT_TENANT) -> None:
        if not isinstance(tenant_id, str) or not tenant_id or len(tenant_id) > 64:
            raise InvalidInput(
                "must be a non-empty string of at most 64 characters", field="tenant"
            )
        self._core = core
        self.tenant_id = tenant_id
        self.agents = Agents(core, tenant_id)
        self.sessions = Sessions(core, tenant_id)
        self.messages = Messages(core, tenant_id)
        self.runs = Runs(core, tenant_id)
        self.run_steps = RunSteps(core, tenant_id)
        self.events = Events(core, tenant_id)
        self.tool_calls = ToolCalls(core, tenant_id)
        self.usage = Usage(core, tenant_id)
        self.prices = Prices(core, tenant_id)
        self.snapshots = Snapshots(core, tenant_id)
        self.state = StateDocs(core, tenant_id)
        self.responses = Responses(core, tenant_id)
        self.stats = Stats(core, tenant_id)
        self.checkpoints = Checkpoints(core, tenant_id)
        self.graph_items = GraphItems(core, tenant_id)
        self.backups = Backups(core, tenant_id)
        self.rate_limits = RateLimits(core, tenant_id)
        self.history = History(core, tenant_id)
        self.media = MediaCache(core, tenant_id)

    @property
    def backend(self) -> str:
        """``memory``, ``sqlite`` or ``postgresql``."""
        return self._core.dialect.describe()

    @property
    def url(self) -> str:
        return self._core.url

    def tenant(self, tenant_id: str) -> Store:
        """The same database, scoped to ``tenant_id``."""
        return Store(self._core, tenant_id)

    @contextmanager
    def transaction(self, *, savepoints: bool | None = None) -> Iterator[Store]:
        """Make every store call in the block (in this thread) one atomic write.

        Each call inside takes a savepoint, so one that fails (and is caught)
        leaves the transaction as it was before that call. With
        ``savepoints=False`` the calls take none (two statements fewer each: a
        round trip each on PostgreSQL), and the block is all or nothing: once
        a call fails, later calls raise ``Conflict`` and the transaction rolls
        back when the block ends, even if the failure was caught. A nested
        ``transaction()`` follows the outermost one's choice, unless it says
        ``savepoints=True`` (a savepoint, which undoes a failure inside it).
        """
        with self._core.write("transaction", savepoints=savepoints):
            yield self

    @contextmanager
    def reading(self) -> Iterator[Store]:
        """Make every read in the block (in this thread) one read on one connection.

        The reads see one database state (on SQLite; on PostgreSQL each
        statement sees what was committed before it started) and cost one
        connection checkout instead of one each. A write in the block raises
        ``Conflict`` and writes nothing; inside ``transaction()``, the reads
        are the transaction's (and writes are allowed).
        """
        with self._core.read("reading"):
            yield self

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once this thread's ``transaction()`` commits (at once outside one).

        For side effects that must not be seen before the data they announce
        (waking readers, sending a message): dropped if the transaction, or
        the nested block it was registered in, rolls back.
        """
        self._core.after_commit(callback)

    def gather_before_commit(self, flush: Callable[[list[T]], None], item: T) -> None:
        """Have ``flush`` write ``item``, with every other item the transaction gives it, at its end.

        For writes that cost less made together, and to rows many transactions
        share (made last, their locks are held for the commit only): just
        before this thread's ``transaction()`` commits, ``flush`` is called
        once with its items, in order; those of a nested block that rolled
        back are left out. ``flush`` is the key (a module-level function).
        Outside a transaction, ``flush([item])`` at once.
        """
        self._core.gather_before_commit(flush, item)

    def health(self) -> Health:
        """Whether the database answers, how fast, at which schema revision, whether it
        takes writes (``writable``, with ``writable_error``) and its size (``size_bytes``).
        """
        started = time.perf_counter()
        database: dict[str, Any] = {
            "connected": False,
            "latency_ms": None,
            "revision": None,
            "writable": None,
            "size_bytes": None,
        }
        if self._core.closed:
            database["error"] = "the store is closed"
            return Health(
                healthy=False, backend=self.backend, database=database, checked_at=datetime.now(UTC)
            )
        try:
            dialect = self._core.dialect
            with self._core.read("health check") as conn:
                conn.execute(sa.text("SELECT 1"))
                database["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
                database["connected"] = True
                writable, why = dialect.writable(conn)
                database["writable"] = writable
                if why is not None:
                    database["writable_error"] = why
                database["size_bytes"] = dialect.size_bytes(conn)
            database["revision"] = migrate.current_revision(dialect)
        except Exception as exc:  # health reports the failure instead of raising it
            database["error"] = str(exc)
        healthy = (
            bool(database["connected"])
            and database["writable"] is not False
            and database["revision"] == migrate.head_revision()
        )
        return Health(
            healthy=healthy, backend=self.backend, database=database, checked_at=datetime.now(UTC)
        )

    def get_metrics(self) -> StoreMetrics:
        """Operation counts and latencies (this process, this store) and storage size.

        KODE's ``getMetrics``: ``operations`` (``read`` / ``write``: count,
        errors, mean, p50, p95, max in ms), ``by_operation`` (the same per
        labelled operation), ``storage`` (``db_size_bytes`` of the database,
        and this tenant's agents, sessions, messages, runs and tool calls).
        The counters live in this process (see :mod:`agentkeep.store.metrics`);
        each service process has its own.
        """
        kinds, labels = self._core.counters.snapshot()
        storage: dict[str, int | None] = {"db_size_bytes": None}
        tenant = self.tenant_id

        def count(table: sa.Table) -> Any:
            return (
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.tenant_id == tenant)
                .scalar_subquery()
            )

        sessions = sessions_table
        messages = (
            sa.select(sa.func.coalesce(sa.func.sum(sessions.c.message_count), 0))
            .where(sessions.c.tenant_id == tenant)
            .scalar_subquery()
        )
        stmt = sa.select(
            count(agents_table).label("agents"),
            count(sessions).label("sessions"),
            messages.label("messages"),
            count(runs_table).label("runs"),
            count(tool_calls_table).label("tool_calls"),
        )
        with self._core.read("collecting metrics") as conn:
            row = conn.execute(stmt).mappings().one()
            storage["db_size_bytes"] = self._core.dialect.size_bytes(conn)
        storage.update({name: int(value) for name, value in row.items()})
        return StoreMetrics(
            operations={k: OperationMetrics(**v) for k, v in kinds.items()},
            by_operation={k: OperationMetrics(**v) for k, v in labels.items()},
            storage=storage,
            backend=self.backend,
            pid=self._core.counters.pid,
            since=self._core.counters.since,
            collected_at=datetime.now(UTC),
        )

    def lock(
        self, name: str, *, ttl: float = 30.0, wait: float = 10.0
    ) -> AbstractContextManager[None]:
        """``with store.lock("name", ttl=30, wait=10):`` a named lock across processes.

        PostgreSQL advisory locks (64-bit key), a lease row on SQLite; a
        holder that dies frees it (its connection closes, or its lease
        expires after ``ttl`` seconds). Raises ``LockTimeout`` after ``wait``.
        """
        return hold_lock(self._core, self.tenant_id, name, ttl=ttl, wait=wait)

    def erase_user(self, user_id: str) -> ErasureReceipt:
        """Delete everything of ``user_id`` in this tenant; usage rows keep tokens and cost only.

        Returns the stored receipt (counts per table, no erased content).
        See :mod:`agentkeep.store.erasure` for what goes and what stays.
        """
        return erase_user(self._core, self.tenant_id, user_id)

    def check_consistency(self, *, agent_id: str | None = None) -> ConsistencyReport:
        """Find tool calls left without results and counts that disagree with the rows.

        ``agent_id``: only that agent's rows (KODE's per-agent ``checkConsistency``),
        with rows whose session or run is gone (``orphaned_row``) also reported.
        See :mod:`agentkeep.store.consistency`.
        """
        return check_consistency(self._core, self.tenant_id, agent_id)

    def close(self) -> None:
        """Close the database connections (of every tenant view)."""
        self._core.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.backend} tenant={self.tenant_id!r}>"


def connect(
    url: str | None = None,
    *,
    tenant: str = DEFAULT_TENANT,
    auto_migrate: bool | None = None,
    durability: str | None = None,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    schema: str | None = None,
) -> Store:
    """Open a store.

    ``url`` defaults to the environment (``AGENTKEEP_DATABASE_URL``, then
    ``DATABASE_URL``, ``DATABASE_PATH``, KODE's ``KODE_STORE_TYPE``...), else
    ``sqlite:///./data/agentkeep.db``; ``memory://`` (or ``:memory:``) is
    SQLite in memory. SQLite databases are brought to the current schema by
    themselves; PostgreSQL only with ``auto_migrate=True`` (or
    ``AGENTKEEP_AUTO_MIGRATE=1``, or ``agentkeep db upgrade``).

    ``durability``: ``normal`` (default; SQLite WAL with synchronous=NORMAL, which
    survives a process crash but may lose the last commits on power loss;
    PostgreSQL keeps the server's ``synchronous_commit``), ``full`` (SQLite
    synchronous=FULL, PostgreSQL synchronous_commit=on: survives power loss) or
    ``off`` (SQLite synchronous=OFF, PostgreSQL synchronous_commit=off: a crash of
    the machine or server may lose the last commits).

    ``pool_size`` / ``max_overflow`` default to ``AGENTKEEP_POOL_SIZE`` /
    ``AGENTKEEP_POOL_MAX_OVERFLOW``, else 5 and 10. ``schema`` (default
    ``AGENTKEEP_DB_SCHEMA``) puts the tables in that PostgreSQL schema,
    created on migration when missing; SQLite ignores it. ``AGENTKEEP_PRICES``
    names a price file of the user's (see :mod:`agentkeep.store.prices`).
    """
    settings = Settings.from_env()
    url = url or settings.database_url
    dialect = dialect_for_url(
        url,
        durability=_durability(durability, settings),
        pool=_pool(settings, pool_size, max_overflow),
        schema=schema or settings.db_schema,
    )
    try:
        price_file = PriceFile(settings.prices_path) if settings.prices_path else None
        _prepare_schema(dialect, auto_migrate, settings)
    except BaseException:
        dialect.dispose()
        raise
    core = Core(dialect, dialect.url if dialect.schema else normalize_url(url))
    core.limits = settings.limits
    core.price_file = price_file
    return Store(core, tenant)


def _durability(durability: str | None, settings: Settings) -> str:
    """``connect``'s durability (else the environment's), checked and lower-cased."""
    if durability is None:
        durability = settings.durability
    if not isinstance(durability, str) or durability.lower() not in _DURABILITY:
        raise InvalidInput(
            f"must be one of {', '.join(_DURABILITY)}, not {durability!r}", field="durability"
        )
    return durability.lower()


def _pool(settings: Settings, size: int | None, max_overflow: int | None) -> Pool:
    """The environment's pool settings with ``connect``'s sizes where given."""
    return dataclasses.replace(
        settings.pool,
        size=size if size is not None else settings.pool.size,
        max_overflow=max_overflow if max_overflow is not None else settings.pool.max_overflow,
    )


def _prepare_schema(dialect: Dialect, auto_migrate: bool | None, settings: Settings) -> None:
    """Migrate to the current schema (by default only an embedded database), else check it is."""
    if auto_migrate is None:
        auto_migrate = (
            settings.auto_migrate if settings.auto_migrate is not None else dialect.embedded
        )
    if auto_migrate:
        dialect.create_schema()
        migrate.upgrade(dialect)
    else:
        migrate.check_revision(dialect)
