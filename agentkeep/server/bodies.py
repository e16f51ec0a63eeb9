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
    "CreateRun",
    "CreateThread",
    "CreateThreadAndRun",
    "ModifyAssistant",
    "ModifyMessage",
    "ModifyRun",
    "ModifyThread",
    "RunOptions",
    "SubmitToolOutputs",
    "ToolOutput",
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


# -- runs ---------------------------------------------------------------------------------


class RunOptions(_Strict):
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(default=None, ge=256)
    max_completion_tokens: int | None = Field(default=None, ge=256)
    truncation_strategy: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: str | dict[str, Any] | None = None
    reasoning_effort: str | None = None


class CreateRun(RunOptions):
    assistant_id: str = Field(min_length=1, max_length=256)
    additional_instructions: str | None = None
    additional_messages: list[CreateMessage] | None = None


class CreateThreadAndRun(RunOptions):
    assistant_id: str = Field(min_length=1, max_length=256)
    thread: CreateThread | None = None
    tool_resources: dict[str, Any] | None = None


class ModifyRun(_Strict):
    metadata: dict[str, str] | None = None


class ToolOutput(_Strict):
    tool_call_id: str = Field(min_length=1)
    output: str


class SubmitToolOutputs(_Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None
