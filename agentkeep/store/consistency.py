"""The consistency check: tool calls without results, counts that disagree. To be implemented."""

from __future__ import annotations

from agentkeep.models import ConsistencyReport
from agentkeep.store._core import Core

__all__ = ["check_consistency"]


def check_consistency(core: Core, tenant_id: str) -> ConsistencyReport:
    raise NotImplementedError
