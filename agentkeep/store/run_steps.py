"""RunSteps: to be implemented."""

from __future__ import annotations

from agentkeep.store._base import Resource

__all__ = ["RunSteps"]


class RunSteps(Resource):
    kind = "run_step"
