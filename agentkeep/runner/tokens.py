"""An estimate of the prompt tokens of a chat-completions request, without a tokenizer.

agentkeep sends prompts to any OpenAI-compatible upstream, whose tokenizer it
does not know, so it estimates: one token per 4 characters of text (rounded
up; OpenAI's rule of thumb for English), 3 tokens of framing per message and 3
for the reply's priming (as OpenAI's chat format counts them), 85 per image
(a low-detail image), and the function tools' JSON counted as text. English
prose is usually within 10-20% of what OpenAI's tokenizers count; code and
other languages can take more tokens per character, so set
``max_prompt_tokens`` with some margin.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CHARS_PER_TOKEN",
    "IMAGE_TOKENS",
    "MESSAGE_TOKENS",
    "REPLY_TOKENS",
    "estimate_message",
    "estimate_prompt",
    "estimate_text",
]

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 3
REPLY_TOKENS = 3
IMAGE_TOKENS = 85


def estimate_text(text: str) -> int:
    """Tokens of ``text``: one per ``CHARS_PER_TOKEN`` characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return estimate_text(content)
    total = 0
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, dict) and part.get("type") == "image_url":
            total += IMAGE_TOKENS
        elif isinstance(part, dict):
            total += estimate_text(str(part.get("text", "")))
        else:
            total += estimate_text(str(part))
    return total


def estimate_message(message: dict[str, Any]) -> int:
    """Tokens of one chat message: framing, content, tool calls and their ids."""
    total = MESSAGE_TOKENS + _content_tokens(message.get("content"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        total += estimate_text(str(function.get("name", "")))
        total += estimate_text(str(function.get("arguments", "")))
    if message.get("tool_call_id"):
        total += estimate_text(str(message["tool_call_id"]))
    return total


def estimate_prompt(
    messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
) -> int:
    """Tokens of a request's ``messages`` and ``tools`` (see the module docstring)."""
    total = REPLY_TOKENS + sum(estimate_message(m) for m in messages)
    if tools:
        total += estimate_text(json.dumps(list(tools), separators=(",", ":")))
    return total
