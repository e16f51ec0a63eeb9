"""Content parts of Responses and Conversations items, checked against OpenAI's document.

``input_text``, ``input_image``, ``input_file`` (a message's input), and
``output_text``, ``refusal`` (an assistant's output), plus the plain ``text``
part: each field is checked for the type and values the document gives it, and
a field the document does not list is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentkeep.errors import InvalidInput

__all__ = ["PART_TYPES", "content_part", "content_parts"]

PART_TYPES = ("input_text", "output_text", "text", "refusal", "input_image", "input_file")


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=field)
    return value


# A content part field's checker: the value and its field name in, the value to keep out.
_Check = Callable[[Any, str], Any]
_IMAGE_DETAIL = ("low", "high", "auto", "original")
_FILE_DETAIL = ("auto", "low", "high")


def _string_or_null(value: Any, field: str) -> str | None:
    return None if value is None else _text(value, field)


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput("must be an array", field=field)
    return value


def _one_of(choices: tuple[str, ...]) -> _Check:
    def check(value: Any, field: str) -> str:
        if value not in choices:
            raise InvalidInput(f"must be one of {', '.join(choices)}; got {value!r}", field=field)
        return str(value)

    return check


def _cache_breakpoint(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("mode") != "explicit" or set(value) != {"mode"}:
        raise InvalidInput('must be {"mode": "explicit"}', field=field)
    return {"mode": "explicit"}


_PART_FIELDS: dict[str, dict[str, _Check]] = {
    "input_text": {"text": _text, "prompt_cache_breakpoint": _cache_breakpoint},
    "text": {"text": _text},
    "output_text": {"text": _text, "annotations": _list, "logprobs": _list},
    "refusal": {"refusal": _text},
    "input_image": {
        "image_url": _string_or_null,
        "file_id": _string_or_null,
        "detail": _one_of(_IMAGE_DETAIL),
        "prompt_cache_breakpoint": _cache_breakpoint,
    },
    "input_file": {
        "file_id": _string_or_null,
        "filename": _text,
        "file_data": _text,
        "file_url": _text,
        "detail": _one_of(_FILE_DETAIL),
        "prompt_cache_breakpoint": _cache_breakpoint,
    },
}
_PART_REQUIRED = {"input_text": "text", "text": "text", "output_text": "text", "refusal": "refusal"}


def content_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    """One content part of a known ``type``, checked field by field against OpenAI's
    document (unknown fields refused); an ``input_image`` gets its default ``detail``."""
    kind = part["type"]
    fields = _PART_FIELDS[kind]
    out: dict[str, Any] = {"type": kind}
    for key, value in part.items():
        if key == "type":
            continue
        check = fields.get(key)
        if check is None:
            raise InvalidInput(f"is not a field of an {kind} part", field=f"{where}.{key}")
        out[key] = check(value, f"{where}.{key}")
    required = _PART_REQUIRED.get(kind)
    if required is not None and required not in out:
        raise InvalidInput("is required", field=f"{where}.{required}")
    if kind == "input_image":
        if out.get("image_url") is None and out.get("file_id") is None:
            raise InvalidInput("an input_image needs an image_url or a file_id", field=where)
        out.setdefault("detail", "auto")
    return out


def content_parts(role: str, content: Any, field: str) -> list[dict[str, Any]]:
    """A message item's ``content``: a string becomes one text part (``output_text`` for
    the assistant, else ``input_text``); a list is checked part by part."""
    if isinstance(content, str):
        return [{"type": "output_text" if role == "assistant" else "input_text", "text": content}]
    if not isinstance(content, list):
        raise InvalidInput("must be a string or a list of content parts", field=field)
    parts = []
    for i, part in enumerate(content):
        where = f"{field}[{i}]"
        if not isinstance(part, dict):
            raise InvalidInput("must be a content part (an object)", field=where)
        if part.get("type") not in PART_TYPES:
            raise InvalidInput(f"must be one of {', '.join(PART_TYPES)}", field=f"{where}.type")
        parts.append(content_part(part, where))
    return parts
