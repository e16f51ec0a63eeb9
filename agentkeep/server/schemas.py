"""Response shapes for the OpenAPI document (``/docs``); the routes build plain dicts in ``wire``.

These mirror OpenAI's schemas of the same names. They only describe; FastAPI
does not validate responses against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["DOCS"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class AssistantObject(_Doc):
    id: str
    object: Literal["assistant"]
    created_at: int
    name: str | None
    description: str | None
    model: str
    instructions: str | None
    tools: list[dict[str, Any]]
    tool_resources: dict[str, Any] | None
    metadata: dict[str, str]
    temperature: float | None
    top_p: float | None
    response_format: str | dict[str, Any] | None


class ThreadObject(_Doc):
    id: str
    object: Literal["thread"]
    created_at: int
    tool_resources: dict[str, Any] | None
    metadata: dict[str, str]


class MessageObject(_Doc):
    id: str
    object: Literal["thread.message"]
    created_at: int
    thread_id: str
    status: Literal["in_progress", "incomplete", "completed"]
    incomplete_details: dict[str, Any] | None
    completed_at: int | None
    incomplete_at: int | None
    role: str
    content: list[dict[str, Any]]
    assistant_id: str | None
    run_id: str | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, str]


class ConversationResource(_Doc):
    id: str
    object: Literal["conversation"]
    created_at: int
    metadata: dict[str, str]


class ConversationItem(_Doc):
    """A ``message``, ``function_call``, ``function_call_output`` or ``reasoning`` item."""

    id: str
    type: str
    status: str | None = None


class _List(_Doc):
    object: Literal["list"]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ListAssistantsResponse(_List):
    data: list[AssistantObject]


class ListMessagesResponse(_List):
    data: list[MessageObject]


class ConversationItemList(_List):
    data: list[ConversationItem]


class Model(_Doc):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ListModelsResponse(_Doc):
    object: Literal["list"]
    data: list[Model]


class DeletedObject(_Doc):
    id: str
    object: str
    deleted: bool


def _ok(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model}}


DOCS: dict[str, dict[int | str, dict[str, Any]]] = {
    "assistant": _ok(AssistantObject),
    "assistants": _ok(ListAssistantsResponse),
    "thread": _ok(ThreadObject),
    "message": _ok(MessageObject),
    "messages": _ok(ListMessagesResponse),
    "conversation": _ok(ConversationResource),
    "item": _ok(ConversationItem),
    "items": _ok(ConversationItemList),
    "deleted": _ok(DeletedObject),
    "model": _ok(Model),
    "models": _ok(ListModelsResponse),
}
"""``responses=`` arguments for the route decorators, by what they return."""
