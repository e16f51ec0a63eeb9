"""The Responses API on the wire: the request, input items, the response object, stream events.

Shapes follow OpenAI's document (``CreateResponse``, ``Response``,
``ResponseUsage``, ``ResponseItemList``, the ``response.*`` stream events).
Input items are normalized to the item resources OpenAI lists: every item
gets an id of its own (``msg_``, ``fc_``, ``fco_``); a message's string
content becomes one ``input_text`` (``output_text`` for the assistant) part.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentkeep.errors import InvalidInput
from agentkeep.ids import new_id
from agentkeep.models.responses import StoredResponse
from agentkeep.wire.objects import unix
from agentkeep.wire.parts import content_parts

__all__ = [
    "END_EVENT_TYPES",
    "CreateResponse",
    "EventNumbers",
    "Include",
    "echo_params",
    "end_events",
    "function_call_item",
    "input_items",
    "message_item",
    "response_object",
    "usage_object",
]

_ROLES = ("user", "assistant", "system", "developer")
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}

Include = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
"""OpenAI's ``IncludeEnum``: extra output a request may ask for (accepted; the service adds none)."""


class CreateResponse(BaseModel):
    """``POST /v1/responses``, as strict as OpenAI's API: no string becomes a boolean or a number.

    Ranges are the document's (``temperature`` 0-2, ``top_p`` 0-1,
    ``max_output_tokens`` at least 16, ``top_logprobs`` 0-20). OpenAI's
    schema does not close the body (no ``additionalProperties: false``): fields
    the service does not act on are accepted and ignored. Tools and
    ``tool_choice`` are checked against the function tools the service
    supports when the request is prepared (``response_prompt``), naming the
    field (``tools[0].parameters``).
    """

    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=16)
    max_tool_calls: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    stream: bool | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    reasoning: dict[str, Any] | None = None
    include: list[Include] | None = None


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput("must be a string", field=field)
    return value


def _message(item: dict[str, Any], field: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidInput(
            f"must be one of {', '.join(_ROLES)}; got {role!r}", field=f"{field}.role"
        )
    status = item.get("status") or "completed"
    return {
        "type": "message",
        "role": role,
        "content": content_parts(role, item.get("content"), f"{field}.content"),
        "status": status,
    }


def _one_item(item: Any, field: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidInput("must be an object", field=field)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        out = _message(item, field)
    elif kind == "function_call":
        out = {
            "type": "function_call",
            "call_id": _text(item.get("call_id"), f"{field}.call_id"),
            "name": _text(item.get("name"), f"{field}.name"),
            "arguments": _text(item.get("arguments"), f"{field}.arguments"),
            "status": item.get("status") or "completed",
        }
    elif kind == "function_call_output":
        output = item.get("output")
        if not isinstance(output, (str, list)):
            raise InvalidInput(
                "must be a string or a list of content parts", field=f"{field}.output"
            )
        out = {
            "type": "function_call_output",
            "call_id": _text(item.get("call_id"), f"{field}.call_id"),
            "output": output,
            "status": item.get("status") or "completed",
        }
    elif kind == "item_reference":
        return {"type": "item_reference", "id": _text(item.get("id"), f"{field}.id")}
    elif kind == "reasoning":
        out = {k: v for k, v in item.items() if k != "id"}
    else:
        raise InvalidInput(
            f"unsupported item type {kind!r}; expected message, function_call, "
            "function_call_output, item_reference or reasoning",
            field=f"{field}.type",
        )
    out["id"] = new_id(_ID_PREFIX.get(out["type"], "rs"))
    return out


def input_items(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The request's ``input`` as items with ids of their own (references left to resolve)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [_one_item({"type": "message", "role": "user", "content": value}, "input")]
    return [_one_item(item, f"input[{i}]") for i, item in enumerate(value)]


def message_item(text: str, *, status: str = "completed", id: str | None = None) -> dict[str, Any]:
    """An assistant output message with one ``output_text`` part."""
    return {
        "id": id or new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call_item(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def usage_object(
    input_tokens: int, output_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> dict[str, Any]:
    """``ResponseUsage`` with every required field."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def _echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as a response shows it: a function tool has every field OpenAI's schema requires."""
    if tool.get("type") != "function":
        return tool
    return {
        "description": None,
        **tool,
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def echo_params(body: CreateResponse) -> dict[str, Any]:
    """The request fields a response echoes, with OpenAI's defaults."""
    return {
        "tools": [_echo_tool(tool) for tool in body.tools or ()],
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "text": body.text or {"format": {"type": "text"}},
        "metadata": body.metadata or {},
        "store": body.store is not False,
        "truncation": body.truncation or "disabled",
        "user": body.user,
        "reasoning": body.reasoning or {"effort": None, "summary": None},
    }


def response_object(stored: StoredResponse, output: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``Response`` object of a stored (or not stored) response and its output items."""
    p = stored.params
    return {
        "id": stored.id,
        "object": "response",
        "created_at": unix(stored.created_at),
        "status": stored.status,
        "completed_at": unix(stored.completed_at),
        "background": stored.background,
        "error": stored.error,
        "incomplete_details": stored.incomplete_details,
        "instructions": stored.instructions,
        "max_output_tokens": p.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": stored.model,
        "output": output,
        "parallel_tool_calls": p.get("parallel_tool_calls", True),
        "previous_response_id": stored.previous_response_id,
        "conversation": {"id": stored.conversation_id} if stored.conversation_id else None,
        "reasoning": p.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": "default",
        "store": p.get("store", True),
        "temperature": 1.0 if p.get("temperature") is None else p["temperature"],
        "text": p.get("text") or {"format": {"type": "text"}},
        "tool_choice": p.get("tool_choice", "auto"),
        "tools": p.get("tools") or [],
        "top_logprobs": 0,
        "top_p": 1.0 if p.get("top_p") is None else p["top_p"],
        "truncation": p.get("truncation", "disabled"),
        "usage": stored.usage,
        "user": p.get("user"),
        "metadata": p.get("metadata") or {},
    }


class EventNumbers:
    """Builds ``response.*`` stream events, numbering them from ``start``."""

    def __init__(self, start: int = 0) -> None:
        self.next = start

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        out = {"type": kind, **fields, "sequence_number": self.next}
        self.next += 1
        return out

    def state(self, kind: str, response: dict[str, Any]) -> dict[str, Any]:
        """``response.created`` / ``in_progress`` / ``completed`` / ``incomplete`` / ``failed``."""
        return self.event(kind, response=response)

    def text_started(self, item: dict[str, Any], index: int) -> list[dict[str, Any]]:
        empty = {**item, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self.event("response.output_item.added", output_index=index, item=empty),
            self.event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
        ]

    def text_delta(self, item_id: str, index: int, delta: str) -> dict[str, Any]:
        return self.event(
            "response.output_text.delta",
            item_id=item_id,
            output_index=index,
            content_index=0,
            delta=delta,
            logprobs=[],
        )

    def text_done(self, item: dict[str, Any], index: int) -> list[dict[str, Any]]:
        part = item["content"][0]
        return [
            self.event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
                logprobs=[],
            ),
            self.event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def function_call(self, item: dict[str, Any], index: int) -> list[dict[str, Any]]:
        started = {**item, "status": "in_progress", "arguments": ""}
        return [
            self.event("response.output_item.added", output_index=index, item=started),
            self.event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=item["arguments"],
            ),
            self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                name=item["name"],
                output_index=index,
                arguments=item["arguments"],
            ),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def error(self, code: str | None, message: str) -> dict[str, Any]:
        return self.event("error", code=code, message=message, param=None)


# The event that ends the stream of a response with this status. The spec has no
# ``response.cancelled``: ``failed`` would claim an error and ``completed`` a full
# answer; ``incomplete`` says it ended unfinished, its response says why (``cancelled``).
_END_EVENT = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    "cancelled": "response.incomplete",
}


END_EVENT_TYPES = frozenset(_END_EVENT.values())
"""The event types that end a response's stream."""


def end_events(
    ended: StoredResponse, output: list[dict[str, Any]], number: int
) -> list[dict[str, Any]]:
    """The last stream event of a response ended outside the run of its upstream call.

    (``Responses.EndEvents``: given the ended response, its output items and the
    next ``sequence_number``.)
    """
    kind = _END_EVENT[ended.status]
    return [EventNumbers(number).state(kind, response_object(ended, output))]
