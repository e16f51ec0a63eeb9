"""The ``curio_agent_sdk.persistence`` API over the agentkeep store.

Switch by changing the import::

    # from curio_agent_sdk.persistence import SQLitePersistence
    from agentkeep.compat.curio import SQLitePersistence

    persistence = SQLitePersistence("./agent.db")
    persistence.create_agent_run(AgentRun(agent_id="agent-1", run_id="run-123"))

How it maps (everything else a curio record holds is kept under ``_curio``
in the agentkeep row's ``extra``, event ``data`` or usage ``input_params``):

* ``AgentRun`` -> ``store.runs`` with ``id = run_id``; status pending ->
  queued, running -> in_progress, completed -> completed, error -> failed,
  cancelled -> cancelled (timeout -> expired); status changes follow the run
  state machine, stepping through in_progress where curio jumps.
* ``AgentRunEvent`` -> ``store.events`` on the run's timeline; ``run_error``
  is ``run_failed``, types agentkeep has no name for are ``custom`` (the
  curio type reads back as written); ``event.id`` is the event's bookmark.
* ``AgentLLMUsage`` -> ``store.usage``; the cost comes from
  ``usage_metrics["cost_usd"]`` or agentkeep's price table, else stays
  unknown (``get_cost_usd()`` is None).
* ``get_agent_run_stats`` -> ``store.stats`` (``error_runs`` counts failed
  runs; ``cancelled_runs`` and ``total_cost_usd`` are added).

Where it differs from the SDK's own backends:

* ``AgentRun.id`` and ``AgentLLMUsage.id`` are None (agentkeep's ids are
  strings; a run is keyed by ``run_id``); ``AgentRunEvent.id`` is the
  event's bookmark. ``created_at``/``updated_at`` are timezone-aware UTC.
* An event for a run that does not exist creates that run as a pending
  placeholder (so the event is kept and read back); ``create_agent_run``
  with that id then fills it in. Creating an existing run raises Conflict.
* A finished run cannot be reopened (``InvalidTransition``); an unknown
  status string raises ``InvalidInput``. ``run_id`` is at most 64 characters.
* JSON-object strings (event ``data``, ``input_params``) are stored as JSON
  and come back equal as JSON; on PostgreSQL (JSONB) their keys may come
  back in another order. Other strings come back exactly.
* ``log_llm_usage`` also adds the call's tokens and cost to its run.
* ``DatabaseConfig`` with an unknown ``db_type`` raises instead of falling
  back to memory.
* ``import_from(source)`` copies an existing curio database (any object with
  this API, such as the SDK's own ``SQLitePersistence``) into agentkeep.

curio-agent-sdk 0.6 (tested side by side with its own ``SQLitePersistence`` and
``InMemoryPersistence`` in tests/test_compat_curio_sdk.py):

* The SDK's own record classes are accepted as they are; ``AgentRun`` has its
  ``final_output`` (the same as ``final_synthesis_output``) and run totals
  (``total_llm_calls``, ``total_tool_calls``, ``total_input_tokens``,
  ``total_output_tokens``, kept as given, which the SDK's SQLite drops);
  ``AgentLLMUsage`` its ``metadata`` and ``total_tokens``.
* The async methods (``acreate_agent_run``, ``aupdate_agent_run``,
  ``aget_agent_run``, ``alog_agent_run_event``, ``alog_llm_usage``,
  ``alog_audit_event``, ``startup``, ``shutdown``) run the sync ones in a thread.
* ``log_audit_event`` / ``get_audit_events``: ``curio.audit`` events on the
  monitor channel, hash-chained per run and agent as the SDK's SQLite backend
  (same hashes), listed newest first. Concurrent writers, processes too, never
  fork a chain: each appends after the last one committed (on PostgreSQL an
  advisory transaction lock per chain).
* ``get_agent_run_stats`` adds ``tool_metrics``, ``latency_percentiles``,
  ``token_efficiency`` and the mean tokens per call, computed as the SDK does.
"""

from __future__ import annotations

from ._store import StorePersistence
from .backends import InMemoryPersistence, PostgresPersistence, SQLitePersistence
from .base import BasePersistence
from .config import DatabaseConfig
from .models import AgentLLMUsage, AgentRun, AgentRunEvent, AgentRunStatus, EventType

__all__ = [
    "AgentLLMUsage",
    "AgentRun",
    "AgentRunEvent",
    "AgentRunStatus",
    "BasePersistence",
    "DatabaseConfig",
    "EventType",
    "InMemoryPersistence",
    "PostgresPersistence",
    "SQLitePersistence",
    "StorePersistence",
]
