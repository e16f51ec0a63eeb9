"""Prefixed, time-sortable identifiers (``msg_01J...``).

An id is a prefix and 26 Crockford base32 characters: 48 bits of milliseconds
since the epoch and 80 bits that are random at the start of each millisecond
and incremented within it, so ids made by one process sort in creation order.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["PREFIXES", "new_id"]

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
}

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A new id ``{prefix}_{26 chars}``, sortable by creation time."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        value = (ms << 80) | _last_rand
    return f"{prefix}_{_encode(value, 26)}"
