from __future__ import annotations

from datetime import datetime
from typing import Any

from agentkeep.models.common import Model

__all__ = ["Snapshot", "StateDoc"]


class Snapshot(Model):
    """A labelled point in a session's history (its ``seq``) with state."""

    id: str
    tenant_id: str
    session_id: str
    seq: int
    label: str | None
    state: dict[str, Any]
    metadata: dict[str, str]
    created_at: datetime


class StateDoc(Model):
    """A keyed JSON document (todos, windows, caches, ...) with a version."""

    tenant_id: str
    namespace: str
    key: str
    value: Any
    version: int
    created_at: datetime
    updated_at: datetime
