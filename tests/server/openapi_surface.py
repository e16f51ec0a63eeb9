"""The published API surface of the service, as the OpenAPI snapshot tests compare it.

Each operation is reduced to what a client depends on: summary, parameters
(``*`` = required), request body model and its fields, response statuses and
whether it needs a key. A test keeps the operations it owns and compares them
with a committed JSON snapshot; ``AGENTKEEP_UPDATE_SNAPSHOT=1`` rewrites the
snapshot after an intended change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkeep.config import Settings
from agentkeep.server import create_app


def api_surface(keep: Callable[[str], bool]) -> dict[str, Any]:
    """``{"METHOD /path": {...}}`` for every operation whose path ``keep`` accepts."""
    document = create_app(Settings()).openapi()
    schemas = document["components"]["schemas"]
    surface: dict[str, Any] = {}
    for path, operations in sorted(document["paths"].items()):
        if not keep(path):
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


def assert_matches_snapshot(surface: dict[str, Any], snapshot: Path, test_file: str) -> None:
    """``surface`` equals the committed ``snapshot`` (rewritten first when asked to)."""
    if os.environ.get("AGENTKEEP_UPDATE_SNAPSHOT"):
        snapshot.write_text(json.dumps(surface, indent=2, sort_keys=True) + "\n")
    assert surface == json.loads(snapshot.read_text()), (
        f"the API surface in {snapshot.name} changed; if intended, regenerate with "
        f"AGENTKEEP_UPDATE_SNAPSHOT=1 .venv/bin/pytest {test_file}"
    )
