"""A framework's message content as agentkeep content blocks, and back, exactly.

Text becomes one ``text`` block, a list of blocks agentkeep knows stays as it
is (so the message is searchable like any other); anything else is kept whole
in ``extra`` and the message has no blocks. ``form`` records which, so reading
gives back what was written.
"""

from __future__ import annotations

from typing import Any

from agentkeep.models import BLOCK_TYPES, Message

__all__ = ["TEXT_TYPES", "pack_content", "plain_block", "unpack_content"]

TEXT_TYPES = ("text", "input_text", "output_text", "refusal")


def plain_block(block: Any) -> bool:
    """A content block agentkeep stores as a block of its own."""
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        return False
    if block["type"] in TEXT_TYPES:
        return isinstance(block.get("text", block.get("refusal")), str)
    return True


def pack_content(content: Any) -> tuple[list[Any], dict[str, Any]]:
    """Blocks to store, and what to keep in ``extra`` to rebuild ``content``."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}], {"form": "text"}
    if isinstance(content, list) and all(plain_block(b) for b in content):
        return content, {"form": "blocks"}
    return [], {"form": "item", "content": content}


def unpack_content(message: Message, saved: dict[str, Any]) -> Any:
    """The ``content`` that :func:`pack_content` stored."""
    form = saved.get("form", "blocks")
    if form == "text":
        return message.content[0]["text"]
    if form == "blocks":
        return message.content
    return saved.get("content")
