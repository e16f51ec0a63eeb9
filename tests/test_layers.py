"""Arrows point down: a layer never imports one above it (DESIGN.md, "Layers").

Read from the source with ``ast``, so a lazy import inside a function counts
too. ``wire`` is below both ``server`` and ``runner``; ``runner`` never
imports ``server``; ``store`` and ``models`` import nothing above them.
``ui`` and ``server`` sit side by side: the server mounts the dashboard
(``server.app`` imports ``ui``), so ``ui`` never imports ``server``; what both
need to sign callers in (API keys) is in the store (``store.api_keys``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agentkeep"

# package -> the agentkeep packages it must never import
FORBIDDEN = {
    "models": ("store", "runner", "server", "wire", "lifecycle", "integrations", "ui", "cli"),
    "store": ("runner", "server", "wire", "lifecycle", "integrations", "ui", "cli"),
    "wire": ("runner", "server", "lifecycle", "integrations", "ui", "cli"),
    "runner": ("server", "ui", "cli"),
    "lifecycle": ("runner", "server", "ui", "cli"),
    "ui": ("server", "cli", "integrations", "compat"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "agentkeep" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def test_dashboard_reads_through_the_store_and_only_listens_to_the_runner() -> None:
    """``ui`` builds its pages on the public Store API; of the runner it uses only the
    in-process wake-ups of the live run view, and it never imports the CLI."""
    offenders = []
    for path in sorted((PACKAGE / "ui").rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[:2] == ["agentkeep", "runner"] and name != "agentkeep.runner.notify":
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
            if parts[:2] == ["agentkeep", "cli"] or name.startswith("agentkeep.store._"):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def test_the_servers_state_is_what_the_dashboard_reads() -> None:
    """The dashboard finds the running service through a protocol, not an import of it."""
    from agentkeep import connect
    from agentkeep.config import Settings
    from agentkeep.server.deps import ServiceState
    from agentkeep.ui.web import Service

    with connect("memory://") as store:
        assert isinstance(ServiceState(settings=Settings(), store=store), Service)
        assert not isinstance(object(), Service)
