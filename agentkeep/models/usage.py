from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from agentkeep.models.common import Model

__all__ = ["CostSource", "LLMUsage", "Price", "RecomputeReport", "UsageRollup"]

CostSource = Literal["caller", "user", "price_table"]


class LLMUsage(Model):
    """One LLM call: tokens, latency, status and cost (None = unknown, never 0).

    Token counts follow OpenAI: ``input_tokens`` includes ``cached_tokens`` and
    ``output_tokens`` includes ``reasoning_tokens``. ``cost_source`` is
    ``"caller"`` (given by the caller), ``"user"`` (the user's price table:
    ``store.prices`` or the ``AGENTKEEP_PRICES`` file, named by
    ``price_version``), ``"price_table"`` (computed from the bundled
    genai-prices table named by ``price_version``) or ``None`` (unknown
    provider or model: ``cost_usd`` is ``None``). Costs are exact to 1e-9 USD.
    ``agent_id``, ``session_id`` and ``run_id`` are soft references: the row
    outlives what they name.
    """

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
    """Usage summed over one group (a UTC day, a model, an agent, a user or a provider).

    ``cost_usd`` is the exact sum over the group's priced calls; ``unpriced_calls``
    counts calls of unknown cost. ``cost_usd`` is ``None`` only when every call of
    the group is unpriced; with ``unpriced_calls > 0`` it is a lower bound.
    """

    key: str | None
    calls: int
    error_calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None
    unpriced_calls: int


class Price(Model):
    """A price of the user's table: USD per token, for one model (and provider, or any)."""

    provider: str | None
    model: str
    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    reasoning: Decimal | None
    version: int
    created_at: datetime
    updated_at: datetime


class RecomputeReport(Model):
    """What ``prices.recompute`` did: rows looked at, changed, and priced by each source."""

    rows: int
    changed: int
    by_source: dict[str, int]  # user, price_table, unpriced
