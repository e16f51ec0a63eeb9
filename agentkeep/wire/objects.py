"""Stored objects to OpenAI wire objects, and OpenAI inputs to stored content.

Shapes follow OpenAI's OpenAPI document (AssistantObject, ThreadObject,
MessageObject, ConversationResource, ConversationItem, list envelopes).
Settings OpenAI has and the store has no column for live in ``extra``:
an agent's ``tool_resources``, ``temperature``, ``top_p``,
``response_format``, ``reasoning_effort``; a thread's ``tool_resources``; a
message's ``status``, ``completed_at``, ``incomplete_at``,
``incomplete_details``, ``attachments`` (and ``phase`` for items).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from agentkeep.errors import InvalidInput
from agentkeep.models import Agent, Message, Page, Session
from agentkeep.wire.parts import content_parts

__all__ = [
    "ASSISTANT_EXTRA_FIELDS",
    "ITEM_TYPES",
    "assistant_object",
    "conversation_object",
    "deleted_object",
    "item_input",
    "item_object",
    "list_object",
    "message_object",
    "thread_message_content",
    "thread_object",
    "unix",
]

T = TypeVar("T")

ASSISTANT_EXTRA_FIELDS = (
    "tool_resources",
    "temperature",
    "top_p",
    "response_format",
    "reasoning_effort",
)
# Conversation item types stored as one content block of the same type.
ITEM_TYPES = ("function_call", "function_call_output", "reasoning")
_ITEM_ROLES = ("user", "assistant", "system", "developer")
_TEXT_BLOCKS = ("text", "input_text", "output_text")


def unix(value: datetime | None) -> int | None:
    """A datetime as Unix seconds, as OpenAI's ``created_at`` fields are."""
    return None if value is None else int(value.timestamp())


def list_object(page: Page[T], to_wire: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """The list envelope ``{object: "list", data, first_id, last_id, has_more}``."""
    return {
        "object": "list",
        "data": [to_wire(item) for item in page.items],
        "first_id": page.first_id,
        "last_id": page.last_id,
        "has_more": page.has_more,
    }


def deleted_object(ident: str, object: str) -> dict[str, Any]:
    return {"id": ident, "object": object, "deleted": True}


# -- assistants, threads, conversations ---------------------------------------------------------


def assistant_object(agent: Agent) -> dict[str, Any]:
    extra = agent.extra
    out: dict[str, Any] = {
        "id": agent.id,
        "object": "assistant",
        "created_at": unix(agent.created_at),
        "name": agent.name,
        "description": agent.description,
        "model": agent.model,
        "instructions": agent.instructions,
        "tools": agent.tools,
        "tool_resources": extra.get("tool_resources") or {},
        "metadata": agent.metadata,
        "temperature": extra.get("temperature", 1.0),
        "top_p": extra.get("top_p", 1.0),
        "response_format": extra.get("response_format", "auto"),
    }
    if extra.get("reasoning_effort") is not None:
        out["reasoning_effort"] = extra["reasoning_effort"]
    return out


def thread_object(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "object": "thread",
        "created_at": unix(session.created_at),
        "tool_resources": session.extra.get("tool_resources") or {},
        "metadata": session.metadata,
    }


def conversation_object(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "object": "conversation",
        "created_at": unix(session.created_at),
        "metadata": session.metadata,
    }


# -- thread messages --------------------------------------------------------------------------


def _thread_block(block: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind in _TEXT_BLOCKS:
        annotations = block.get("annotations") if kind == "text" else None
        return {
            "type": "text",
            "text": {"value": block.get("text", ""), "annotations": annotations or []},
        }
    if kind == "refusal":
        return {"type": "refusal", "refusal": block.get("refusal", block.get("text", ""))}
    if kind in ("image_url", "image_file"):
        return dict(block)
    if kind == "input_image":
        if isinstance(block.get("image_url"), str):
            image: dict[str, Any] = {"url": block["image_url"]}
            if block.get("detail"):
                image["detail"] = block["detail"]
            return {"type": "image_url", "image_url": image}
        if isinstance(block.get("file_id"), str):
            return {"type": "image_file", "image_file": {"file_id": block["file_id"]}}
    return None  # tool calls and the like are not part of a thread message


def message_object(message: Message) -> dict[str, Any]:
    """A stored message as a ``thread.message``."""
    extra = message.extra
    content = [b for b in (_thread_block(block) for block in message.content) if b is not None]
    return {
        "id": message.id,
        "object": "thread.message",
        "created_at": unix(message.created_at),
        "thread_id": message.session_id,
        "status": extra.get("status", "completed"),
        "incomplete_details": extra.get("incomplete_details"),
        "completed_at": extra.get("completed_at"),
        "incomplete_at": extra.get("incomplete_at"),
        "role": message.role,
        "content": content,
        "assistant_id": message.agent_id,
        "run_id": message.run_id,
        "attachments": extra.get("attachments") or [],
        "metadata": message.metadata,
    }


def thread_message_content(content: Any, field: str = "content") -> list[dict[str, Any]]:
    """A create-message ``content`` (a string or text / image parts) as stored blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise InvalidInput("must be a string or a non-empty list of content parts", field=field)
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        where = f"{field}[{i}]"
        if not isinstance(part, dict):
            raise InvalidInput("must be an object with a 'type'", field=where)
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise InvalidInput("must be a string", field=f"{where}.text")
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise InvalidInput("must be an object with a 'url'", field=f"{where}.image_url")
            blocks.append({"type": "image_url", "image_url": dict(image)})
        elif kind == "image_file":
            image = part.get("image_file")
            if not isinstance(image, dict) or not isinstance(image.get("file_id"), str):
                raise InvalidInput(
                    "must be an object with a 'file_id'", field=f"{where}.image_file"
                )
            blocks.append({"type": "image_file", "image_file": dict(image)})
        else:
            raise InvalidInput(
                f"unknown content part type {kind!r}; expected text, image_url or image_file",
                field=f"{where}.type",
            )
    return blocks


# -- conversation items -----------------------------------------------------------------------


def _item_block(block: Mapping[str, Any], role: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        kind = "output_text" if role == "assistant" else "input_text"
        block = {**block, "type": kind}
    out = dict(block)
    if kind == "output_text":
        out.setdefault("annotations", [])
        out.setdefault("logprobs", [])
    return out


def item_object(message: Message) -> dict[str, Any]:
    """A stored message as a conversation item (message, function_call, ...)."""
    blocks = message.content
    if len(blocks) == 1 and blocks[0].get("type") in ITEM_TYPES:
        out: dict[str, Any] = {"id": message.id, **blocks[0]}
        out["id"] = message.id
        out.setdefault("status", "completed")
        return out
    item: dict[str, Any] = {
        "id": message.id,
        "type": "message",
        "status": message.extra.get("status", "completed"),
        "role": message.role,
        "content": [_item_block(b, message.role) for b in blocks],
    }
    if message.extra.get("phase") is not None:
        item["phase"] = message.extra["phase"]
    return item


def _require(item: Mapping[str, Any], key: str, field: str, max_len: int | None = None) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput("is required and must be a non-empty string", field=f"{field}.{key}")
    if max_len is not None and len(value) > max_len:
        raise InvalidInput(f"must be at most {max_len} characters", field=f"{field}.{key}")
    return value


def item_input(item: Any, field: str) -> dict[str, Any]:
    """An input item as a message to append (``role``, ``content``, ``extra``).

    An item without ``type`` is a message, as OpenAI accepts it. Function calls,
    their outputs and reasoning items are stored as one block of their type.
    """
    if not isinstance(item, dict):
        raise InvalidInput("must be an object", field=field)
    kind = item.get("type") or "message"
    if kind == "message":
        role = item.get("role")
        if role not in _ITEM_ROLES:
            raise InvalidInput(
                f"must be one of {', '.join(_ITEM_ROLES)}; got {role!r}", field=f"{field}.role"
            )
        content = content_parts(role, item.get("content"), f"{field}.content")
        extra: dict[str, Any] = {}
        status = item.get("status")
        if status is not None:
            if status not in ("in_progress", "completed", "incomplete"):
                raise InvalidInput(
                    "must be in_progress, completed or incomplete", field=f"{field}.status"
                )
            extra["status"] = status
        if item.get("phase") is not None:
            if item["phase"] not in ("commentary", "final_answer"):
                raise InvalidInput("must be commentary or final_answer", field=f"{field}.phase")
            extra["phase"] = item["phase"]
        return {"role": role, "content": content, "extra": extra}
    if kind not in ITEM_TYPES:
        raise InvalidInput(
            f"unsupported item type {kind!r}; expected message, {', '.join(ITEM_TYPES)}",
            field=f"{field}.type",
        )
    if kind == "function_call":
        _require(item, "call_id", field, 64)
        _require(item, "name", field)
        if not isinstance(item.get("arguments"), str):
            raise InvalidInput("must be a JSON string", field=f"{field}.arguments")
    elif kind == "function_call_output":
        _require(item, "call_id", field, 64)
        if not isinstance(item.get("output"), (str, list)):
            raise InvalidInput(
                "must be a string or a list of content parts", field=f"{field}.output"
            )
    block = {k: v for k, v in item.items() if k != "id"}
    block["type"] = kind
    role = "tool" if kind == "function_call_output" else "assistant"
    return {"role": role, "content": [block], "extra": {}}
