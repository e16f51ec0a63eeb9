"""In-process wake-ups for the readers of a run's events.

The run engine persists every event before announcing it; readers (SSE
streams) read the events table. So that a stream served by the process that
runs the run sees new events at once, :func:`agentkeep.runner.ops.emit`
registers :func:`notify` for the run as an after-commit hook of the writing
transaction (``store.after_commit``): the wake-up happens once the events are
committed, never before, and never for a transaction that rolled back.
Readers in other processes are woken by the database's notifications where it
has them (:mod:`agentkeep.server.remote_events`), else at their poll interval.

Readers that are not tied to one run (the Responses API's streams, the
dashboard's run timelines) use the process-wide channel instead:
:func:`generation` before a read, :func:`wait` after it; every
:func:`notify` wakes them.

A reader subscribes to its run (:func:`subscribe`) before its first read and
clears the subscription before each read, so a notification that lands
between a read and the wait is not lost; only the readers of the run that was
written are woken, so many concurrent streams do not all read again on every
commit of any run.

The run engine also hands the committed events to their run's readers
(:func:`hand_over`), with the bookmark of the run's last event before them,
read while the writing transaction was the tenant's only event writer
(``Events.append_many_linked``). A reader that has every event of the run up
to that bookmark takes the new ones as they are (:meth:`Subscription.take`)
instead of reading them back from the database; any other reader (one that
missed a write of another process, or was woken without events) reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence

from agentkeep.models import Event

__all__ = [
    "Subscription",
    "generation",
    "hand_over",
    "notify",
    "notify_all",
    "subscribe",
    "wait",
    "watched",
]

#: Hand-overs a reader keeps at most between two looks; past it (a client that does
#: not read), they are dropped and the reader reads from the database instead.
MAX_HANDED = 256

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
        # Handed-over events since the last clear(): (bookmark of the run's event before, events).
        self._handed: list[tuple[int, Sequence[Event]]] = []
        self._unknown = False  # woken for events that were not handed over

    def clear(self) -> None:
        """Forget earlier wake-ups and handed-over events: call before reading."""
        self._event.clear()
        self._handed.clear()
        self._unknown = False

    def take(self, after: int) -> list[Event] | None:
        """The handed-over events after bookmark ``after``, if they are all of the run's.

        None when they may not be: a wake-up came without its events, or one
        hand-over follows an event this reader has not seen. Then read.
        """
        if self._unknown or not self._handed:
            return None
        out: list[Event] = []
        for before, events in self._handed:
            if events[-1].bookmark <= after:
                continue  # read already
            if before > after:
                return None
            for event in events:
                if event.bookmark > after:
                    out.append(event)
                    after = event.bookmark
        self._handed.clear()
        self._event.clear()
        return out

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up since the last :meth:`clear`, at most ``timeout`` seconds."""
        if self._event.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):  # no task per wait, as wait_for would make
                await self._event.wait()
            return True
        except TimeoutError:
            return False

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed
            self._loop.call_soon_threadsafe(self._woken, None, ())

    def _hand(self, before: int, events: Sequence[Event]) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed
            self._loop.call_soon_threadsafe(self._woken, before, events)

    def _woken(self, before: int | None, events: Sequence[Event]) -> None:
        if before is None or len(self._handed) >= MAX_HANDED:
            self._unknown = True
            self._handed.clear()
        else:
            self._handed.append((before, events))
        self._event.set()


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
    _wake_waiters(waiters)


def notify_all() -> None:
    """:func:`notify` for every run with readers in this process."""
    with _lock:
        keys = list(_subscriptions)
    notify(*keys)


def watched(key: str) -> bool:
    """Whether run ``key`` has readers in this process (worth handing its events to)."""
    return key in _subscriptions


def hand_over(events: Sequence[Event], before: Mapping[str, int]) -> None:
    """:func:`notify` for committed ``events``, handing each run's to its readers.

    ``before[run_id]``: the bookmark of the run's last event before these (see
    ``LinkedEvents``); the readers of a run not in it are only woken.
    """
    global _generation
    by_run: dict[str, list[Event]] = {}
    for event in events:
        if event.run_id is not None:
            by_run.setdefault(event.run_id, []).append(event)
    with _lock:
        _generation += 1
        subs = [(s, key) for key in by_run for s in _subscriptions.get(key, ())]
        waiters = list(_waiters)
    for sub, key in subs:
        if key in before:
            sub._hand(before[key], by_run[key])
        else:
            sub._wake()
    _wake_waiters(waiters)


def _wake_waiters(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
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
