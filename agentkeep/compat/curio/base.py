"""``BasePersistence``: the interface every curio persistence backend implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

from .models import AgentLLMUsage, AgentRun, AgentRunEvent

__all__ = ["BasePersistence"]


class BasePersistence(ABC):
    """Runs, run events, LLM usage and statistics, whatever the database."""

    # ---- agent runs ----

    @abstractmethod
    def create_agent_run(self, run: AgentRun) -> None:
        """Store a new run."""

    @abstractmethod
    def update_agent_run(self, run_id: str, run: AgentRun) -> None:
        """Replace the stored fields of run ``run_id`` with those of ``run``."""

    @abstractmethod
    def get_agent_run(self, run_id: str) -> AgentRun | None:
        """The run, or None if there is none with that id."""

    @abstractmethod
    def get_agent_runs(
        self, agent_id: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[AgentRun]:
        """Runs, newest first, optionally of one agent."""

    @abstractmethod
    def delete_agent_run(self, run_id: str) -> bool:
        """Delete a run and its events; False if there was none."""

    # ---- agent run events ----

    @abstractmethod
    def log_agent_run_event(self, event: AgentRunEvent) -> None:
        """Append an event to a run's timeline."""

    @abstractmethod
    def get_agent_run_events(
        self, run_id: str, event_type: str | None = None
    ) -> list[AgentRunEvent]:
        """A run's events in time order, optionally of one type."""

    # ---- LLM usage ----

    @abstractmethod
    def log_llm_usage(self, usage: AgentLLMUsage) -> None:
        """Record one LLM call."""

    @abstractmethod
    def get_llm_usage(
        self, agent_id: str | None = None, run_id: str | None = None, limit: int = 100
    ) -> list[AgentLLMUsage]:
        """LLM calls, newest first, optionally of one agent and/or run."""

    # ---- statistics ----

    @abstractmethod
    def get_agent_run_stats(self, agent_id: str | None = None) -> dict[str, Any]:
        """Counts of runs and LLM calls: ``total_runs``, ``completed_runs``, ``error_runs``, ..."""

    # ---- optional ----

    def initialize_schema(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Create the tables if they do not exist."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Close the database connections."""

    def health_check(self) -> bool:
        """True if the database answers."""
        return True

    # ---- audit log (curio-agent-sdk 0.6; optional) ----

    def log_audit_event(self, event: Any) -> None:  # noqa: B027 - optional, a no-op by default
        """Store a structured audit event (a dict: ``action``, ``actor_type``, ``run_id``, ...)."""

    def get_audit_events(
        self, run_id: str | None = None, agent_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Audit events, optionally of one run and/or agent."""
        return []

    # ---- async (curio-agent-sdk 0.6): the sync methods in a worker thread ----

    async def startup(self) -> None:
        await asyncio.to_thread(self.initialize_schema)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.close)

    async def acreate_agent_run(self, run: AgentRun) -> None:
        await asyncio.to_thread(self.create_agent_run, run)

    async def aupdate_agent_run(self, run_id: str, run: AgentRun) -> None:
        await asyncio.to_thread(self.update_agent_run, run_id, run)

    async def aget_agent_run(self, run_id: str) -> AgentRun | None:
        return await asyncio.to_thread(self.get_agent_run, run_id)

    async def alog_agent_run_event(self, event: AgentRunEvent) -> None:
        await asyncio.to_thread(self.log_agent_run_event, event)

    async def alog_llm_usage(self, usage: AgentLLMUsage) -> None:
        await asyncio.to_thread(self.log_llm_usage, usage)

    async def alog_audit_event(self, event: Any) -> None:
        await asyncio.to_thread(self.log_audit_event, event)
