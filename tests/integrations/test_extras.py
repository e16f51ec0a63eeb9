"""Importing an integration without its framework names the extra to install."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

INTEGRATIONS = {
    "agentkeep.integrations.adk": ("google.adk.sessions", "adk"),
    "agentkeep.integrations.langchain": ("langchain_core.chat_history", "langchain"),
    "agentkeep.integrations.langgraph": ("langgraph.checkpoint.base", "langgraph"),
    "agentkeep.integrations.openai_agents": ("agents", "openai-agents"),
}


@pytest.mark.parametrize("module", sorted(INTEGRATIONS))
def test_missing_framework_names_the_extra(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    framework, extra = INTEGRATIONS[module]
    monkeypatch.setitem(sys.modules, framework, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=rf"pip install 'agentkeep\[{extra}\]'"):
        importlib.import_module(module)


def test_agentkeep_itself_imports_no_framework() -> None:
    code = "import agentkeep, sys; print(sorted(m for m in sys.modules if m.startswith(('langgraph', 'agents', 'google.adk', 'langchain'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
