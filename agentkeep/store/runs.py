"""Runs: to be implemented."""

from __future__ import annotations

from agentkeep.store._base import Resource

__all__ = ["Runs"]


class Runs(Resource):
    kind = "run"
