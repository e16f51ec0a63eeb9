"""In-process wake-ups for the readers of a run's events.

The run engine persists every event before announcing it; readers (SSE
streams) read the events table. So that a stream served by the process that
runs the run sees new events at once, :func:`agentkeep.runner.ops.emit`
registers :func:`notify` for the run as an after-commit hook of the writing
transaction (``store.after_commit``): the wake-up happens once the events are
committed, never before, and never for a transaction that rolled back.
Readers in other processes fall back to their poll interval.

Readers that are not tied to one run (the Responses API's streams, the
dashboard's run timelines) use the process-wide channel instead:
:func:`generation` before a read, :func:`wait` after it; every
:func:`notify` wakes them.

A reader subscribes to its run (:func:`subscribe`) before its first read and
clears the subscription before each read, so a notification that lands
between a read and the wait is not lost; only the readers of the run that was
written are woken, so many concurrent streams do not all read again on every
commit of any run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

__all__ = ["Subscription", "generation", "notify", "subscribe", "wait"]

_lock = threading.Lock()
_subscriptions: dict[str, set[Subscription]] = {}
# Readers not tied to one run (Responses streams, dashboard timelines): woken by every notify().
_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_generation = 0


class Subscription:
    """Wake-ups for one run, for a reader on the running event loop."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def clear(self) -> None:
        """Forget earlier wake-ups: call before reading."""
        self._event.clear()

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up since the last :meth:`clear`, at most ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed
            self._loop.call_soon_threadsafe(self._event.set)


@contextlib.contextmanager
def subscribe(key: str) -> Iterator[Subscription]:
    """Receive the wake-ups of run ``key`` while the block runs (on an event loop)."""
    sub = Subscription(key)
    with _lock:
        _subscriptions.setdefault(key, set()).add(sub)
    try:
        yield sub
    finally:
        with _lock:
            subs = _subscriptions.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del _subscriptions[key]


def notify(*keys: str) -> None:
    """Wake the readers of runs ``keys`` and the process-wide waiters; from any thread."""
    global _generation
    with _lock:
        _generation += 1
        subs = [s for key in keys for s in _subscriptions.get(key, ())]
        waiters = list(_waiters)
    for sub in subs:
        sub._wake()
    for loop, event in waiters:
        with contextlib.suppress(RuntimeError):  # loop closed
            loop.call_soon_threadsafe(event.set)


def generation() -> int:
    """A counter that :func:`notify` increments."""
    return _generation


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
