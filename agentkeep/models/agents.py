from __future__ import annotations

from datetime import datetime
from typing import Any

from agentkeep.models.common import Model

__all__ = ["Agent"]


class Agent(Model):
    """An agent (an OpenAI assistant): model, instructions and tools."""

    id: str
    tenant_id: str
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: list[dict[str, Any]]
    metadata: dict[str, str]
    extra: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
