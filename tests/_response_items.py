"""Responses items as a client sends them, for the tests of stored responses."""

from __future__ import annotations

from typing import Any


def message_item(ident: str, text: str, role: str = "user") -> dict[str, Any]:
    """A message item of one ``input_text`` block."""
    return {
        "id": ident,
        "type": "message",
        "role": role,
        "content": [{"type": "input_text", "text": text}],
    }
