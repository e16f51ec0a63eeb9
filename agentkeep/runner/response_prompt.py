"""A Responses request as a chat-completions request.

Messages: ``instructions`` as a ``system`` message, then the items in order:
a message's text parts joined (images kept as ``image_url`` parts for the
user), ``developer`` sent as ``system`` (what most chat upstreams accept),
consecutive ``function_call`` items as one assistant message with
``tool_calls`` (joined to the assistant text just before them), each
``function_call_output`` as a ``tool`` message; reasoning items are left
out. Function tools, ``tool_choice``, ``parallel_tool_calls``,
``temperature``, ``top_p``, ``max_output_tokens`` (as
``max_completion_tokens``) and ``text.format`` (as ``response_format``) are
translated; other tool types are refused with a 400 naming the tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentkeep.errors import InvalidInput
from agentkeep.wire.responses import CreateResponse

__all__ = ["chat_messages", "chat_request"]


def _text_of(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    out = []
    for part in parts or []:
        if isinstance(part, dict):
            value = part.get("text", part.get("refusal"))
            if isinstance(value, str):
                out.append(value)
    return "".join(out)


def _message_content(item: dict[str, Any]) -> str | list[dict[str, Any]]:
    parts = item.get("content") or []
    images = [
        p
        for p in parts
        if isinstance(p, dict) and p.get("type") == "input_image" and p.get("image_url")
    ]
    if not images or item.get("role") != "user":
        return _text_of(parts)
    out: list[dict[str, Any]] = []
    for part in parts:
        if part.get("type") == "input_image" and part.get("image_url"):
            out.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
    return out


def chat_messages(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Response items as chat messages, in order."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            role = "system" if role == "developer" else role
            messages.append({"role": role, "content": _message_content(item)})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last["content"] == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": _text_of(item["output"]),
                }
            )
    return messages


_TOOL_FIELDS = (
    ("parameters", dict, "a JSON schema object"),
    ("description", str, "a string"),
    ("strict", bool, "a boolean"),
)


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise InvalidInput(
                f"tool type {tool.get('type')!r} is not supported; only function tools are",
                field=f"tools[{i}].type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput("is required", field=f"tools[{i}].name")
        for key, kind, what in _TOOL_FIELDS:
            if tool.get(key) is not None and not isinstance(tool[key], kind):
                raise InvalidInput(f"must be {what}", field=f"tools[{i}].{key}")
        function: dict[str, Any] = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidInput(
        "must be auto, none, required or {'type': 'function', 'name': ...}", field="tool_choice"
    )


def _choice_in_tools(choice: Any, tools: list[dict[str, Any]]) -> None:
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        if name not in {tool.get("name") for tool in tools}:
            raise InvalidInput(f"names no tool of the request: {name!r}", field="tool_choice")


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidInput("must be a JSON schema object", field="text.format.schema")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        schema.setdefault("name", "response")
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidInput("must be text, json_object or json_schema", field="text.format.type")


def chat_request(body: CreateResponse, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions body (without ``stream``) for ``body`` over ``items``."""
    messages = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    messages.extend(chat_messages(items))
    out: dict[str, Any] = {"model": body.model, "messages": messages}
    tool_choice = _tool_choice(body.tool_choice) if body.tool_choice is not None else None
    if body.tools:
        out["tools"] = _tools(body.tools)
        if tool_choice is not None:
            _choice_in_tools(tool_choice, body.tools)
            out["tool_choice"] = tool_choice
        if body.parallel_tool_calls is False:
            out["parallel_tool_calls"] = False
    elif isinstance(tool_choice, dict) or tool_choice == "required":
        raise InvalidInput(
            "asks for a tool call, but the request has no tools", field="tool_choice"
        )
    if body.temperature is not None:
        out["temperature"] = body.temperature
    if body.top_p is not None:
        out["top_p"] = body.top_p
    if body.max_output_tokens is not None:
        out["max_completion_tokens"] = body.max_output_tokens
    response_format = _response_format(body.text)
    if response_format is not None:
        out["response_format"] = response_format
    return out
