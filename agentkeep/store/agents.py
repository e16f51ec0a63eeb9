"""Agents (OpenAI assistants): create, read, update with a version, delete, list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import NotFound
from agentkeep.ids import new_id
from agentkeep.models import Agent, Page
from agentkeep.models.common import Order, check_metadata, utcnow_micros
from agentkeep.store._base import Resource, Row, row_times, time_range
from agentkeep.store._validate import UNSET, check_object, check_tools, opt_text, require_str
from agentkeep.store.schema import agents as t

__all__ = ["Agents"]


def _to_agent(row: Row) -> Agent:
    return Agent.model_construct(**row_times(row, "created_at", "updated_at"))


class Agents(Resource):
    """``store.agents``: the agents (assistants) of this tenant."""

    kind = "agent"

    def create(
        self,
        *,
        model: str,
        name: str | None = None,
        description: str | None = None,
        instructions: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Agent:
        """Create an agent; ``extra`` keeps any other settings (temperature, ...)."""
        values = {
            "tenant_id": self.tenant_id,
            "id": (require_str(id, "id", max_len=64) if id is not None else new_id("asst")),
            "model": require_str(model, "model"),
            "name": opt_text(name, "name", 256),
            "description": opt_text(description, "description", 512),
            "instructions": opt_text(instructions, "instructions", 256_000),
            "tools": check_tools(tools),
            "metadata": check_metadata(metadata),
            "extra": check_object(extra, "extra"),
            "version": 1,
        }
        now = utcnow_micros()
        values["created_at"] = values["updated_at"] = now
        with self._core.write("creating an agent") as conn:
            conn.execute(sa.insert(t).values(values))
        return _to_agent(values)

    def get(self, agent_id: str, *, lock: bool = False) -> Agent:
        """An agent by id.

        ``lock=True`` inside ``store.transaction()`` holds the agent until the
        transaction ends, so a read-modify-write of it cannot lose a change.
        """
        if lock:
            with self._core.write("locking an agent") as conn:
                return _to_agent(self._get_row(conn, t, agent_id, for_update=True))
        with self._core.read() as conn:
            return _to_agent(self._get_row(conn, t, agent_id))

    def update(
        self,
        agent_id: str,
        *,
        expected_version: int | None = None,
        model: str = UNSET,
        name: str | None = UNSET,
        description: str | None = UNSET,
        instructions: str | None = UNSET,
        tools: list[dict[str, Any]] = UNSET,
        metadata: dict[str, str] = UNSET,
        extra: dict[str, Any] = UNSET,
    ) -> Agent:
        """Change the given fields; with ``expected_version``, only if nobody changed it since."""
        changes: dict[str, Any] = {}
        if model is not UNSET:
            changes["model"] = require_str(model, "model")
        if name is not UNSET:
            changes["name"] = opt_text(name, "name", 256)
        if description is not UNSET:
            changes["description"] = opt_text(description, "description", 512)
        if instructions is not UNSET:
            changes["instructions"] = opt_text(instructions, "instructions", 256_000)
        if tools is not UNSET:
            changes["tools"] = check_tools(tools)
        if metadata is not UNSET:
            changes["metadata"] = check_metadata(metadata)
        if extra is not UNSET:
            changes["extra"] = check_object(extra, "extra")
        with self._core.write("updating an agent") as conn:
            return _to_agent(self._update_versioned(conn, t, agent_id, expected_version, changes))

    def delete(self, agent_id: str) -> None:
        """Delete an agent; its runs and usage keep their ``agent_id``."""
        with self._core.write("deleting an agent") as conn:
            result = conn.execute(
                sa.delete(t).where(t.c.tenant_id == self.tenant_id, t.c.id == agent_id)
            )
            if result.rowcount == 0:
                raise NotFound("agent", agent_id)

    def list(
        self,
        *,
        name: str | None = None,
        model: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
    ) -> Page[Agent]:
        """Agents, newest first by default; ``name`` / ``model`` match exactly, ``metadata``
        pairs must all be present, ``created_after`` / ``created_before`` bound the creation time.
        """
        where: list[sa.ColumnElement[bool]] = []
        if name is not None:
            where.append(t.c.name == opt_text(name, "name", 256))
        if model is not None:
            where.append(t.c.model == require_str(model, "model"))
        for key, value in check_metadata(metadata, "metadata").items():
            where.append(t.c.metadata[key].as_string() == value)
        where += time_range(t.c.created_at, created_after, created_before)
        return self._page(t, where, _to_agent, limit=limit, after=after, before=before, order=order)
