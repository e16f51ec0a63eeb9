"""Named locks: PostgreSQL advisory locks, a lease row on SQLite. To be implemented."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from agentkeep.store._core import Core

__all__ = ["hold_lock"]


@contextmanager
def hold_lock(
    core: Core, tenant_id: str, name: str, *, ttl: float = 30.0, wait: float = 10.0
) -> Iterator[None]:
    raise NotImplementedError
    yield
