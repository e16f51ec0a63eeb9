"""LLM call costs: exact nano-dollar amounts and the ``genai-prices`` table.

Costs are stored as integer nano-dollars (1e-9 USD) so sums are exact on every
backend; a cost finer than that is rounded half-even to the nearest
nano-dollar. ``None`` always means "unknown", never zero.

Prices come from the table bundled with the pinned ``genai-prices`` package,
looked up by provider id and model name. Token counts follow OpenAI's
convention: ``input_tokens`` counts every prompt token, ``cached_tokens`` is the
part of them read from a cache (billed at the cache-read price), and
``output_tokens`` includes any reasoning tokens. Nothing here touches the
network: the package only fetches newer prices when a program starts its
``UpdatePrices`` task, which agentkeep never does (if the embedding program
does, its fetched prices are used and ``price_version`` says so).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache
from importlib.metadata import version
from typing import Any

from agentkeep.errors import InvalidInput

__all__ = [
    "NANO",
    "PricedCost",
    "check_cost",
    "from_nano",
    "price_from_table",
    "price_version",
    "to_nano",
]

logger = logging.getLogger("agentkeep.prices")
NANO = Decimal("1e-9")
_BILLION = Decimal(1_000_000_000)
# Largest cost a BIGINT of nano-dollars holds (about 9.2 billion USD).
_MAX_NANO = 2**63 - 1

PricedCost = tuple[Decimal, str]

_ABSENT_MAX = 4096
# The (provider, model) pairs the table lacks, and the table (snapshot) they were looked up
# in: a call of a model no table knows (a local vLLM's, say) is priced on every run, and
# the table's search for a name it lacks scans every model. Remembered per snapshot only,
# so a table replaced in this process (``genai_prices.UpdatePrices``) is searched anew.
_absent: tuple[object, set[tuple[str, str]]] = (None, set())


def to_nano(cost: Decimal) -> int:
    """USD as integer nano-dollars, rounded half-even."""
    return int((cost * _BILLION).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_nano(nano: int | None) -> Decimal | None:
    """Integer nano-dollars as USD (``None`` stays unknown)."""
    if nano is None:
        return None
    return Decimal(int(nano)).scaleb(-9)


def check_cost(value: Any, field: str = "cost_usd") -> Decimal | None:
    """A caller's cost as a Decimal rounded to the nano-dollar (None = unknown)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise InvalidInput("must be a Decimal (USD) or None", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("must be a finite amount", field=field)
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"is not a number: {value!r}", field=field) from None
    if not amount.is_finite():
        raise InvalidInput("must be a finite amount", field=field)
    if amount < 0:
        raise InvalidInput("must not be negative", field=field)
    nano = to_nano(amount)
    if nano > _MAX_NANO:
        raise InvalidInput("is too large", field=field)
    return from_nano(nano)


@cache
def price_version() -> str:
    """The version of the bundled price table: ``genai-prices==X.Y.Z``."""
    return f"genai-prices=={version('genai-prices')}"


def price_from_table(
    provider: str,
    model: str,
    *,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
    at: datetime,
) -> PricedCost | None:
    """The cost of one call from the price table and the table's version.

    ``None`` when the provider or model is not in the table (the cost is
    unknown). ``at`` picks the prices in force at the time of the call.
    """
    import genai_prices  # imported on first use: the table takes a moment to load
    from genai_prices import data_snapshot

    global _absent
    snapshot = data_snapshot.get_snapshot()
    table, absent = _absent
    if table is not snapshot:
        table, absent = snapshot, set()
        _absent = (table, absent)
    if (provider, model) in absent:
        return None
    usage = genai_prices.Usage(
        input_tokens=input_tokens, cache_read_tokens=cached_tokens, output_tokens=output_tokens
    )
    try:
        calc = genai_prices.calc_price(
            usage, model, provider_id=provider, genai_request_timestamp=at
        )
    except LookupError:  # provider or model not in the table
        if len(absent) >= _ABSENT_MAX:
            absent.clear()
        absent.add((provider, model))
        return None
    except Exception:  # a price-table quirk must not lose the usage row: the cost is unknown
        logger.warning("could not price %s/%s; cost left unknown", provider, model, exc_info=True)
        return None
    total = Decimal(calc.total_price)
    if not total.is_finite() or total < 0:
        return None
    label = price_version()
    if data_snapshot.get_snapshot().from_auto_update and calc.auto_update_timestamp is not None:
        label = f"{label}+update:{calc.auto_update_timestamp:%Y-%m-%dT%H:%M}"[:64]
    return total, label
