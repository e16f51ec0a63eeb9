"""StateDocs: to be implemented."""

from __future__ import annotations

from agentkeep.store._base import Resource

__all__ = ["StateDocs"]


class StateDocs(Resource):
    kind = "state_doc"
