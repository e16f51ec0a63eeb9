"""Input of the typed session records: pydantic models checked strictly, errors naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentkeep.errors import InvalidInput

__all__ = ["as_model", "check_size", "json_size", "utc"]

M = TypeVar("M", bound=BaseModel)


def as_model(model: type[M], value: Any, field: str) -> M:
    """``value`` (a ``model`` or a dict of its fields) checked; ``InvalidInput`` naming the field."""
    if isinstance(value, model):
        value = value.model_dump()
    if not isinstance(value, dict):
        raise InvalidInput(f"must be a {model.__name__} or a dict of its fields", field=field)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidInput(
            str(error["msg"]), field=f"{field}.{where}" if where else field
        ) from None


def check_size(size: int, limit: int, field: str, setting: str) -> None:
    """``InvalidInput`` naming ``field`` when ``size`` is over ``limit`` bytes."""
    if size > limit:
        raise InvalidInput(f"is {size} bytes, over the limit of {limit} ({setting})", field=field)


def json_size(value: Any, field: str, limit: int, setting: str) -> int:
    """The UTF-8 JSON size of ``value``; over ``limit``, the error names its largest member."""
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > limit and isinstance(value, dict) and value:
        sizes = {
            k: len(json.dumps(v, ensure_ascii=False).encode("utf-8")) for k, v in value.items()
        }
        largest = max(sizes, key=lambda k: sizes[k])
        raise InvalidInput(
            f"makes the record {size} bytes, over the limit of {limit} ({setting})",
            field=f"{field}.{largest}",
        )
    check_size(size, limit, field, setting)
    return size


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
