"""OpenAI's request sub-schemas, checked as its API checks them: tools, tool resources, attachments,
response formats, truncation and tool choice.

The bodies keep these fields as plain JSON (what the store keeps); each is
annotated with a validator that checks the value against the typed model of
OpenAI's schema, strictly (no string → number or bool coercion). A failure is a
400 naming the exact place (``tools[0].function.name``). Objects are open where
OpenAI's schema is (no ``additionalProperties: false``).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "AttachmentsField",
    "IncludeEnum",
    "ResponseFormatField",
    "ToolChoiceField",
    "ToolResourcesField",
    "ToolsField",
    "TruncationField",
]

_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


@functools.cache
def _typed(*types: str) -> type[BaseModel]:
    """A model of only ``type`` (one of ``types``): checked first, so an unknown type is named."""
    literal: Any = Literal[types]
    return pydantic.create_model("Typed", __base__=_Shape, type=(literal, ...))


class RankingOptions(_Shape):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: float = Field(ge=0, le=1)


class FileSearchOptions(_Shape):
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class FunctionObject(_Shape):
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CodeInterpreterTool(_Shape):
    type: Literal["code_interpreter"]


class FileSearchTool(_Shape):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class FunctionTool(_Shape):
    type: Literal["function"]
    function: FunctionObject


_TOOLS: dict[str, type[BaseModel]] = {
    "code_interpreter": CodeInterpreterTool,
    "file_search": FileSearchTool,
    "function": FunctionTool,
}


def _check_by_type(value: Any, models: dict[str, type[BaseModel]]) -> None:
    """Validate ``value`` by the model its ``type`` names (the type itself first)."""
    _typed(*models).model_validate(value)
    models[value["type"]].model_validate(value)


def _tool(value: dict[str, Any]) -> dict[str, Any]:
    _check_by_type(value, _TOOLS)
    return value


def _attachment_tool(value: dict[str, Any]) -> dict[str, Any]:
    _typed("code_interpreter", "file_search").model_validate(value)
    return value


class StaticChunks(_Shape):
    model_config = ConfigDict(strict=True, extra="forbid")
    max_chunk_size_tokens: int = Field(ge=100, le=4096)
    chunk_overlap_tokens: int


class AutoChunking(_Shape):
    model_config = ConfigDict(strict=True, extra="forbid")
    type: Literal["auto"]


class StaticChunking(_Shape):
    model_config = ConfigDict(strict=True, extra="forbid")
    type: Literal["static"]
    static: StaticChunks


def _chunking(value: dict[str, Any]) -> dict[str, Any]:
    _check_by_type(value, {"auto": AutoChunking, "static": StaticChunking})
    return value


class VectorStoreHelper(_Shape):
    file_ids: list[str] | None = Field(default=None, max_length=100)
    chunking_strategy: Annotated[dict[str, Any], AfterValidator(_chunking)] | None = None
    metadata: dict[str, str] | None = None


class CodeInterpreterResources(_Shape):
    file_ids: list[str] | None = Field(default=None, max_length=20)


class FileSearchResources(_Shape):
    vector_store_ids: list[str] | None = Field(default=None, max_length=1)
    vector_stores: list[VectorStoreHelper] | None = Field(default=None, max_length=1)


class ToolResources(_Shape):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class Attachment(_Shape):
    file_id: str | None = None
    tools: list[Annotated[dict[str, Any], AfterValidator(_attachment_tool)]] | None = None


class JsonSchemaFormat(_Shape):
    name: str = Field(pattern=_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(_Shape):
    type: Literal["text"]


class JsonObjectFormat(_Shape):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(_Shape):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


_FORMATS: dict[str, type[BaseModel]] = {
    "text": TextFormat,
    "json_object": JsonObjectFormat,
    "json_schema": JsonSchemaResponseFormat,
}


def _response_format(value: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(value, str):
        TypeAdapter(Literal["auto"]).validate_python(value)
    else:
        _check_by_type(value, _FORMATS)
    return value


class Truncation(_Shape):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(default=None, ge=1)


class NamedFunction(_Shape):
    name: str


class NamedToolChoice(_Shape):
    type: Literal["function", "code_interpreter", "file_search"]
    function: NamedFunction | None = None


def _tool_choice(value: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(value, str):
        TypeAdapter(Literal["none", "auto", "required"]).validate_python(value)
    else:
        NamedToolChoice.model_validate(value)
    return value


def _checked(model: type[BaseModel]) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        model.model_validate(value)
        return value

    return AfterValidator(check)


ToolsField = Annotated[
    list[Annotated[dict[str, Any], AfterValidator(_tool)]] | None, Field(max_length=128)
]
"""``tools``: at most 128 of ``code_interpreter``, ``file_search``, ``function``."""

ToolResourcesField = Annotated[dict[str, Any], _checked(ToolResources)] | None
AttachmentsField = list[Annotated[dict[str, Any], _checked(Attachment)]] | None
ResponseFormatField = Annotated[str | dict[str, Any], AfterValidator(_response_format)] | None
TruncationField = Annotated[dict[str, Any], _checked(Truncation)] | None
ToolChoiceField = Annotated[str | dict[str, Any], AfterValidator(_tool_choice)] | None

IncludeEnum = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
"""What ``include`` may name on conversation items (and responses), as OpenAI's ``IncludeEnum``."""
