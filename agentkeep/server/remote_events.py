"""Wake-ups for the events other processes commit: one LISTEN connection per service process.

A process wakes the readers of its own runs' events itself, as its writes
commit (:mod:`agentkeep.runner.notify`). Events that another process writes
(its worker took the run, or a client's tool outputs went to it) reach this
process's readers through the tenant's events channel on PostgreSQL: each
event write notifies it with a :class:`~agentkeep.store.events.Notice` naming
the writing process and the runs written. One thread per process listens to
the channels of the tenants whose runs are streamed here, skips the
notices of this process's own writes, and wakes only the readers of the runs
a notice names. A write of a response's stream events (``store.responses``)
names no run: it wakes only the readers not tied to one run, the Responses
streams among them.

A stream that is told of other processes' writes this way polls for them
rarely (``LISTENING_POLL_S``, against a lost notification); it relies on the
notices only once its own last read of the database began after its tenant's
channel was listened to (:meth:`RemoteEvents.since`), since a write committed
before that could not be notified here. Without LISTEN (SQLite, or while the
connection is down) streams poll at their setting.
"""

from __future__ import annotations

import logging
import threading
import time

from agentkeep.runner import notify
from agentkeep.store import Store
from agentkeep.store.events import Notice, events_channel, origin

__all__ = ["LISTENING_POLL_S", "MAX_CHANNELS", "RemoteEvents"]

log = logging.getLogger("agentkeep.server")

LISTENING_POLL_S = 1.0
"""How often a stream that is told of other processes' writes still looks for them."""
MAX_CHANNELS = 10_000
"""Tenants' channels one process listens to at most; streams of further tenants poll."""
WAIT_S = 0.2
"""The longest one wait for notifications lasts: a channel asked for is listened to within it."""


class RemoteEvents:
    """The process's listener of its streamed tenants' events channels (a daemon thread)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._since: dict[str, float] = {}  # channel -> when it was listened to, while it is
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="agentkeep-remote-events", daemon=True
        )
        self._thread.start()

    def since(self, tenant_id: str) -> float | None:
        """Listen to the tenant's events channel; since when (``time.monotonic()``) every
        notice of it wakes this process's readers, or None while not yet (or not at all)."""
        channel = events_channel(tenant_id)
        with self._lock:
            if channel not in self._wanted and len(self._wanted) < MAX_CHANNELS:
                self._wanted.add(channel)
            return self._since.get(channel)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        mine = origin()
        listener = None
        try:
            while not self._stop.is_set():
                with self._lock:
                    wanted = [c for c in self._wanted if c not in self._since]
                if listener is None:
                    if not wanted:
                        self._stop.wait(WAIT_S)
                        continue
                    listener = self._store._core.dialect.listen(wanted[0])
                for channel in wanted:
                    listener.add(channel)
                received = listener.receive(WAIT_S)
                now = time.monotonic()
                if received is None:  # not listening (now): what it misses is unknown
                    with self._lock:
                        lost, self._since = bool(self._since), {}
                    if lost:
                        log.warning(
                            "lost the connection that listens for other processes' events; "
                            "streams look for them every AGENTKEEP_STREAM_POLL_SECONDS until it "
                            "is made again"
                        )
                    continue
                with self._lock:
                    for channel in wanted:  # all of them again after the connection was lost
                        self._since[channel] = now
                if wanted:
                    # Newly listened to (or again): what was written before could not be
                    # notified, so every reader reads once, and its waits grow long after.
                    notify.notify_all()
                self._dispatch(received, mine)
        except Exception:  # never takes the process down: streams poll instead
            log.exception("listening to other processes' events failed; streams poll instead")
            with self._lock:
                self._since.clear()
        finally:
            if listener is not None:
                listener.close()

    @staticmethod
    def _dispatch(received: list[tuple[str, str]], mine: str) -> None:
        """Wake the readers of the runs other processes wrote (all, for a notice that
        does not name them); their own readers not tied to one run too."""
        runs: set[str] = set()
        remote = False
        for _, payload in received:
            notice = Notice.parse(payload)
            if notice is not None and notice.origin == mine:
                continue  # this process's own write: its readers were woken by it
            if notice is None or notice.runs is None:
                notify.notify_all()
                return
            remote = True
            runs.update(notice.runs)
        if remote:
            notify.notify(*runs)
