"""``/v1/conversations``: create (with initial items), retrieve, update, delete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from fastapi import APIRouter

from agentkeep._aio_util import arun_op
from agentkeep.errors import InvalidInput
from agentkeep.models import Session
from agentkeep.server.bodies import CreateConversation, UpdateConversation
from agentkeep.server.deps import TenantStore
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.lookup import aget_conversation
from agentkeep.server.schemas import DOCS
from agentkeep.server.versions import ExpectedVersion, versioned
from agentkeep.store import Store
from agentkeep.wire.objects import conversation_object, deleted_object, item_input

__all__ = ["item_rows", "items_field", "router"]

router = APIRouter(prefix="/v1/conversations", tags=["Conversations"])


def item_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as rows for ``store.messages.append_many``."""
    return [item_input(item, f"items[{i}]") for i, item in enumerate(items)]


@contextmanager
def items_field() -> Iterator[None]:
    """Name store validation errors after ``items[i]``, the request's field."""
    try:
        yield
    except InvalidInput as exc:
        if exc.field and exc.field.startswith("messages["):
            field = "items" + exc.field[len("messages") :]
            message = str(exc)
            if message.startswith(f"{exc.field}: "):
                message = message[len(exc.field) + 2 :]
            raise InvalidInput(message, field=field) from exc
        raise


@router.post(
    "", summary="Create a conversation", response_model=None, responses=DOCS["conversation"]
)
async def create_conversation(
    store: TenantStore, body: CreateConversation | None = None
) -> JSONResponse:
    body = body or CreateConversation()
    rows = item_rows(body.items or [])
    if rows:  # the conversation and its items in one transaction, in a worker thread
        conversation = await anyio.to_thread.run_sync(_create_with_items, store, body, rows)
    else:  # one INSERT on the store's async path: no worker thread
        conversation = await arun_op(
            store.sessions.create, kind="conversation", metadata=body.metadata
        )
    return JSONResponse(conversation_object(conversation))


def _create_with_items(
    store: Store, body: CreateConversation, rows: list[dict[str, Any]]
) -> Session:
    with items_field(), store.transaction():
        conversation = store.sessions.create(kind="conversation", metadata=body.metadata)
        store.messages.append_many(conversation.id, rows)
    return conversation


@router.get(
    "/{conversation_id}",
    summary="Retrieve a conversation",
    response_model=None,
    responses=DOCS["conversation"],
)
async def retrieve_conversation(conversation_id: str, store: TenantStore) -> JSONResponse:
    conversation = await aget_conversation(store, conversation_id)
    return versioned(conversation_object(conversation), conversation.version)


@router.post(
    "/{conversation_id}",
    summary="Update a conversation",
    response_model=None,
    responses=DOCS["conversation"],
)
async def update_conversation(
    conversation_id: str,
    body: UpdateConversation,
    store: TenantStore,
    expected: ExpectedVersion,
) -> JSONResponse:
    # One statement, of a conversation only (a thread's id is a 404 here).
    conversation = await arun_op(
        store.sessions.update,
        conversation_id,
        kind="conversation",
        expected_version=expected,
        metadata=body.metadata or {},
    )
    return versioned(conversation_object(conversation), conversation.version)


@router.delete(
    "/{conversation_id}",
    summary="Delete a conversation",
    response_model=None,
    responses=DOCS["deleted"],
)
async def delete_conversation(conversation_id: str, store: TenantStore) -> JSONResponse:
    # One statement, of a conversation only (a thread's id is a 404 here).
    await arun_op(store.sessions.delete, conversation_id, kind="conversation")
    return JSONResponse(deleted_object(conversation_id, "conversation.deleted"))
