"""``StorePersistence``: the curio persistence API over any agentkeep store."""

from __future__ import annotations

import hashlib
import logging
from contextlib import suppress
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from agentkeep.errors import Conflict, NotFound
from agentkeep.ids import id_at
from agentkeep.models import Run
from agentkeep.models.common import to_micros
from agentkeep.store import Store

from . import _analytics, _audit
from . import _mapping as m
from .base import BasePersistence
from .models import AgentLLMUsage, AgentRun, AgentRunEvent, metrics_cost

__all__ = ["StorePersistence"]

logger = logging.getLogger("agentkeep.compat.curio")

_PAGE = 1000  # agentkeep's largest page
_ALL = 2**31 - 1
T = TypeVar("T")


class StorePersistence(BasePersistence):
    """The curio persistence API over an agentkeep :class:`~agentkeep.Store`.

    Runs are agentkeep runs (``run_id`` is the run's id), events are events
    of the run's timeline, usage records are ``store.usage`` records.
    ``close()`` closes the store only if this object opened it.
    """

    def __init__(self, store: Store, *, owns_store: bool = False) -> None:
        self.store = store
        self._owns_store = owns_store
        self._closed = False

    # ---- agent runs ----

    def create_agent_run(self, run: AgentRun) -> None:
        """Store a new run; Conflict if a run with this ``run_id`` exists.

        A run that was only known from events logged before it was created
        (see :meth:`log_agent_run_event`) takes the given fields instead.
        """
        given, run = run, _own(AgentRun, run)
        target = m.status_to_store(run.status)
        with self.store.transaction() as store:
            try:
                stored = store.runs.create(
                    run.agent_id,
                    id=run.run_id,
                    objective=run.objective or None,
                    extra=m.run_extra(run),
                    created_at=run.created_at,
                )
            except Conflict:
                existing = _get_run(store, run.run_id)
                if existing is None or not m.is_placeholder(existing):
                    raise
                stored = existing
            stored = self._apply(store, stored, run, target)
        given.created_at = stored.created_at
        given.updated_at = stored.updated_at

    def update_agent_run(self, run_id: str, run: AgentRun) -> None:
        """Store ``run``'s fields on run ``run_id`` (a no-op, logged, if there is none).

        The status moves through agentkeep's run state machine (pending ->
        completed passes through running); a move it forbids, such as out of
        a finished status, raises ``InvalidTransition``.
        """
        given, run = run, _own(AgentRun, run)
        target = m.status_to_store(run.status)
        with self.store.transaction() as store:
            existing = _get_run(store, run_id)
            if existing is None:
                logger.warning("agent run %r not found for update", run_id)
                return
            stored = self._apply(store, existing, run, target)
        given.updated_at = stored.updated_at

    def _apply(self, store: Store, current: Run, run: AgentRun, target: str) -> Run:
        updated = store.runs.update(
            current.id,
            objective=run.objective or None,
            iterations=run.total_iterations,
            output=run.output(),
            extra=m.run_extra(run, current.extra),
        )
        for status in m.status_path(updated.status, target):
            if status == "failed":
                message = run.error_message or "the run ended with an error"
                updated = store.runs.transition(
                    current.id,
                    status,
                    last_error={"code": "server_error", "message": message},
                )
            else:
                updated = store.runs.transition(current.id, status)
        return updated

    def get_agent_run(self, run_id: str) -> AgentRun | None:
        stored = _get_run(self.store, run_id)
        return m.run_from_store(stored) if stored is not None else None

    def get_agent_runs(
        self, agent_id: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[AgentRun]:
        """Runs, newest first (by ``created_at``, ties by id), optionally of one agent."""
        if limit <= 0:
            return []
        runs: list[Run] = []
        after: str | None = None
        skip = max(offset, 0)  # skipped by the database, on the first page only
        while len(runs) < limit:
            page = self.store.runs.list(
                agent_id=agent_id or None,
                limit=min(_PAGE, limit - len(runs)),
                after=after,
                sort="created_at",
                offset=0 if after is not None else skip,
            )
            runs.extend(page.items)
            if not page.has_more:
                break
            after = page.last_id
        return [m.run_from_store(r) for r in runs]

    def _all_runs(self, agent_id: str | None) -> list[Run]:
        out: list[Run] = []
        after: str | None = None
        while True:
            page = self.store.runs.list(agent_id=agent_id, limit=_PAGE, after=after, order="asc")
            out.extend(page.items)
            if not page.has_more or page.last_id is None:
                return out
            after = page.last_id

    def delete_agent_run(self, run_id: str) -> bool:
        """Delete the run with its events (usage records stay); False if there is none."""
        try:
            self.store.runs.delete(run_id)
        except NotFound:
            return False
        return True

    # ---- agent run events ----

    def log_agent_run_event(self, event: AgentRunEvent) -> None:
        """Append the event to its run's timeline; sets ``event.id`` (the bookmark).

        An event for a run that was never created creates that run, pending
        and marked as a placeholder in its ``extra``, so the event is kept and
        read back like any other; a later ``create_agent_run`` with that id
        fills the run in instead of failing.
        """
        given, event = event, _own(AgentRunEvent, event)
        run_id = event.run_id or None
        data = m.event_payload(event)
        store_type = m.event_type_to_store(event.event_type)
        with self.store.transaction() as store:
            try:
                stored = store.events.append(
                    store_type, run_id=run_id, agent_id=event.agent_id or None, data=data
                )
            except NotFound as exc:
                if exc.kind != "run" or run_id is None:
                    raise
                with suppress(Conflict):  # another writer may create it meanwhile
                    store.runs.create(
                        event.agent_id or "unknown",
                        id=run_id,
                        extra={
                            m.CURIO: {
                                "placeholder": True,
                                "agent_name": event.agent_name,
                                "status": "pending",
                            }
                        },
                    )
                stored = store.events.append(
                    store_type, run_id=run_id, agent_id=event.agent_id or None, data=data
                )
        given.id = stored.bookmark
        given.created_at = stored.created_at

    def get_agent_run_events(
        self, run_id: str, event_type: str | None = None
    ) -> list[AgentRunEvent]:
        """The run's events in time order (by ``timestamp``, else in the order logged)."""
        wanted = getattr(event_type, "value", event_type) or None
        types = m.event_type_to_store(wanted) if wanted is not None else None
        out: list[AgentRunEvent] = []
        after = 0
        while True:
            batch = self.store.events.list(
                run_id=run_id, types=types, after_bookmark=after, limit=_PAGE
            )
            for stored in batch:
                converted = m.event_from_store(stored)
                if wanted is None or converted.event_type == wanted:
                    out.append(converted)
            if len(batch) < _PAGE:
                break
            after = batch[-1].bookmark
        with suppress(TypeError):  # naive and aware timestamps mixed: keep the logged order
            out.sort(key=_when)
        return out

    # ---- LLM usage ----

    def log_llm_usage(self, usage: AgentLLMUsage) -> None:
        """Record the call; its tokens and cost are added to its run, if that run exists.

        The cost is ``usage_metrics["cost_usd"]`` when the caller gives one,
        else agentkeep prices the call from its price table (unknown models
        stay without a cost: ``get_cost_usd()`` returns None).
        """
        given, own = usage, _own(AgentLLMUsage, usage)
        self._log_usage(own)
        given.created_at = own.created_at
        if given is not own:
            given._cost_usd = own._cost_usd

    def _log_usage(
        self, usage: AgentLLMUsage, *, id: str | None = None, created_at: datetime | None = None
    ) -> None:
        args = m.usage_record_args(usage)
        given = metrics_cost(usage.get_usage_metrics_dict())
        cost = Decimal(str(given)) if given is not None and given >= 0 else None
        with self.store.transaction() as store:
            record = store.usage.record(**args, cost_usd=cost, id=id, created_at=created_at)
            if record.run_id is not None:
                with suppress(NotFound):  # usage may name a run agentkeep does not have
                    store.runs.add_usage(
                        record.run_id,
                        input_tokens=record.input_tokens,
                        output_tokens=record.output_tokens,
                        cost_usd=record.cost_usd,
                    )
        usage.created_at = record.created_at
        usage._cost_usd = float(record.cost_usd) if record.cost_usd is not None else None

    def get_llm_usage(
        self, agent_id: str | None = None, run_id: str | None = None, limit: int = 100
    ) -> list[AgentLLMUsage]:
        """LLM calls, newest first, optionally of one agent and/or one run."""
        out: list[AgentLLMUsage] = []
        after: str | None = None
        while len(out) < limit:
            page = self.store.usage.list(
                agent_id=agent_id or None,
                run_id=run_id or None,
                limit=min(_PAGE, limit - len(out)),
                after=after,
                order="desc",
            )
            out.extend(m.usage_from_store(r) for r in page.items)
            if not page.has_more or page.last_id is None:
                break
            after = page.last_id
        return out

    # ---- statistics ----

    def get_agent_run_stats(self, agent_id: str | None = None) -> dict[str, Any]:
        """``total_runs``, ``completed_runs``, ``error_runs``, ``avg_iterations``,
        ``total_llm_calls``, ``total_input_tokens``, ``total_output_tokens``, plus
        ``cancelled_runs`` and ``total_cost_usd`` (None when there are calls and none
        has a known cost; 0 without calls).
        """
        stats = self.store.stats.get(agent_id or None)
        return {
            "total_runs": stats.total_runs,
            "completed_runs": stats.completed_runs,
            "error_runs": stats.failed_runs,
            "avg_iterations": round(float(stats.avg_iterations or 0), 2),
            "total_llm_calls": stats.llm_calls,
            "total_input_tokens": stats.input_tokens,
            "total_output_tokens": stats.output_tokens,
            "cancelled_runs": stats.cancelled_runs,
            "total_cost_usd": float(stats.cost_usd) if stats.cost_usd is not None else None,
            **_analytics.extended(
                self.store,
                agent_id or None,
                stats.llm_calls,
                stats.input_tokens,
                stats.output_tokens,
            ),
        }

    # ---- audit log (curio-agent-sdk 0.6) ----

    def log_audit_event(self, event: Any) -> None:
        """Append a structured audit event (a dict), hash-chained as the SDK's SQLite backend."""
        _audit.log_audit_event(self.store, event)

    def get_audit_events(
        self, run_id: str | None = None, agent_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Audit events, newest first, each with its ``id``, ``prev_hash`` and ``hash``."""
        return _audit.audit_events(self.store, run_id or None, agent_id or None, limit)

    # ---- export ----

    def get_all_data(self) -> dict[str, Any]:
        """Every run, event and usage record of the tenant, as dicts (for debugging/export)."""
        runs = {r.id: m.run_from_store(r).to_dict() for r in self._all_runs(None)}
        events: dict[str, list[dict[str, Any]]] = {}
        bookmark = 0
        while True:
            batch = self.store.events.list(after_bookmark=bookmark, limit=_PAGE)
            for item in batch:
                if item.run_id is not None:
                    events.setdefault(item.run_id, []).append(m.event_from_store(item).to_dict())
            if len(batch) < _PAGE:
                break
            bookmark = batch[-1].bookmark
        usage: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            upage = self.store.usage.list(limit=_PAGE, after=cursor, order="asc")
            usage.extend(m.usage_from_store(r).to_dict() for r in upage.items)
            if not upage.has_more or upage.last_id is None:
                break
            cursor = upage.last_id
        return {"runs": runs, "events": events, "llm_usage": usage}

    def import_from(self, source: Any) -> dict[str, int]:
        """Copy what another curio persistence holds into this store; returns the counts.

        ``source`` is anything with the curio persistence API, such as the SDK's
        own ``SQLitePersistence("agent_sdk.db")``: every run it lists (oldest
        first, with its events) and every usage record. Runs already here are
        skipped with their events, and a usage record with an ``id`` is
        imported once, so importing again only adds what is new. Naive
        usage times are taken as UTC.
        """
        counts = {"runs": 0, "events": 0, "llm_usage": 0, "skipped_runs": 0}
        for src in reversed(source.get_agent_runs(None, limit=_ALL, offset=0)):
            run = _adopt(AgentRun, src)
            if _get_run(self.store, run.run_id) is not None:
                counts["skipped_runs"] += 1
                continue
            self.create_agent_run(run)
            counts["runs"] += 1
            for event in source.get_agent_run_events(run.run_id):
                self.log_agent_run_event(_adopt(AgentRunEvent, event))
                counts["events"] += 1
        for src in reversed(source.get_llm_usage(None, None, limit=_ALL)):
            usage = _adopt(AgentLLMUsage, src)
            ident = _import_id(usage.id, usage.created_at)
            if ident is not None:
                try:
                    self.store.usage.get(ident)
                    continue
                except NotFound:
                    pass
            self._log_usage(usage, id=ident, created_at=usage.created_at)
            counts["llm_usage"] += 1
        return counts

    # ---- lifecycle ----

    def health_check(self) -> bool:
        """True if the database answers and is at agentkeep's schema revision (False once closed)."""
        if self._closed:
            return False
        try:
            return bool(self.store.health().healthy)
        except Exception:
            logger.exception("health check failed")
            return False

    def close(self) -> None:
        self._closed = True
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> StorePersistence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get_run(store: Store, run_id: str) -> Run | None:
    try:
        return store.runs.get(run_id)
    except NotFound:
        return None


def _when(event: AgentRunEvent) -> datetime:
    assert event.timestamp is not None  # read events always have one
    return event.timestamp


def _own(cls: type[T], obj: Any) -> T:
    """``obj`` itself if it is one of ours, else a copy (the SDK's own record classes)."""
    return obj if isinstance(obj, cls) else _adopt(cls, obj)


def _adopt(cls: type[T], obj: Any) -> T:
    """A copy of a curio record (ours or the SDK's own classes) as ``cls``."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        name = _ALIASES.get(f.name, f.name) if not hasattr(obj, f.name) else f.name
        if f.init and hasattr(obj, name):
            kwargs[f.name] = getattr(obj, name)
    return cls(**kwargs)


def _import_id(source_id: int | None, created_at: datetime | None) -> str | None:
    """A usage id for an imported record: the same on every import, and sorting
    among agentkeep's own ids by the record's time (like ``agentkeep.ids``)."""
    if source_id is None or created_at is None:
        return None
    ms = (to_micros(created_at) or 0) // 1000
    digest = int.from_bytes(hashlib.blake2b(str(source_id).encode(), digest_size=10).digest())
    return id_at("usage", ms, digest)


# Fields that later SDK versions renamed.
_ALIASES = {"final_synthesis_output": "final_output"}
