"""The runs routes' API surface (paths, parameters, bodies) matches the committed snapshot.

Regenerate after an intended change with
``AGENTKEEP_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/server/test_runs_openapi.py`` and
commit ``test_runs_openapi.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentkeep.config import Settings
from agentkeep.server import create_app

SNAPSHOT = Path(__file__).with_name("test_runs_openapi.json")


def _surface() -> dict[str, Any]:
    document = create_app(Settings()).openapi()
    schemas = document["components"]["schemas"]
    surface: dict[str, Any] = {}
    for path, operations in sorted(document["paths"].items()):
        if "/runs" not in path:
            continue
        for method, op in sorted(operations.items()):
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref")
            name = ref.rsplit("/", 1)[1] if ref else None
            surface[f"{method.upper()} {path}"] = {
                "summary": op.get("summary"),
                "parameters": sorted(
                    f"{p['in']}:{p['name']}{'*' if p.get('required') else ''}"
                    for p in op.get("parameters", [])
                ),
                "body": name,
                "body_fields": sorted(
                    f"{k}{'*' if k in schemas[name].get('required', []) else ''}"
                    for k in schemas[name].get("properties", {})
                )
                if name
                else None,
            }
    return surface


def test_runs_surface_matches_snapshot() -> None:
    surface = _surface()
    if os.environ.get("AGENTKEEP_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(surface, indent=2, sort_keys=True) + "\n")
    assert surface == json.loads(SNAPSHOT.read_text()), (
        "the runs API surface changed; if intended, regenerate with "
        "AGENTKEEP_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/server/test_runs_openapi.py"
    )


def test_every_runs_endpoint_is_there() -> None:
    assert set(_surface()) == {
        "POST /v1/threads/runs",
        "GET /v1/threads/{thread_id}/runs",
        "POST /v1/threads/{thread_id}/runs",
        "GET /v1/threads/{thread_id}/runs/{run_id}",
        "POST /v1/threads/{thread_id}/runs/{run_id}",
        "POST /v1/threads/{thread_id}/runs/{run_id}/cancel",
        "GET /v1/threads/{thread_id}/runs/{run_id}/events",
        "GET /v1/threads/{thread_id}/runs/{run_id}/steps",
        "GET /v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
        "POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
    }
