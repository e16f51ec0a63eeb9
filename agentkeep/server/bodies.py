"""Request bodies of the OpenAI-compatible routes, as OpenAI's document defines them.

Unknown fields are rejected (400 ``Unknown parameter``) where OpenAI's schema
says ``additionalProperties: false``. Limits that the store checks (metadata,
lengths, tools) are left to it, so each rule lives in one place.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CreateAssistant",
    "CreateConversation",
    "CreateItems",
    "CreateMessage",
    "CreateThread",
    "ModifyAssistant",
    "ModifyMessage",
    "ModifyThread",
    "UpdateConversation",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _AssistantFields(_Strict):
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    reasoning_effort: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: str | dict[str, Any] | None = None


class CreateAssistant(_AssistantFields):
    model: str


class ModifyAssistant(_AssistantFields):
    model: str | None = None


class CreateMessage(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None


class ModifyMessage(_Strict):
    metadata: dict[str, str] | None = None


class CreateThread(_Strict):
    messages: list[CreateMessage] | None = None
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class ModifyThread(_Strict):
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class CreateConversation(_Open):
    metadata: dict[str, str] | None = None
    items: list[dict[str, Any]] | None = Field(default=None, max_length=20)


class UpdateConversation(_Open):
    metadata: dict[str, str] | None


class CreateItems(_Open):
    items: list[dict[str, Any]] = Field(max_length=20)
