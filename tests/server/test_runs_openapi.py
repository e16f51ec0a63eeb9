"""The runs routes' API surface (paths, parameters, bodies) matches the committed snapshot.

Regenerate after an intended change with
``AGENTKEEP_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/server/test_runs_openapi.py`` and
commit ``test_runs_openapi.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openapi_surface import api_surface, assert_matches_snapshot

SNAPSHOT = Path(__file__).with_name("test_runs_openapi.json")


def _surface() -> dict[str, Any]:
    return api_surface(lambda path: "/runs" in path)


def test_runs_surface_matches_snapshot() -> None:
    assert_matches_snapshot(_surface(), SNAPSHOT, "tests/server/test_runs_openapi.py")


def test_every_runs_endpoint_is_there() -> None:
    assert set(_surface()) == {
        "POST /v1/threads/runs",
        "GET /v1/threads/{thread_id}/runs",
        "POST /v1/threads/{thread_id}/runs",
        "GET /v1/threads/{thread_id}/runs/{run_id}",
        "POST /v1/threads/{thread_id}/runs/{run_id}",
        "POST /v1/threads/{thread_id}/runs/{run_id}/cancel",
        "GET /v1/threads/{thread_id}/runs/{run_id}/events",
        "GET /v1/threads/{thread_id}/runs/{run_id}/stream",
        "GET /v1/threads/{thread_id}/runs/{run_id}/steps",
        "GET /v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
        "POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
    }
