"""One router per resource; each handler validates, calls the store and converts to the wire.

A handler returns its wire object as a ``JSONResponse``: the object holds JSON
values already, and a dict returned to FastAPI is walked through
``jsonable_encoder`` first (for a page of 20 messages that walk was a quarter
of the service's CPU: 137 to 207 list requests a second, 32 clients, SQLite).
An object with an ETag goes out the same way, its header on it
(``versions.versioned``). The handlers whose return annotation is their
response model (``dict[str, Any]``, which FastAPI encodes with pydantic: the
runs' list, retrieve, modify and cancel, and their steps) return the dict, so
that the OpenAPI document keeps those schemas.
"""
