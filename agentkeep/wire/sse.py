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

__all__ = ["KEEPALIVE"]

KEEPALIVE = b": keep-alive\n"
