"""Operation counts and latencies of one store, kept in the process (KODE's ``getMetrics``).

Every database operation of a store goes through its ``Core`` (a read, a
write, a message operation's read or write step, sync or async) and is
counted here under its kind (``read`` / ``write``) and its label (what it
does: ``"appending a message"``, ``"creating an agent"``; plain reads are
``"read"``). A count is two clock reads and a few additions under a lock;
the latency percentiles come from the last ``WINDOW`` operations of each
kind or label, so memory stays bounded.

The counters are per process and per ``connect()``: another process (a
second service worker) has its own, and tenant views of one store share
theirs. They start at zero when the store is opened (``since``).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

__all__ = ["WINDOW", "OperationCounter", "StoreCounters"]

WINDOW = 1024
"""How many recent latencies per kind or label the percentiles are computed over."""


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (as ``percentile_cont``)."""
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class OperationCounter:
    """Count, errors, total and maximum latency, and a window of recent latencies."""

    __slots__ = ("count", "errors", "max_s", "recent", "total_s")

    def __init__(self, window: int) -> None:
        self.count = 0
        self.errors = 0
        self.total_s = 0.0
        self.max_s = 0.0
        self.recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float, ok: bool) -> None:
        self.count += 1
        if not ok:
            self.errors += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds
        self.recent.append(seconds)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.recent)
        ms = 1000.0
        return {
            "count": self.count,
            "errors": self.errors,
            "mean_ms": round(self.total_s / self.count * ms, 3) if self.count else None,
            "p50_ms": round(_percentile(ordered, 0.50) * ms, 3) if ordered else None,
            "p95_ms": round(_percentile(ordered, 0.95) * ms, 3) if ordered else None,
            "max_ms": round(self.max_s * ms, 3) if self.count else None,
        }


class StoreCounters:
    """The operation counters of one store (one ``Core``)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._lock = threading.Lock()
        self.since = datetime.now(UTC)
        self.pid = os.getpid()
        self._kinds = {"read": OperationCounter(window), "write": OperationCounter(window)}
        self._labels: dict[str, OperationCounter] = {}

    def add(self, kind: str, label: str, seconds: float, ok: bool) -> None:
        with self._lock:
            self._kinds[kind].add(seconds, ok)
            counter = self._labels.get(label)
            if counter is None:
                counter = self._labels[label] = OperationCounter(self._window)
            counter.add(seconds, ok)

    @contextmanager
    def timing(self, kind: str, label: str) -> Iterator[None]:
        """Count the block as one ``kind`` operation called ``label`` (failed if it raises)."""
        started = perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.add(kind, label, perf_counter() - started, ok)

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The per-kind and per-label summaries, read under the lock."""
        with self._lock:
            kinds = {name: c.summary() for name, c in self._kinds.items()}
            labels = {name: c.summary() for name, c in sorted(self._labels.items())}
        return kinds, labels
