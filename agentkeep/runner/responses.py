"""Responses: what a request means before the model is called, and what is stored after.

:func:`prepare` (or :func:`aprepare`, on the store's async connections) checks the request's state
fields, reads the context — the whole chain before ``previous_response_id``
(one recursive query; its ``instructions`` are not carried over) or the
items of ``conversation`` — resolves item references and builds the
chat-completions request. :func:`settle` stores what one upstream call
produced in one transaction: its LLM usage row (tokens, latency, cost), the
response with its input and output items (when ``store``), the final
stream events, and the new items appended to the conversation.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from agentkeep import metrics
from agentkeep.errors import InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models.responses import StoredResponse
from agentkeep.runner import notify
from agentkeep.runner.response_prompt import chat_request
from agentkeep.store import Store
from agentkeep.store._steps import Op, operation
from agentkeep.store.responses import DEFAULT_TTL_SECONDS
from agentkeep.wire.objects import item_input, item_object
from agentkeep.wire.responses import CreateResponse, echo_params, input_items, response_object

__all__ = [
    "Creating",
    "EventBatch",
    "Outcome",
    "Prepared",
    "PreviousResponseNotFound",
    "Settling",
    "aprepare",
    "aprepare_stored",
    "create_row",
    "prepare",
    "prepare_stored",
    "settle",
    "store_response_events",
    "usage_row",
]

_PAGE = 1000


class PreviousResponseNotFound(InvalidInput):
    """``previous_response_id`` names no live response of this tenant."""

    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"Previous response with id '{response_id}' not found.", field="previous_response_id"
        )


@dataclass
class Prepared:
    """A checked request: the response to be, its new input items, the upstream body."""

    body: CreateResponse
    response: StoredResponse
    input: list[dict[str, Any]]
    chat: dict[str, Any]
    ttl_seconds: float = DEFAULT_TTL_SECONDS

    @property
    def stored(self) -> bool:
        return self.body.store is not False


@dataclass
class Outcome:
    """What the upstream call produced, ready to store."""

    status: str
    output: list[dict[str, Any]]
    usage: dict[str, Any]
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    usage_row: dict[str, Any] = field(default_factory=dict)
    final_events: list[dict[str, Any]] = field(default_factory=list)
    unsaved_events: list[dict[str, Any]] = field(default_factory=list)
    """Events streamed already but not stored yet: stored before ``final_events``."""


def _conversation_id(value: str | dict[str, Any] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    ident = value.get("id")
    if not isinstance(ident, str) or not ident:
        raise InvalidInput("must be a conversation id or {'id': ...}", field="conversation")
    return ident


def _conversation_items(store: Store, conversation_id: str) -> Op[list[dict[str, Any]]]:
    try:
        session = yield from operation(store.sessions.get, conversation_id)
    except NotFound:
        raise NotFound("conversation", conversation_id) from None
    if session.kind != "conversation":
        raise NotFound("conversation", conversation_id)
    out: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = yield from operation(
            store.messages.list, conversation_id, limit=_PAGE, after=after, order="asc"
        )
        out.extend(item_object(m) for m in page.items)
        if not page.has_more:
            return out
        after = page.last_id


def _resolve(store: Store, items: list[dict[str, Any]]) -> Op[list[dict[str, Any]]]:
    """Item references replaced by (copies of) the items they name."""
    wanted = [i["id"] for i in items if i["type"] == "item_reference"]
    if not wanted:
        return items
    found = yield from operation(store.responses.find_items, wanted)
    out = []
    for index, item in enumerate(items):
        if item["type"] != "item_reference":
            out.append(item)
            continue
        target = found.get(item["id"])
        if target is None:
            try:
                target = item_object((yield from operation(store.messages.get, item["id"])))
            except NotFound:
                raise InvalidInput(
                    f"no item with id {item['id']!r}", field=f"input[{index}].id"
                ) from None
        prefix = target["id"].split("_", 1)[0]
        out.append({**target, "id": new_id(prefix)})
    return out


def prepare(store: Store, body: CreateResponse, *, ttl_seconds: float) -> Prepared:
    """Check ``body``, read its context and build the upstream request."""
    return store._core.run_op(_prepare(store, body, ttl_seconds))


async def aprepare(store: Store, body: CreateResponse, *, ttl_seconds: float) -> Prepared:
    """:func:`prepare` on the store's async connections (no worker thread)."""
    return await store._core.arun_op(_prepare(store, body, ttl_seconds))


def _prepare(store: Store, body: CreateResponse, ttl_seconds: float) -> Op[Prepared]:
    conversation_id = _conversation_id(body.conversation)
    if conversation_id and body.previous_response_id:
        raise InvalidInput(
            "give conversation or previous_response_id, not both", field="conversation"
        )
    if body.background and body.store is False:
        raise InvalidInput("a background response must be stored (store: true)", field="background")
    items = input_items(body.input)
    prior: list[dict[str, Any]] = []
    if body.previous_response_id:
        try:
            prior = yield from operation(store.responses.context, body.previous_response_id)
        except NotFound:
            raise PreviousResponseNotFound(body.previous_response_id) from None
    elif conversation_id:
        prior = yield from _conversation_items(store, conversation_id)
    items = yield from _resolve(store, items)
    if not items and not prior:
        raise InvalidInput("is required: give at least one input item", field="input")
    chat = chat_request(body, prior + items)
    now = datetime.now(UTC)
    response = StoredResponse.model_construct(
        id=new_id("resp"),
        tenant_id=store.tenant_id,
        status="queued" if body.background else "in_progress",
        model=body.model,
        instructions=body.instructions,
        previous_response_id=body.previous_response_id,
        conversation_id=conversation_id,
        background=bool(body.background),
        params=echo_params(body),
        error=None,
        incomplete_details=None,
        usage=None,
        cost_usd=None,
        worker_id=None,
        created_at=now,
        updated_at=now,
        completed_at=None,
        expires_at=now,
    )
    return Prepared(body=body, response=response, input=items, chat=chat, ttl_seconds=ttl_seconds)


def prepare_stored(store: Store, response: StoredResponse) -> Prepared:
    """A stored (queued background) response, ready to run: its request rebuilt from its rows."""
    return store._core.run_op(_prepare_stored(store, response))


async def aprepare_stored(store: Store, response: StoredResponse) -> Prepared:
    """:func:`prepare_stored` on the store's async connections (no worker thread)."""
    return await store._core.arun_op(_prepare_stored(store, response))


def _prepare_stored(store: Store, response: StoredResponse) -> Op[Prepared]:
    p = response.params
    body = CreateResponse(
        model=response.model,
        instructions=response.instructions,
        tools=p.get("tools") or None,
        tool_choice=p.get("tool_choice"),
        parallel_tool_calls=p.get("parallel_tool_calls"),
        max_output_tokens=p.get("max_output_tokens"),
        temperature=p.get("temperature"),
        top_p=p.get("top_p"),
        text=p.get("text"),
        store=True,
        background=True,
        previous_response_id=response.previous_response_id,
        conversation=response.conversation_id,
    )
    items = yield from operation(store.responses.items, response.id, kind="input")
    prior: list[dict[str, Any]] = []
    if response.previous_response_id:
        try:
            prior = yield from operation(store.responses.context, response.previous_response_id)
        except NotFound:
            prior = []  # the earlier response expired or was deleted since: run on what is left
    elif response.conversation_id:
        prior = yield from _conversation_items(store, response.conversation_id)
    chat = chat_request(body, prior + items)
    return Prepared(body=body, response=response, input=items, chat=chat)


def create_row(store: Store, prepared: Prepared, events: list[dict[str, Any]]) -> None:
    """Store the response (queued or in progress) with its input items and first events."""
    _store_new(store, prepared, prepared.response.status, events=events)


EventBatch = tuple[Store, str, Sequence[Mapping[str, Any]]]
"""A streamed response's events to store: its tenant's store, the response id, the events."""


def store_response_events(batches: Sequence[EventBatch]) -> None:
    """Store the event batches of several responses in one transaction (a group commit).

    The stores are tenant views of one store; each tenant's events are one
    write (:meth:`~agentkeep.store.responses.Responses.append_events_many`),
    all or nothing. The process's followers are woken once it commits.
    """
    tenants: dict[str, tuple[Store, dict[str, list[Mapping[str, Any]]]]] = {}
    for store, response_id, events in batches:
        group = tenants.setdefault(store.tenant_id, (store, {}))[1]
        group.setdefault(response_id, []).extend(events)
    root = batches[0][0]
    with root.transaction(savepoints=False):
        for store, group in tenants.values():
            store.responses.append_events_many(group)
        root.after_commit(notify.notify)


Creating = tuple[Store, Prepared, list[dict[str, Any]]]
"""A response to store with its first events: the arguments of :func:`create_row`."""
Settling = tuple[Store, Prepared, Outcome, bool]
"""A response to settle: the arguments of :func:`settle`."""


def _store_new(store: Store, prepared: Prepared, status: str, **fields: Any) -> StoredResponse:
    """Store the prepared response with its input items (and ``fields``: output, usage, ...)."""
    r = prepared.response
    return store.responses.create(
        id=r.id,
        model=r.model,
        input_items=prepared.input,
        status=status,
        instructions=r.instructions,
        previous_response_id=r.previous_response_id,
        conversation_id=r.conversation_id,
        background=r.background,
        params=r.params,
        ttl_seconds=prepared.ttl_seconds,
        worker_id=r.worker_id,
        **fields,
    )


def _conversation_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, item in enumerate(items):
        if item["type"] not in ("message", "function_call", "function_call_output"):
            continue
        row = item_input(item, f"items[{i}]")
        row["id"] = item["id"]
        rows.append(row)
    return rows


def settle(
    store: Store, prepared: Prepared, outcome: Outcome, row_exists: bool
) -> StoredResponse | None:
    """Record the call and store the ended response; ``None`` if it was cancelled meanwhile."""
    r = prepared.response
    with store.transaction(savepoints=False):
        usage = store.usage.record(**outcome.usage_row)
        store.after_commit(functools.partial(metrics.observe_usage, usage))
        cost: Decimal | None = usage.cost_usd
        ended: StoredResponse | None
        if not prepared.stored:
            ended = None
        elif row_exists:

            def last_events(ended: StoredResponse) -> list[dict[str, Any]]:
                final = outcome.final_events
                final[-1] = {**final[-1], "response": response_object(ended, outcome.output)}
                return [*outcome.unsaved_events, *final]

            ended = store.responses.finish(
                r.id,
                status=outcome.status,
                output_items=outcome.output,
                usage=outcome.usage,
                error=outcome.error,
                incomplete_details=outcome.incomplete_details,
                cost_usd=cost,
                events=last_events,
            )
            if ended is None:
                return None
        else:
            ended = _store_new(
                store,
                prepared,
                outcome.status,
                output_items=outcome.output,
                usage=outcome.usage,
                error=outcome.error,
                incomplete_details=outcome.incomplete_details,
                cost_usd=cost,
            )
        if r.conversation_id and outcome.status in ("completed", "incomplete"):
            rows = _conversation_rows(prepared.input + outcome.output)
            if rows:
                store.messages.append_many(r.conversation_id, rows)
    if ended is None:  # not stored: the response as it would have been
        now = datetime.now(UTC)
        ended = r.model_copy(
            update={
                "status": outcome.status,
                "usage": outcome.usage,
                "error": outcome.error,
                "incomplete_details": outcome.incomplete_details,
                "cost_usd": cost,
                "updated_at": now,
                "completed_at": now if outcome.status == "completed" else None,
            }
        )
    return ended


def usage_row(
    prepared: Prepared,
    *,
    provider: str,
    model: str | None,
    tokens: tuple[int, int, int, int],
    latency_ms: int,
    error: str | None,
    response: str | None,
    upstream_id: str | None,
) -> dict[str, Any]:
    """The keyword arguments of ``store.usage.record`` for one upstream call."""
    chat = prepared.chat
    metadata = {"response_id": prepared.response.id}
    if upstream_id:
        metadata["upstream_response_id"] = upstream_id[:512]
    return {
        "provider": provider,
        "model": str(model or chat.get("model") or "unknown"),
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cached_tokens": tokens[2],
        "reasoning_tokens": tokens[3],
        "latency_ms": latency_ms,
        "status": "success" if error is None else "error",
        "error_message": error,
        "prompt": json.dumps(chat.get("messages", [])),
        "response": response,
        "input_params": {k: v for k, v in chat.items() if k not in ("messages", "model")},
        "session_id": prepared.response.conversation_id,
        "metadata": metadata,
    }
