"""The README is tested: its Python examples run, its commands exist.

The ```python blocks run in order in one namespace (a tour that builds on
itself) against ``memory://``; a block whose info string says ``notest`` is
skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentkeep.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [
        body
        for info, body in FENCE.findall(README)
        if info.split()[:1] == [language] and "notest" not in info
    ]


def test_python_examples_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AGENTKEEP_DATABASE_URL", "DATABASE_URL", "AGENTKEEP_DURABILITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert len(blocks) >= 8
    namespace: dict[str, object] = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        assert "memory://" in block or i > 0, "the tour starts with a memory:// store"
        code = compile(block, f"README.md python block {i + 1}", "exec")
        exec(code, namespace)


def test_setup_commands_are_make_run_and_make_test() -> None:
    shell = "\n".join(_blocks("sh"))
    assert "make run" in shell
    assert "make test" in shell
    assert "make coverage" in shell
    makefile = (ROOT / "Makefile").read_text()
    for target in ("install", "run", "test", "coverage", "lint", "bench"):
        assert re.search(rf"^{target}:.*## ", makefile, re.MULTILINE), target


def _commands(*group: str) -> list[str]:
    result = CliRunner().invoke(app, [*group, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    section = result.stdout.split("Commands")[1]
    return re.findall(r"^  (\w[\w-]*)\s", section, re.MULTILINE)


def test_every_cli_command_is_documented() -> None:
    top = _commands()
    assert {"db", "stats", "serve", "keys"} <= set(top)
    documented = set(re.findall(r"^agentkeep ([\w-]+(?: [\w-]+)?)", README, re.MULTILINE))
    words = {d.split()[0] for d in documented} | documented
    for command in top:
        assert command in words, f"`agentkeep {command}` is not in the README"
    for group in ("db", "keys"):
        for sub in _commands(group):
            assert f"agentkeep {group} {sub}" in README, f"`agentkeep {group} {sub}`"
