"""One router per resource; each handler validates, calls the store and converts to the wire.

A handler returns its wire object as a ``JSONResponse``: the object holds JSON
values already, and a dict returned to FastAPI is walked through
``jsonable_encoder`` first (for a page of 20 messages that walk was a quarter
of the service's CPU: 137 to 207 list requests a second, 32 clients, SQLite).
The handlers that set a header through FastAPI's ``response`` parameter (an
ETag, a poll hint) and those whose return annotation is the response model
(``dict[str, Any]``, which FastAPI encodes with pydantic) return the dict.
"""
