"""Stored responses (the Responses API): a response, its items and its stream events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from agentkeep.models.common import Model

__all__ = [
    "RESPONSE_STATUSES",
    "TERMINAL_RESPONSE_STATUSES",
    "ResponseEvent",
    "ResponseStatus",
    "StoredResponse",
]

ResponseStatus = Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
RESPONSE_STATUSES: frozenset[str] = frozenset(get_args(ResponseStatus))
TERMINAL_RESPONSE_STATUSES: frozenset[str] = frozenset(
    ("completed", "failed", "cancelled", "incomplete")
)


class StoredResponse(Model):
    """A response as stored: what was asked (``params``), where it stands, what it cost.

    Its items (input and output, in order) are read with
    ``store.responses.items(id)``; ``params`` holds the request's echoed
    fields (tools, tool_choice, temperature, text, metadata, ...).
    """

    id: str
    tenant_id: str
    status: ResponseStatus
    model: str
    instructions: Any
    previous_response_id: str | None
    conversation_id: str | None
    background: bool
    params: dict[str, Any]
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    usage: dict[str, Any] | None
    cost_usd: Decimal | None
    worker_id: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    expires_at: datetime


class ResponseEvent(Model):
    """One persisted stream event of a response (``data`` is the event as sent)."""

    response_id: str
    sequence_number: int
    type: str
    data: dict[str, Any]
    created_at: datetime
