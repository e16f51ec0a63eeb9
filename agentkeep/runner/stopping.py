"""Whether this process has begun to stop serving.

``agentkeep serve`` marks it when uvicorn begins its shutdown, before it
waits for the requests in flight (``AGENTKEEP_SHUTDOWN_GRACE_SECONDS``) and
then cancels those still running. A streamed response cut by that cancel was
cut by the stop, not by its client: :class:`~agentkeep.runner.response_run.ResponseRun`
stores that as its reason, in a write it :func:`keep` s, and the service
:func:`settle` s those writes before it closes its store.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = ["begin", "begun", "keep", "settle"]

_begun = threading.Event()
_kept: set[asyncio.Future[Any]] = set()


def begin() -> None:
    """The process stops serving: requests cut from now on were cut by the stop."""
    _begun.set()


def begun() -> bool:
    return _begun.is_set()


def keep(write: asyncio.Future[Any]) -> None:
    """A write that must land before the store closes (a cut response's end)."""
    _kept.add(write)
    write.add_done_callback(_kept.discard)


async def settle(timeout: float) -> int:
    """Wait (at most ``timeout`` seconds) for the kept writes of this event loop; how many
    were still running after it."""
    loop = asyncio.get_running_loop()
    running = [w for w in _kept if w.get_loop() is loop and not w.done()]
    if not running:
        return 0
    _, late = await asyncio.wait(running, timeout=timeout)
    return len(late)
