"""In-process wake-ups for event readers.

The run engine persists every event before announcing it; readers (SSE
streams) poll the events table. So that a stream served by the process that
runs the run sees new events at once, the engine calls :func:`notify` after
each commit and readers wait on :func:`wait` between polls. Readers in other
processes fall back to their poll interval (PostgreSQL or SQLite alike).

A reader takes :func:`generation` before it polls and passes it to
:func:`wait`, so a notification that lands in between is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["generation", "notify", "wait"]

_lock = threading.Lock()
_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_generation = 0


def generation() -> int:
    """A counter that :func:`notify` increments."""
    return _generation


def notify() -> None:
    """Wake every reader waiting in :func:`wait` (callable from any thread)."""
    global _generation
    with _lock:
        _generation += 1
        waiters = list(_waiters)
    for loop, event in waiters:
        with contextlib.suppress(RuntimeError):  # loop closed
            loop.call_soon_threadsafe(event.set)


async def wait(timeout: float, since: int | None = None) -> bool:
    """Wait for :func:`notify` (after generation ``since``) or ``timeout`` seconds."""
    entry = (asyncio.get_running_loop(), asyncio.Event())
    with _lock:
        if since is not None and since != _generation:
            return True
        _waiters.add(entry)
    try:
        await asyncio.wait_for(entry[1].wait(), timeout)
        return True
    except TimeoutError:
        return False
    finally:
        with _lock:
            _waiters.discard(entry)
