from __future__ import annotations

from datetime import datetime
from typing import Any

from agentkeep.models.common import Model

__all__ = ["Session"]


class Session(Model):
    """A session: a thread, a conversation, a chat. Messages hang off it."""

    id: str
    tenant_id: str
    kind: str
    agent_id: str | None
    user_id: str | None
    title: str | None
    metadata: dict[str, str]
    traits: dict[str, Any]
    state: dict[str, Any]
    extra: dict[str, Any]
    parent_id: str | None
    fork_seq: int | None
    message_count: int
    last_seq: int
    last_activity_at: datetime
    version: int
    created_at: datetime
    updated_at: datetime
