"""Input checks shared by the entity stores; each error names its field."""

from __future__ import annotations

import re
from typing import Any

from agentkeep.errors import InvalidInput
from agentkeep.store._json import make_dumps

__all__ = ["UNSET", "check_object", "check_tools", "json_text", "opt_text", "require_str"]


_strict_json = make_dumps(allow_nan=False)
# A NUL character as the encoder escapes it (not a backslash followed by "u0000").
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

UNSET: Any = object()
"""Default of update parameters: the field is left as it is."""


def require_str(value: Any, field: str, *, max_len: int = 256) -> str:
    if value is None:
        raise InvalidInput("is required", field=field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("must be a non-empty string", field=field)
    if len(value) > max_len:
        raise InvalidInput(f"must be at most {max_len} characters", field=field)
    return value


def opt_text(value: Any, field: str, max_len: int = 256) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=field)
    if len(value) > max_len:
        raise InvalidInput(f"must be at most {max_len} characters", field=field)
    return value


def json_text(value: Any, field: str) -> str:
    """``value`` as JSON text, if both backends can store it as given; else
    ``InvalidInput`` naming ``field``: no cycle, no NaN or infinity, no NUL
    character (PostgreSQL's jsonb refuses it), nothing but objects with string
    keys, arrays, strings, numbers, booleans and null."""
    try:
        encoded = _strict_json(value)
        key = _key_not_str(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"must be JSON-serializable ({exc})", field=field) from None
    except RecursionError:
        raise InvalidInput("is nested too deeply (or contains itself)", field=field) from None
    if "\\u0000" in encoded and _JSON_NUL.search(encoded):
        raise InvalidInput("must not contain NUL characters", field=field)
    if key is not _NONE:
        # The encoder writes 1 as "1": stored, it would read back as another object.
        raise InvalidInput(
            f"object keys must be strings, not {type(key).__name__} ({key!r})", field=field
        )
    return encoded


_NONE: Any = object()
_CONTAINERS = (dict, list, tuple)


def _key_not_str(value: Any) -> Any:
    """The first object key in ``value`` that is not a string (``_NONE``: there is none).

    Called on what encoded already, so it is acyclic.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                return key
            if isinstance(item, _CONTAINERS):
                found = _key_not_str(item)
                if found is not _NONE:
                    return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, _CONTAINERS):
                found = _key_not_str(item)
                if found is not _NONE:
                    return found
    return _NONE


def check_object(value: Any, field: str) -> dict[str, Any]:
    """A JSON object (None becomes empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("must be an object", field=field)
    return dict(value)


def check_tools(tools: Any, field: str = "tools") -> list[dict[str, Any]]:
    """Tools as a list of objects, each with a string ``type``."""
    if tools is None:
        return []
    if not isinstance(tools, (list, tuple)):
        raise InvalidInput("must be a list of tool objects", field=field)
    if len(tools) > 128:
        raise InvalidInput("at most 128 tools are allowed", field=field)
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidInput("must be an object with a string 'type'", field=f"{field}[{i}]")
        if tool["type"] == "function":
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise InvalidInput(
                    "a function tool needs function.name", field=f"{field}[{i}].function.name"
                )
        out.append(dict(tool))
    return out
