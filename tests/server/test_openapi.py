"""The published API surface (paths, parameters, bodies, statuses) matches the committed snapshot.

Regenerate after an intended change with
``AGENTKEEP_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/server/test_openapi.py`` and
commit ``openapi_snapshot.json``. Run routes (RUNNER's) are left out.
"""

from __future__ import annotations

from pathlib import Path

from openapi_surface import api_surface, assert_matches_snapshot

SNAPSHOT = Path(__file__).with_name("openapi_snapshot.json")


def test_openapi_surface_matches_snapshot() -> None:
    surface = api_surface(lambda path: "/runs" not in path)
    assert_matches_snapshot(surface, SNAPSHOT, "tests/server/test_openapi.py")
