"""Events: to be implemented."""

from __future__ import annotations

from agentkeep.store._base import Resource

__all__ = ["Events"]


class Events(Resource):
    kind = "event"
