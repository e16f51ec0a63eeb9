"""Server-sent events framing shared by every stream the service sends.

A keep-alive is a comment line alone, ``: keep-alive`` and one newline,
never followed by a blank line. A blank line ends an event: after a comment
it dispatches an event with no data, which the SSE specification says to
drop but which clients that remember the last event ``id`` (the official
``openai`` Python client among them) hand over as an event whose empty data
they then fail to parse as JSON. A comment line alone keeps proxies and
clients from timing the connection out and is skipped by every reader.
"""

from __future__ import annotations

from typing import Any

from agentkeep.wire.encoding import dumps

__all__ = ["KEEPALIVE", "event"]

KEEPALIVE = b": keep-alive\n"


def event(kind: str, data: Any, ident: int | None = None, *, sort_keys: bool = False) -> bytes:
    """One event: ``event``, ``data`` (JSON, by ``encoding.dumps``, unless a string) and,
    when given, ``id``; then the blank line that ends it."""
    body = data.encode() if isinstance(data, str) else dumps(data, sort_keys=sort_keys)
    tail = b"\n" if ident is None else b"id: %d\n\n" % ident
    return b"event: " + kind.encode() + b"\ndata: " + body + b"\n" + tail
