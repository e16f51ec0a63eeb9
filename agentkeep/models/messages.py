from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from agentkeep.models.common import Model

__all__ = ["BLOCK_TYPES", "ROLES", "Message", "NewMessage", "Role"]

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(get_args(Role))

# Content block types: ours, and the OpenAI / Anthropic names they stand for.
BLOCK_TYPES: frozenset[str] = frozenset(
    (
        "text",
        "input_text",
        "output_text",
        "refusal",
        "image",
        "image_url",
        "image_file",
        "input_image",
        "file",
        "input_file",
        "tool_use",
        "function_call",
        "tool_result",
        "function_call_output",
        "reasoning",
    )
)


class NewMessage(Model):
    """A message to append (for ``append_many``)."""

    role: Role
    content: str | list[dict[str, Any]]
    run_id: str | None = None
    agent_id: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, str] | None = None
    extra: dict[str, Any] | None = None
    id: str | None = None


class Message(Model):
    """A stored message; ``seq`` is its gapless position in the session."""

    id: str
    tenant_id: str
    session_id: str
    seq: int
    role: Role
    content: list[dict[str, Any]]
    run_id: str | None
    agent_id: str | None
    idempotency_key: str | None
    metadata: dict[str, str]
    extra: dict[str, Any]
    created_at: datetime

    @property
    def text(self) -> str:
        """The concatenated text of the text blocks."""
        return "".join(
            str(b.get("text", ""))
            for b in self.content
            if b.get("type") in ("text", "input_text", "output_text")
        )
