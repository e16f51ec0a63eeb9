"""Rate limiting per API key, shared by every service process on one database.

On when ``AGENTKEEP_RATE_LIMIT_ENABLED`` (or the SightOne seed's
``ENABLE_RATE_LIMITING``) says so; unset, it is on for PostgreSQL and off for
SQLite and memory (the embedded set-up, one process, where a write per
request would cost the most). Each request of a tenant API counts against its
key in a fixed window of ``AGENTKEEP_RATE_LIMIT_WINDOW_MS``
(``RATE_LIMIT_WINDOW_MS``, 60000) with one upsert in the database
(:meth:`agentkeep.store.rate_limits.RateLimits.hit`), so the limit of
``AGENTKEEP_RATE_LIMIT_MAX_REQUESTS`` (``RATE_LIMIT_MAX_REQUESTS``, 100) holds
across processes exactly. Every counted response carries OpenAI's
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests`` and
``x-ratelimit-reset-requests`` headers; a request over the limit is answered
429 with OpenAI's envelope (``type: "requests"``, ``code:
"rate_limit_exceeded"``) and ``Retry-After`` (whole seconds until the window ends).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi import Request

from agentkeep._aio_util import arun_op
from agentkeep.config import Settings
from agentkeep.models import RateLimitHit
from agentkeep.server.errors import ApiError
from agentkeep.store import Store

__all__ = ["HEADERS_STATE", "check_rate_limit", "duration", "enabled", "rate_limit_headers"]

HEADERS_STATE = "ratelimit_headers"
"""The ``request.state`` attribute the headers wait in for the response (see the middleware)."""


def enabled(settings: Settings, store: Store) -> bool:
    """As configured; unset, on for PostgreSQL and off for SQLite and memory."""
    if settings.rate_limit_enabled is not None:
        return settings.rate_limit_enabled
    return store.backend == "postgresql"


def duration(seconds: float) -> str:
    """OpenAI's form of a reset time: ``1m30s``, ``6s``, ``250ms``."""
    millis = max(0, round(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms"
    whole, rest = divmod(millis, 1000)
    hours, remainder = divmod(whole, 3600)
    minutes, secs = divmod(remainder, 60)
    text = f"{hours}h" if hours else ""
    if minutes or hours:
        text += f"{minutes}m"
    frac = f"{secs + rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{text}{frac}s"


def rate_limit_headers(hit: RateLimitHit) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(hit.limit),
        "x-ratelimit-remaining-requests": str(hit.remaining),
        "x-ratelimit-reset-requests": duration(hit.reset_seconds),
    }


async def check_rate_limit(
    request: Request, settings: Settings, store: Store, key_digest: str
) -> None:
    """Count the request against its key; 429 when over the limit, else note the headers."""
    hit: RateLimitHit = await arun_op(  # the store's async path: no worker thread
        store.rate_limits.hit,
        key_digest,
        limit=settings.rate_limit_max_requests,
        window_ms=settings.rate_limit_window_ms,
    )
    headers = rate_limit_headers(hit)
    if not hit.allowed:
        raise ApiError(
            429,
            f"Rate limit reached for this API key on requests per "
            f"{duration(hit.window_ms / 1000)}: Limit {hit.limit}, Used {hit.limit}, "
            f"Requested 1. Please try again in {duration(hit.reset_seconds)}.",
            type="requests",
            code="rate_limit_exceeded",
            headers={**headers, "Retry-After": str(hit.retry_after)},
        )
    setattr(request.state, HEADERS_STATE, headers)


def pending_headers(scope: MutableMapping[str, Any]) -> dict[str, str] | None:
    """The headers :func:`check_rate_limit` noted for this request, if any."""
    state = scope.get("state")
    if isinstance(state, dict):
        value = state.get(HEADERS_STATE)
        if isinstance(value, dict):
            return value
    return None
