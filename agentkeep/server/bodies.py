"""Request bodies of the OpenAI-compatible routes, as OpenAI's document defines them.

Unknown fields are rejected (400 ``Unknown parameter``) where OpenAI's schema
says ``additionalProperties: false``. Bodies are strict, as OpenAI's API is: no
string becomes a boolean or a number (``"stream": "yes"`` is a 400 naming
``stream``). Tools, tool resources, attachments, response formats, truncation
and tool choice are checked against OpenAI's schemas (:mod:`agentkeep.server.shapes`);
limits that the store checks (metadata, lengths) are left to it, so each rule
lives in one place.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkeep.server.shapes import (
    AttachmentsField,
    ResponseFormatField,
    ToolChoiceField,
    ToolResourcesField,
    ToolsField,
    TruncationField,
)

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
    "ReasoningEffort",
    "RunOptions",
    "Strict",
    "SubmitToolOutputs",
    "ToolOutput",
    "UpdateConversation",
]


class Strict(BaseModel):
    """A body with OpenAI's ``additionalProperties: false`` and no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class _AssistantFields(Strict):
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    reasoning_effort: ReasoningEffort | None = None
    tools: ToolsField = None
    tool_resources: ToolResourcesField = None
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormatField = None


class CreateAssistant(_AssistantFields):
    model: str


class ModifyAssistant(_AssistantFields):
    model: str | None = None


class CreateMessage(Strict):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]
    attachments: AttachmentsField = None
    metadata: dict[str, str] | None = None


class ModifyMessage(Strict):
    metadata: dict[str, str] | None = None


class CreateThread(Strict):
    messages: list[CreateMessage] | None = None
    tool_resources: ToolResourcesField = None
    metadata: dict[str, str] | None = None


class ModifyThread(Strict):
    tool_resources: ToolResourcesField = None
    metadata: dict[str, str] | None = None


class CreateConversation(_Open):
    metadata: dict[str, str] | None = None
    items: list[dict[str, Any]] | None = Field(default=None, max_length=20)


class UpdateConversation(_Open):
    metadata: dict[str, str] | None


class CreateItems(_Open):
    items: list[dict[str, Any]] = Field(max_length=20)


# -- runs ---------------------------------------------------------------------------------


class RunOptions(Strict):
    model: str | None = None
    instructions: str | None = None
    tools: ToolsField = None
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(default=None, ge=256)
    max_completion_tokens: int | None = Field(default=None, ge=256)
    truncation_strategy: TruncationField = None
    tool_choice: ToolChoiceField = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatField = None
    reasoning_effort: ReasoningEffort | None = None


class CreateRun(RunOptions):
    assistant_id: str = Field(min_length=1, max_length=256)
    additional_instructions: str | None = None
    additional_messages: list[CreateMessage] | None = None


class CreateThreadAndRun(RunOptions):
    assistant_id: str = Field(min_length=1, max_length=256)
    thread: CreateThread | None = None
    tool_resources: ToolResourcesField = None


class ModifyRun(Strict):
    metadata: dict[str, str] | None = None


class ToolOutput(Strict):
    tool_call_id: str = Field(min_length=1)
    output: str


class SubmitToolOutputs(Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None
