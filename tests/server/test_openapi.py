"""The published API surface (paths, parameters, bodies, statuses) matches the committed snapshot.

Regenerate after an intended change with
``AGENTKEEP_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/server/test_openapi.py`` and
commit ``openapi_snapshot.json``. Run routes (RUNNER's) are left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentkeep.config import Settings
from agentkeep.server import create_app

SNAPSHOT = Path(__file__).with_name("openapi_snapshot.json")


def _surface() -> dict[str, Any]:
    document = create_app(Settings()).openapi()
    schemas = document["components"]["schemas"]
    surface: dict[str, Any] = {}
    for path, operations in sorted(document["paths"].items()):
        if "/runs" in path:
            continue
        for method, op in sorted(operations.items()):
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref") or (
                body.get("schema", {}).get("anyOf", [{}])[0].get("$ref")
            )
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
                "statuses": sorted(op.get("responses", {})),
                "auth": bool(op.get("security")),
            }
    return surface


def test_openapi_surface_matches_snapshot() -> None:
    surface = _surface()
    if os.environ.get("AGENTKEEP_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(surface, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert surface == expected, (
        "the API surface changed; if intended, regenerate with "
        "AGENTKEEP_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/server/test_openapi.py"
    )
