"""Shared pieces of the data model: pages, metadata rules, JSON values."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from agentkeep.errors import InvalidInput

__all__ = [
    "MAX_LIMIT",
    "JSONValue",
    "Model",
    "Order",
    "Page",
    "check_limit",
    "check_metadata",
    "from_micros",
    "to_micros",
    "utcnow_micros",
]

JSONValue = Any
Order = Literal["asc", "desc"]
MAX_LIMIT = 1000
METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_LEN = 64
METADATA_MAX_VALUE_LEN = 512

T = TypeVar("T")


class Model(BaseModel):
    """Base of every stored object."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``last_id`` as ``after`` to get the next."""

    items: list[T]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None

    def __iter__(self) -> Any:  # iterate over the items, not the fields
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def utcnow_micros() -> int:
    """Now, in microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def to_micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros_to_datetime(value: int) -> datetime:
    """A stored time (microseconds since the epoch) as an aware UTC datetime."""
    # Integer arithmetic: exact, and faster than fromtimestamp's float and tz calls.
    return EPOCH + timedelta(0, 0, value)


def from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return EPOCH + timedelta(0, 0, value)


def check_metadata(value: Any, field: str = "metadata") -> dict[str, str]:
    """Metadata as OpenAI allows it: at most 16 string keys (≤64) to strings (≤512)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("must be an object of string keys to string values", field=field)
    if len(value) > METADATA_MAX_KEYS:
        raise InvalidInput(
            f"has {len(value)} keys; at most {METADATA_MAX_KEYS} are allowed", field=field
        )
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput("keys must be non-empty strings", field=field)
        if len(key) > METADATA_MAX_KEY_LEN:
            raise InvalidInput(
                f"key {key[:20]!r}... is longer than {METADATA_MAX_KEY_LEN} characters",
                field=f"{field}.{key[:20]}",
            )
        if not isinstance(item, str):
            raise InvalidInput("values must be strings", field=f"{field}.{key}")
        if len(item) > METADATA_MAX_VALUE_LEN:
            raise InvalidInput(
                f"value is longer than {METADATA_MAX_VALUE_LEN} characters", field=f"{field}.{key}"
            )
    return dict(value)


def check_limit(limit: int, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or limit > MAX_LIMIT:
        raise InvalidInput(f"must be an integer from 1 to {MAX_LIMIT}", field=field)
    return limit
