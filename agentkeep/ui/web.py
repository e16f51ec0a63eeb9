"""What every dashboard page shares: templates, filters, forms, and errors as HTML pages.

Pages are Jinja2 templates rendered on the server (autoescaped). A route of a
:class:`UiRoute` router answers a store error with an HTML page of the right
status instead of the API's JSON envelope, and a request without a signed-in
visitor with a redirect to the sign-in page.

The dashboard sits beside the server, not on top of it (DESIGN.md, "Layers"):
the server mounts it, and it imports nothing of ``agentkeep.server``. What it
reads of the running service is the :class:`Service` protocol (the server's
``ServiceState`` has it); its errors are its own (:class:`PageError`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from agentkeep.config import Settings
from agentkeep.errors import (
    Conflict,
    InvalidInput,
    LockTimeout,
    NotFound,
    SchemaError,
    StoreUnavailable,
)
from agentkeep.models import Page
from agentkeep.store import Store

__all__ = [
    "PAGE_SIZE",
    "PageError",
    "Service",
    "SignInRequired",
    "UiRoute",
    "day_start",
    "form_data",
    "opt",
    "pager",
    "render",
    "service",
    "templates",
]

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50


log = logging.getLogger("agentkeep.ui")


class SignInRequired(Exception):
    """The request has no valid sign-in cookie."""


class PageError(Exception):
    """An error page with ``status`` and a message for the visitor."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@runtime_checkable
class Service(Protocol):
    """What the dashboard reads of the running service (``app.state.agentkeep``)."""

    settings: Settings
    store: Store  # the root store (every tenant)
    bootstrap_keys: dict[str, str]  # key hash -> tenant, from AGENTKEEP_API_KEYS

    def tenant(self, tenant_id: str) -> Store: ...


def service(request: Request) -> Service:
    """The running service of a request (503 while it starts)."""
    state = getattr(request.app.state, "agentkeep", None)
    if not isinstance(state, Service):
        raise PageError(503, "The service is starting; retry in a moment.")
    return state


def page_error(exc: BaseException) -> PageError:
    """The error page for any exception (500, logged, for the unexpected)."""
    if isinstance(exc, PageError):
        return exc
    if isinstance(exc, InvalidInput):
        message = str(exc)
        if exc.field and message.startswith(f"{exc.field}: "):
            message = f"Invalid '{exc.field}': {message[len(exc.field) + 2 :]}"
        return PageError(400, message)
    if isinstance(exc, NotFound):
        return PageError(404, f"No {exc.kind.replace('_', ' ')} found with id '{exc.ident}'.")
    if isinstance(exc, (Conflict, LockTimeout)):
        return PageError(409, str(exc))
    if isinstance(exc, (StoreUnavailable, SchemaError)):
        log.error("database unavailable: %s", exc)  # the driver's text: for the log only
        return PageError(503, "The database is unavailable; retry later.")
    log.error("unexpected error in the dashboard: %r", exc, exc_info=exc)
    return PageError(500, "The dashboard had an error; it has been logged.")


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cost(value: Decimal | None, unpriced: int = 0) -> str:
    """A cost in USD; unknown cost is never shown as $0."""
    if value is None:
        return "unpriced"
    text = f"${value:,.6f}".rstrip("0").rstrip(".")
    if text == "$0" and value != 0:
        text = f"${value:.2e}"
    return f"{text} + {unpriced} unpriced" if unpriced else text


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def _ms(value: float | int | None) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.0f} ms"


def _query(request: Request, **changes: Any) -> str:
    """The current query string with ``changes`` (None removes a parameter)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params) if params else "?"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, cost=_cost, pretty=_pretty, ms=_ms, urlquote=quote)
    env.globals.update(query=_query, page_size=PAGE_SIZE)
    return env


templates = _environment()


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` with ``context`` and the visitor (if signed in)."""
    context.setdefault("visitor", getattr(request.state, "visitor", None))
    context.setdefault("nav", name.removesuffix(".html"))
    html = templates.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def opt(value: str | None) -> str | None:
    """A query parameter, with an empty form field meaning "not given"."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def day_start(value: str | None, field: str, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` as the start of that UTC day (of the next one with ``end``)."""
    value = opt(value)
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("must be a date as YYYY-MM-DD", field=field) from None
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) if end else start


async def form_data(request: Request) -> dict[str, str]:
    """A submitted ``application/x-www-form-urlencoded`` form (last value of each field)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def pager(page: Page[Any], after: str | None, before: str | None) -> dict[str, str | None]:
    """Cursors for the links to the newer and the older page of a newest-first listing."""
    after, before = opt(after), opt(before)
    if before is not None:  # came back from an older page
        more_newer, more_older = page.has_more, True
    elif after is not None:  # came from a newer page
        more_newer, more_older = True, page.has_more
    else:
        more_newer, more_older = False, page.has_more
    return {
        "newer": page.first_id if more_newer and page.first_id else None,
        "older": page.last_id if more_older and page.last_id else None,
    }


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status_code=status, status=status, message=message)


class UiRoute(APIRoute):
    """A dashboard route: errors become HTML pages, a missing sign-in a redirect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                if request.method != "GET" or request.headers.get("accept") == "text/event-stream":
                    return error_page(request, 401, "Sign in first.")
                target = request.url.path + ("?" + request.url.query if request.url.query else "")
                return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
                    for e in exc.errors()
                )
                return error_page(request, 400, problems or "Invalid request.")
            except Exception as exc:
                error = page_error(exc)  # logs what is unexpected
                return error_page(request, error.status, error.message)

        return route
