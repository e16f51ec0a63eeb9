"""A LangGraph store (long-term memory, ``BaseStore``) over an agentkeep store.

    from agentkeep.integrations.langgraph import AgentkeepStore
    graph = builder.compile(store=AgentkeepStore(agentkeep.connect()))

Items live in agentkeep's ``graph_store_items`` table (``store.graph_items``),
by tenant, namespace and key, on memory, SQLite and PostgreSQL; they are
exported, backed up, restored and erased with the rest of the database. TTLs
(``supports_ttl``): an item put with ``ttl`` minutes (or ``ttl_config``'s
``default_ttl``) is invisible once expired, and deleted by :meth:`sweep_ttl`
or the sweeper thread (:meth:`start_ttl_sweeper`). There is no embedding
index: a ``query`` is ignored, as LangGraph's ``InMemoryStore`` ignores it
without an index (results as for no query, ``score`` None). Needs
``pip install 'agentkeep[langgraph]'``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from agentkeep.integrations._extra import require

require("langgraph.store.base", "langgraph")

from langgraph.store.base import (  # noqa: E402
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from agentkeep.aio import AsyncStore  # noqa: E402
from agentkeep.errors import InvalidInput  # noqa: E402
from agentkeep.integrations._apis import sync_and_async  # noqa: E402
from agentkeep.store import Store  # noqa: E402
from agentkeep.store._steps import Op as StoreOp  # noqa: E402
from agentkeep.store._steps import operation  # noqa: E402
from agentkeep.store.graph_items import (  # noqa: E402
    ItemWrite,
    StoredItem,
    check_filter,
    check_labels,
    check_write,
)

__all__ = ["AgentkeepStore"]

_log = logging.getLogger(__name__)


def _search_item(item: StoredItem) -> SearchItem:
    return SearchItem(
        namespace=item.namespace,
        key=item.key,
        value=item.value,
        created_at=item.created_at,
        updated_at=item.updated_at,
        score=None,
    )


def _item(item: StoredItem | None) -> Item | None:
    if item is None:
        return None
    return Item(
        value=item.value,
        key=item.key,
        namespace=item.namespace,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def _check(ops: list[Op]) -> None:
    """Every op's input, before any runs: a bad one raises ``InvalidInput`` naming its field."""
    for op in ops:
        if isinstance(op, GetOp):
            check_labels(op.namespace, "namespace")
        elif isinstance(op, SearchOp):
            check_labels(op.namespace_prefix, "namespace_prefix")
            check_filter(op.filter)
        elif isinstance(op, ListNamespacesOp):
            for condition in op.match_conditions or ():
                check_labels(condition.path, condition.match_type)
        elif isinstance(op, PutOp):
            check_write(ItemWrite(op.namespace, op.key, op.value, op.ttl))
        else:
            raise InvalidInput(f"unknown operation {type(op).__name__}", field="ops")


class AgentkeepStore(BaseStore):
    """LangGraph's ``BaseStore`` on ``store.graph_items``.

    ``store``: a :class:`agentkeep.Store` or :class:`agentkeep.AsyncStore`;
    items belong to its tenant. ``ttl_config``: LangGraph's ``TTLConfig``
    (``default_ttl`` minutes for puts without ``ttl``, ``refresh_on_read``
    (default True), ``sweep_interval_minutes`` for :meth:`start_ttl_sweeper`).
    ``clock``: now, as an aware datetime (default: the system clock).

    A batch runs as LangGraph's ``InMemoryStore`` runs one: its reads see the
    items as they were before the batch; its puts (the last one of each item
    wins) are then written in one transaction. Every op is checked first: a
    bad one raises ``InvalidInput`` (a ``ValueError``) naming the field, and
    nothing is written.
    """

    supports_ttl = True

    def __init__(
        self,
        store: Store | AsyncStore,
        *,
        ttl_config: TTLConfig | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store, self.astore = sync_and_async(store)
        self.ttl_config = ttl_config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()

    # --- batches ----------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self.store._core.run_op(self._batch(list(ops)))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """As ``batch``, on the store's async connections (no worker thread)."""
        return await self.store._core.arun_op(self._batch(list(ops)))

    def _batch(self, ops: list[Op]) -> StoreOp[list[Result]]:
        """The batch as one operation (``store._steps``), for ``batch`` and ``abatch``."""
        _check(ops)
        now = self._clock()
        items = self.store.graph_items
        results: list[Result] = []
        writes: list[ItemWrite] = []
        for op in ops:
            if isinstance(op, GetOp):
                got = yield from operation(
                    items.get, op.namespace, op.key, refresh_ttl=op.refresh_ttl, now=now
                )
                results.append(_item(got))
            elif isinstance(op, SearchOp):
                found = yield from operation(
                    items.search,
                    op.namespace_prefix,
                    filter=op.filter,
                    limit=op.limit,
                    offset=op.offset,
                    refresh_ttl=op.refresh_ttl,
                    now=now,
                )
                results.append([_search_item(i) for i in found])
            elif isinstance(op, ListNamespacesOp):
                listed = yield from operation(
                    items.list_namespaces,
                    conditions=[(c.match_type, c.path) for c in op.match_conditions or ()],
                    max_depth=op.max_depth,
                    limit=op.limit,
                    offset=op.offset,
                    now=now,
                )
                results.append(listed)
            else:
                assert isinstance(op, PutOp)
                writes.append(ItemWrite(op.namespace, op.key, op.value, op.ttl))
                results.append(None)
        yield from operation(items.write, writes, now=now)
        return results

    # --- TTL --------------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Delete this tenant's expired items now; how many went."""
        return self.store.graph_items.purge_expired(now=self._clock())

    async def asweep_ttl(self) -> int:
        return await self.astore.graph_items.purge_expired(now=self._clock())

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> threading.Thread:
        """Sweep every ``sweep_interval_minutes`` (default: ``ttl_config``'s, else 5) in a
        daemon thread, until :meth:`stop_ttl_sweeper`; returns the thread."""
        if self._sweeper is not None and self._sweeper.is_alive():
            return self._sweeper
        config = self.ttl_config or {}
        minutes = sweep_interval_minutes or config.get("sweep_interval_minutes") or 5
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0:
            raise InvalidInput(
                "must be a positive number of minutes", field="sweep_interval_minutes"
            )
        self._stop.clear()
        self._sweeper = threading.Thread(
            target=self._sweep_every,
            args=(minutes * 60,),
            name="agentkeep-ttl-sweeper",
            daemon=True,
        )
        self._sweeper.start()
        return self._sweeper

    def _sweep_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.sweep_ttl()
            except Exception:  # the next sweep tries again
                _log.warning("sweeping expired graph store items failed", exc_info=True)

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper thread; whether it has stopped within ``timeout`` seconds."""
        self._stop.set()
        if self._sweeper is None:
            return True
        self._sweeper.join(timeout)
        stopped = not self._sweeper.is_alive()
        if stopped:
            self._sweeper = None
        return stopped
