"""The chat-completions request for a run: instructions, the thread, the run so far.

Messages: the run's instructions as a ``system`` message, then the thread's
messages in order (those of other runs included; only the last N with the
run's ``truncation_strategy`` ``last_messages``), then what this run did,
step by step: the text it wrote, and for each tool_calls step an assistant
message with the calls followed by one ``tool`` message per submitted output.
Only ``function`` tools are sent upstream (``code_interpreter`` and
``file_search`` have no chat-completions equivalent and are left out).

``max_prompt_tokens`` bounds the prompt tokens of the whole run, as on OpenAI:
each call may use what the earlier calls of the run (``run.input_tokens``)
left, counted with the estimate of :mod:`agentkeep.runner.tokens`. With the
``auto`` truncation strategy (the default) the oldest thread messages are left
out until the prompt fits, keeping at least the newest one; with
``last_messages`` the thread is cut to its last N messages and nothing more.
The instructions and the run's own steps are always sent. When the prompt
cannot fit, :class:`PromptTooLong` is raised and the worker ends the run
``incomplete`` (``incomplete_details.reason = "max_prompt_tokens"``) without
calling the upstream. Without ``max_prompt_tokens`` nothing is left out by
``auto`` (the upstream's context length is not known here).
"""

from __future__ import annotations

from typing import Any

from agentkeep.models import Message, Run
from agentkeep.runner.tokens import estimate_message, estimate_prompt
from agentkeep.store import Store

__all__ = ["PromptTooLong", "build_request", "fit_history"]


class PromptTooLong(Exception):
    """The run's prompt does not fit what is left of its ``max_prompt_tokens``."""

    def __init__(self, needed: int, budget: int) -> None:
        self.needed = needed
        self.budget = budget
        super().__init__(
            f"the prompt needs about {needed} tokens, {budget} are left of max_prompt_tokens"
        )


_TEXT = ("text", "input_text", "output_text")
_PAGE = 1000


def _content(message: Message) -> str | list[dict[str, Any]] | None:
    parts: list[dict[str, Any]] = []
    for block in message.content:
        kind = block.get("type")
        if kind in _TEXT:
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(block.get("refusal", ""))})
        elif kind in ("image_url", "input_image") and message.role == "user":
            image = block.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                parts.append({"type": "image_url", "image_url": {"url": url}})
    if not parts:
        return None
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _thread_messages(store: Store, thread_id: str) -> list[Message]:
    """The thread's messages, oldest first.

    A thread of up to ``_PAGE`` messages is one ``recent()`` read (the keyed read
    of a session's last messages: about 13 µs for a short thread, where a page
    of ``list()`` took 200-350 µs); the older messages of a longer one are read
    page by page, up to the first of those ``recent()`` gave.
    """
    last = store.messages.recent(thread_id, _PAGE)
    if len(last) < _PAGE:
        return last
    first_read = last[0].id
    out: list[Message] = []
    after: str | None = None
    while True:
        page = store.messages.list(thread_id, limit=_PAGE, after=after, order="asc")
        for message in page.items:
            if message.id == first_read:
                return [*out, *last]
            out.append(message)
        if not page.has_more:  # that message was deleted meanwhile: these pages are all
            return out
        after = page.last_id


def _chat_tools(run: Run) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": tool["function"]}
        for tool in run.tools or []
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict)
    ]


def fit_history(
    head: list[dict[str, Any]],
    history: list[dict[str, Any]],
    own: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    run: Run,
) -> list[dict[str, Any]]:
    """The thread messages to send, after the run's truncation strategy and token budget.

    ``head`` (instructions) and ``own`` (the run's steps) are always sent;
    raises :class:`PromptTooLong` when even the shortest allowed prompt does
    not fit (see the module docstring).
    """
    extra = run.extra or {}
    truncation = extra.get("truncation_strategy")
    kind = truncation.get("type") if isinstance(truncation, dict) else "auto"
    if kind == "last_messages":
        keep = truncation.get("last_messages") if isinstance(truncation, dict) else None
        if isinstance(keep, int) and keep >= 0:
            history = history[len(history) - keep :] if keep else []
    limit = extra.get("max_prompt_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool):
        return history
    budget = limit - run.input_tokens
    fixed = estimate_prompt([*head, *own], tools)
    costs = [estimate_message(m) for m in history]
    if kind != "auto":
        needed = fixed + sum(costs)
        if needed > budget:
            raise PromptTooLong(needed, budget)
        return history
    kept = 0
    total = fixed
    for cost in reversed(costs):
        if total + cost > budget:
            break
        total += cost
        kept += 1
    if kept == 0 and costs:  # not even the newest message fits
        raise PromptTooLong(total + costs[-1], budget)
    if total > budget:
        raise PromptTooLong(total, budget)
    return history[len(history) - kept :]


def build_request(store: Store, run: Run) -> dict[str, Any]:
    """The request body (without ``stream``) for the run's next upstream call.

    The run's instructions, then the thread's messages (as many as fit the
    run's ``max_prompt_tokens``), then what the run itself said and the outputs
    of its tool calls. Raises :class:`PromptTooLong` when it cannot fit.
    """
    head = [{"role": "system", "content": run.instructions}] if run.instructions else []
    history, own = _thread_history(store, run)
    steps = _own_steps(store, run, own)
    tools = _chat_tools(run)
    history = fit_history(head, history, steps, tools, run)
    body: dict[str, Any] = {"model": run.model, "messages": [*head, *history, *steps]}
    _add_options(body, run, tools)
    return body


def _thread_history(store: Store, run: Run) -> tuple[list[dict[str, Any]], dict[str, Message]]:
    """The thread's messages as chat messages, and the run's own messages by id."""
    assert run.session_id is not None
    own: dict[str, Message] = {}
    history: list[dict[str, Any]] = []
    for message in _thread_messages(store, run.session_id):
        if message.run_id == run.id:
            own[message.id] = message
            continue
        if message.role not in ("user", "assistant", "system", "developer"):
            continue
        content = _content(message)
        if content is not None:
            history.append({"role": message.role, "content": content})
    return history, own


def _own_steps(store: Store, run: Run, own: dict[str, Message]) -> list[dict[str, Any]]:
    """The run's steps so far: its messages, and each tool-calls step with its outputs.

    None before the run's first upstream call, and nothing read (most runs make
    one call: a read of two statements saved on each): the engine makes a run's
    steps only while a call of it streams or settles, and the settle counts the
    call in ``iterations`` (a run whose call never settled, its process gone, is
    failed, never executed again).
    """
    if run.iterations == 0:
        return []
    messages: list[dict[str, Any]] = []
    for step in store.run_steps.list(run.id, limit=_PAGE, order="asc").items:
        if step.type == "message_creation":
            message_id = step.details.get("message_creation", {}).get("message_id")
            found = own.get(str(message_id))
            content = _content(found) if found is not None else None
            if content is not None:
                messages.append({"role": "assistant", "content": content})
            continue
        calls = [c for c in step.details.get("tool_calls", []) if c.get("type") == "function"]
        if calls and all(c["function"].get("output") is not None for c in calls):
            messages += _answered_calls(calls)
    return messages


def _answered_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An assistant message with the function calls, then one tool message per output."""
    requested = [
        {
            "id": c["id"],
            "type": "function",
            "function": {
                "name": c["function"]["name"],
                "arguments": c["function"].get("arguments") or "",
            },
        }
        for c in calls
    ]
    outputs = [
        {
            "role": "tool",
            "tool_call_id": c["id"],
            "content": out if isinstance(out := c["function"]["output"], str) else str(out),
        }
        for c in calls
    ]
    return [{"role": "assistant", "content": None, "tool_calls": requested}, *outputs]


def _add_options(body: dict[str, Any], run: Run, tools: list[dict[str, Any]]) -> None:
    """The run's tools, tool choice, sampling options and response format, where set."""
    extra = run.extra or {}
    if tools:
        body["tools"] = tools
        choice = extra.get("tool_choice")
        if choice in ("none", "auto", "required") or (
            isinstance(choice, dict) and choice.get("type") == "function"
        ):
            body["tool_choice"] = choice
        if extra.get("parallel_tool_calls") is False:
            body["parallel_tool_calls"] = False
    for key in ("temperature", "top_p", "max_completion_tokens", "reasoning_effort"):
        if extra.get(key) is not None:
            body[key] = extra[key]
    response_format = extra.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        body["response_format"] = response_format
