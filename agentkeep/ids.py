"""Prefixed, time-sortable identifiers (``msg_019a4f...``).

An id is a prefix and 32 hex digits: 48 bits of milliseconds since the epoch
and 80 bits that are random at the start of each millisecond and incremented
within it, so ids made by one process sort in creation order. (Hex, not
base32: one format call, where a base32 encoder cost microseconds per id.)
"""

from __future__ import annotations

import os
import random
import threading
import time

__all__ = ["PREFIXES", "id_at", "new_id", "new_ids"]

PREFIXES = {
    "agent": "asst",
    "session": "sess",
    "thread": "thread",
    "conversation": "conv",
    "message": "msg",
    "item": "msg",
    "run": "run",
    "step": "step",
    "tool_call": "call",
    "usage": "usage",
    "snapshot": "snap",
    "event": "evt",
    "api_key": "key",
    "backup": "bak",
    "erasure": "erasure",
}

_MASK = (1 << 80) - 1
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
# The random start of each millisecond: a generator of our own (an application's
# random.seed() must not make two processes' ids collide), seeded from the OS and
# seeded again in a forked child, which would otherwise repeat its parent's ids.
# Ids are unique and ordered, not secret: no system call per millisecond.
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)
_getrandbits = _random.getrandbits


def new_id(prefix: str) -> str:
    """A new id ``{prefix}_{32 hex digits}``, sortable by creation time."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_rand = _getrandbits(79)
        rand = _last_rand
    return id_at(prefix, ms, rand)


def new_ids(prefix: str, n: int) -> list[str]:
    """``[new_id(prefix) for _ in range(n)]``, taking the clock and the lock once."""
    global _last_ms, _last_rand
    if n <= 0:
        return []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            first = _last_rand + 1
        else:
            _last_ms = ms
            first = _getrandbits(79)
        _last_rand = (first + n - 1) & _MASK
    base = ms << 80
    if n == 1:  # one message appended: no comprehension (a frame of its own)
        return [f"{prefix}_{base | (first & _MASK):032x}"]
    head = prefix + "_"
    return [f"{head}{base | ((first + i) & _MASK):032x}" for i in range(n)]


def id_at(prefix: str, millis: int, entropy: int) -> str:
    """The id made at ``millis`` (ms since the epoch) with 80 bits of ``entropy``.

    For ids of imported records: stable for the same inputs, and sorting by
    their own time among the ids :func:`new_id` makes.
    """
    value = (max(millis, 0) << 80) | (entropy & ((1 << 80) - 1))
    return f"{prefix}_{value:032x}"
