"""Input checks of the run, run step and tool call stores; each error names its field.

Besides the shared checks in ``_validate``: values must also be storable by
PostgreSQL as given (no NUL characters, JSON without NaN), and costs become
integer nano-dollars.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.store._validate import json_text, opt_text

__all__ = [
    "check_choice",
    "check_choices",
    "check_count",
    "check_error",
    "check_json",
    "check_ref",
    "check_text",
    "json_or_null",
]

_MAX_COUNT = 2**53  # a sane bound for one increment; keeps sums far from overflow


def check_text(value: Any, field: str, max_len: int = 256) -> str | None:
    """Optional text that PostgreSQL can store (no NUL characters)."""
    out = opt_text(value, field, max_len)
    if out is not None and "\x00" in out:
        raise InvalidInput("must not contain NUL characters", field=field)
    return out


def check_ref(value: Any, field: str) -> str:
    """The id of an object to look up: a non-empty string the database can compare."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("must be a non-empty string id", field=field)
    if "\x00" in value:
        raise InvalidInput("must not contain NUL characters", field=field)
    return value


def check_json(value: Any, field: str) -> Any:
    """A JSON value (None allowed) that both backends store as given."""
    if value is None:
        return None
    return json.loads(json_text(value, field))


def check_count(value: Any, field: str) -> int:
    """A non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > _MAX_COUNT:
        raise InvalidInput("must be a non-negative integer", field=field)
    return value


def check_error(value: Any, field: str = "last_error") -> dict[str, Any] | None:
    """An error record ``{"code", "message", ...}``; a plain string becomes the message."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"code": "server_error", "message": value}
    if not isinstance(value, dict):
        raise InvalidInput("must be an object with 'code' and 'message'", field=field)
    for key in ("code", "message"):
        if key in value and value[key] is not None and not isinstance(value[key], str):
            raise InvalidInput("must be a string", field=f"{field}.{key}")
    return dict(check_json(value, field))


def check_choice(value: Any, allowed: Iterable[str], field: str) -> str:
    allowed = sorted(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput(f"must be one of {', '.join(allowed)}", field=field)
    return value


def check_choices(value: Any, allowed: Iterable[str], field: str) -> list[str]:
    """One choice or a non-empty list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) or not items:
        raise InvalidInput("must be a string or a non-empty list of strings", field=field)
    allowed = frozenset(allowed)
    return [check_choice(v, allowed, field) for v in items]


def json_or_null(value: Any) -> Any:
    """SQL NULL for None, so ``IS NULL`` filters work on nullable JSON columns."""
    return sa.null() if value is None else value
