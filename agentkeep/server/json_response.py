"""The service's ``JSONResponse``: Starlette's, its body written by :func:`agentkeep.wire.encoding.dumps`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse as _StarletteJSONResponse

from agentkeep.wire.encoding import dumps

__all__ = ["JSONResponse"]


class JSONResponse(_StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)
