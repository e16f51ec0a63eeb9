from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from agentkeep.models.common import Model

__all__ = ["CostSource", "LLMUsage", "UsageRollup"]

CostSource = Literal["caller", "price_table"]


class LLMUsage(Model):
    """One LLM call: tokens, latency, status and cost (None = unknown, never 0)."""

    id: str
    tenant_id: str
    agent_id: str | None
    session_id: str | None
    run_id: str | None
    user_id: str | None
    provider: str
    model: str
    prompt: str | None
    response: str | None
    prompt_length: int | None
    response_length: int | None
    input_params: dict[str, Any]
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    latency_ms: int | None
    status: Literal["success", "error"]
    error_message: str | None
    cost_usd: Decimal | None
    cost_source: CostSource | None
    price_version: str | None
    metadata: dict[str, str]
    created_at: datetime

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageRollup(Model):
    """Usage summed over one group (a day, a model, an agent or a user)."""

    key: str | None
    calls: int
    error_calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None
    unpriced_calls: int
