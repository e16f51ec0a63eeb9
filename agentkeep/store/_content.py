"""Message content: a list of typed blocks, checked before anything is written."""

from __future__ import annotations

from typing import Any

from agentkeep.errors import InvalidInput
from agentkeep.models.messages import BLOCK_TYPES, ROLES

__all__ = ["check_role", "check_text", "content_types", "normalize_content"]

_TEXT_TYPES = frozenset(("text", "input_text", "output_text", "refusal"))
MAX_BLOCKS = 512


def check_role(role: Any, field: str = "role") -> str:
    if role not in ROLES:
        raise InvalidInput(f"must be one of {', '.join(sorted(ROLES))}; got {role!r}", field=field)
    return str(role)


def check_text(text: str, field: str) -> str:
    """A message text: Unicode text, refused on every backend where one cannot store it.

    NUL (PostgreSQL cannot store it) and lone surrogates (not Unicode text: they
    have no UTF-8, and PostgreSQL refuses them in JSON).
    """
    if "\x00" in text:
        raise InvalidInput(
            "must not contain the NUL character (\\u0000); PostgreSQL cannot store it",
            field=field,
        )
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise InvalidInput(
                f"is not valid Unicode text: a lone surrogate at position {exc.start}",
                field=field,
            ) from None
    return text


def normalize_content(content: Any, field: str = "content") -> list[dict[str, Any]]:
    """Content as a list of blocks; a plain string becomes one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": check_text(content, field)}]
    if not isinstance(content, (list, tuple)):
        raise InvalidInput("must be a string or a list of content blocks", field=field)
    if len(content) > MAX_BLOCKS:
        raise InvalidInput(
            f"has {len(content)} blocks; at most {MAX_BLOCKS} are allowed", field=field
        )
    blocks = []
    for i, block in enumerate(content):
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        if not isinstance(block, dict):
            raise InvalidInput("must be an object with a 'type'", field=f"{field}[{i}]")
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            raise InvalidInput(
                f"unknown block type {kind!r}; expected one of {', '.join(sorted(BLOCK_TYPES))}",
                field=f"{field}[{i}].type",
            )
        if kind in _TEXT_TYPES:
            text = block.get("text", block.get("refusal"))
            if not isinstance(text, str):
                raise InvalidInput("must be a string", field=f"{field}[{i}].text")
            check_text(text, f"{field}[{i}].text")
        blocks.append(dict(block))
    return blocks


def content_types(blocks: list[dict[str, Any]]) -> str:
    """The block types of a message as ``,a,b,`` (for filtering by content type)."""
    return "," + ",".join(sorted({b["type"] for b in blocks})) + ","
