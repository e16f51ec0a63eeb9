"""ToolCalls: to be implemented."""

from __future__ import annotations

from agentkeep.store._base import Resource

__all__ = ["ToolCalls"]


class ToolCalls(Resource):
    kind = "tool_call"
