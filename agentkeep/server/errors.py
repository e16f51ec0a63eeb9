"""HTTP errors in OpenAI's envelope: ``{"error": {"message", "type", "param", "code"}}``.

Routes raise :class:`ApiError` or let store errors (``agentkeep.errors``)
through; the handlers installed by :func:`install_error_handlers` map them
once::

    InvalidInput, RequestValidationError   400  invalid_request_error (param = field)
    missing or unknown API key             401  invalid_request_error, invalid_api_key
    NotFound, unknown route                404  invalid_request_error
    Conflict (InvalidTransition, ...)      409  invalid_request_error, conflict
    Conflict of versions                   409  VERSION_CONFLICT, current_version, requested_version
    LockTimeout                            409  invalid_request_error, lock_timeout
    body over AGENTKEEP_MAX_BODY_BYTES     413  invalid_request_error, request_too_large
    StoreUnavailable, SchemaError          503  server_error, database_unavailable, Retry-After
                                                (the driver's text is logged, not answered)
    anything else                          500  server_error (and a log line)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentkeep.errors import (
    AgentkeepError,
    Conflict,
    InvalidInput,
    LockTimeout,
    NotFound,
    SchemaError,
    StoreUnavailable,
)
from agentkeep.server.json_response import JSONResponse

__all__ = [
    "ApiError",
    "BodyTooLarge",
    "error_body",
    "error_response",
    "install_error_handlers",
    "translate_error",
]

log = logging.getLogger("agentkeep.server")

RETRY_AFTER_S = 2
"""``Retry-After`` of a 503 for an unavailable database."""

# Store kinds as the OpenAI API names them.
_KIND_NAMES = {
    "agent": "assistant",
    "agent version": "assistant version",
    "session": "thread",
    "message": "message",
}


class ApiError(Exception):
    """An error answered with ``status`` and OpenAI's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = headers
        self.extra = extra
        """More members of the ``error`` object (a version conflict's versions)."""


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a body past the limit (an HTTPException, so FastAPI passes it on)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the limit of {limit} bytes.")
        self.error = ApiError(
            413,
            f"The request body is larger than the limit of {limit} bytes "
            "(AGENTKEEP_MAX_BODY_BYTES).",
            code="request_too_large",
        )


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The envelope ``{"error": {...}}`` (also the ``data`` of a stream's ``error`` event)."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = error_body(error.message, type=error.type, param=error.param, code=error.code)
    if error.extra:
        body["error"].update(error.extra)
    return JSONResponse(
        body, status_code=error.status, headers={**(error.headers or {}), **(headers or {})}
    )


def translate_error(exc: BaseException) -> ApiError:
    """The :class:`ApiError` for any exception (500 for the unexpected)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidInput):
        message = str(exc)
        if exc.field and message.startswith(f"{exc.field}: "):
            message = f"Invalid '{exc.field}': {message[len(exc.field) + 2 :]}"
        return ApiError(400, message, param=exc.field)
    if isinstance(exc, NotFound):
        kind = _KIND_NAMES.get(exc.kind, exc.kind)
        return ApiError(404, f"No {kind} found with id '{exc.ident}'.")
    if isinstance(exc, LockTimeout):
        return ApiError(409, str(exc), code="lock_timeout")
    if isinstance(exc, Conflict):
        if exc.current_version is not None:
            return ApiError(
                409,
                str(exc),
                param="expected_version",
                code="VERSION_CONFLICT",
                extra={
                    "current_version": exc.current_version,
                    "requested_version": exc.requested_version,
                },
            )
        return ApiError(409, str(exc), code="conflict")
    if isinstance(exc, (StoreUnavailable, SchemaError)):
        # The driver's text names the database host and port: for the log only.
        log.error("database unavailable: %s", exc)
        return ApiError(
            503,
            "The database is unavailable; retry later.",
            type="server_error",
            code="database_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, AgentkeepError):
        log.error("store error: %s", exc, exc_info=exc)
    else:
        log.error("unexpected error: %r", exc, exc_info=exc)
    return ApiError(
        500,
        "The server had an error while processing your request; it has been logged.",
        type="server_error",
    )


# Names pydantic gives the members of a union in an error's location (``content.str``).
_TYPE_TAGS = frozenset(
    (
        "str",
        "int",
        "float",
        "bool",
        "list",
        "dict",
        "none",
        "literal",
        "function-after",
        "function-before",
        "function-wrap",
        "function-plain",
        "tagged-union",
        "nullable",
        "json-or-python",
        "lax-or-strict",
    )
)


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and part.split("[", 1)[0] in _TYPE_TAGS


def _param(loc: Sequence[Any]) -> str | None:
    """``("body", "messages", 0, "content", "str")`` as ``messages[0].content``."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not out:
            continue
        if _is_type_tag(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem of a request that failed validation, as a 400 naming its field."""
    errors = list(exc.errors())
    if not errors:
        return ApiError(400, "Invalid request.")
    first = errors[0]
    loc0 = tuple(first.get("loc", ()))
    if loc0 and _is_type_tag(loc0[-1]):
        # A union: an error inside the member the value's type matched says more.
        top = _param(loc0) or ""
        deeper = [
            e for e in errors if (_param(e.get("loc", ())) or "").startswith((f"{top}[", f"{top}."))
        ]
        if deeper:
            first = deeper[0]
    kind = str(first.get("type", ""))
    loc = tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
    param = _param(loc)
    if kind == "extra_forbidden":
        return ApiError(400, f"Unknown parameter: '{param}'.", param=param)
    if kind == "missing":
        if loc == ("body",):
            return ApiError(400, "The request needs a JSON body.")
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param)
    msg = str(first.get("msg", "is invalid"))
    tags = [
        str(e["loc"][-1])
        for e in errors
        if e.get("loc") and _is_type_tag(e["loc"][-1]) and _param(e["loc"]) == param
    ]
    if len(tags) > 1 and param is not None:
        expected = " or ".join(dict.fromkeys(t.split("[", 1)[0] for t in tags))
        return ApiError(400, f"Invalid type for '{param}': expected {expected}.", param=param)
    if param is None:
        return ApiError(400, f"Invalid request: {msg}.")
    return ApiError(400, f"Invalid '{param}': {msg}.", param=param)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(translate_error(exc))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, BodyTooLarge):
        error = exc.error
    elif exc.status_code == 404:
        error = ApiError(404, f"Invalid URL ({request.method} {request.url.path}).")
    elif exc.status_code == 405:
        error = ApiError(
            405, f"Method {request.method} is not allowed on {request.url.path}.", code=None
        )
    else:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        error = ApiError(exc.status_code, detail)
    return error_response(error, headers=dict(exc.headers) if exc.headers else None)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error a route can raise to the envelope and status (see the module doc)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AgentkeepError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
