"""The package root exports a sorted ``__all__`` whose every name exists (as httpx guards it)."""

from __future__ import annotations

import agentkeep


def test_all_is_sorted() -> None:
    assert agentkeep.__all__ == sorted(agentkeep.__all__)


def test_all_names_exist() -> None:
    missing = [name for name in agentkeep.__all__ if not hasattr(agentkeep, name)]
    assert missing == []


def test_no_duplicates() -> None:
    assert len(set(agentkeep.__all__)) == len(agentkeep.__all__)


def test_public_names_are_exported() -> None:
    public = {
        name
        for name, value in vars(agentkeep).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("agentkeep")
    }
    assert public <= set(agentkeep.__all__)
