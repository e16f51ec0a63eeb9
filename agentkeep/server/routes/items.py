"""``/v1/conversations/{conversation_id}/items``: create, list (newest first), retrieve, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agentkeep._aio_util import arun_op
from agentkeep.server.bodies import CreateItems
from agentkeep.server.deps import TenantStore
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.lookup import aget_conversation, amessage_in
from agentkeep.server.pagination import Pagination, session_page
from agentkeep.server.routes.conversations import item_rows, items_field
from agentkeep.server.routes.messages import IdempotencyKey
from agentkeep.server.schemas import DOCS
from agentkeep.server.shapes import IncludeEnum
from agentkeep.wire.objects import conversation_object, item_object, list_object

__all__ = ["router"]

router = APIRouter(prefix="/v1/conversations/{conversation_id}/items", tags=["Conversations"])

Include = Annotated[
    list[IncludeEnum] | None,
    Query(description="Accepted for compatibility; extra fields are not stored."),
]


@router.post("", summary="Create items", response_model=None, responses=DOCS["items"])
async def create_items(
    conversation_id: str,
    body: CreateItems,
    store: TenantStore,
    include: Include = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    rows = item_rows(body.items)
    if idempotency_key:
        for i, row in enumerate(rows):
            row["idempotency_key"] = f"{idempotency_key}:{i}"
    # One write on the store's async path, as a thread's messages (no worker thread),
    # which takes the session only if it is a conversation: nothing is written on a 404.
    with items_field():
        messages = await arun_op(
            store.messages.append_many, conversation_id, rows, kind="conversation"
        )
    data = [item_object(m) for m in messages]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }
    )


@router.get(
    "", summary="List items (newest first by default)", response_model=None, responses=DOCS["items"]
)
async def list_items(
    conversation_id: str, store: TenantStore, params: Pagination, include: Include = None
) -> JSONResponse:
    page = await session_page(store, conversation_id, "conversation", params)
    return JSONResponse(list_object(page, item_object))


@router.get("/{item_id}", summary="Retrieve an item", response_model=None, responses=DOCS["item"])
async def retrieve_item(
    conversation_id: str, item_id: str, store: TenantStore, include: Include = None
) -> JSONResponse:
    item = await amessage_in(store, "conversation", conversation_id, "item", item_id)
    return JSONResponse(item_object(item))


@router.delete(
    "/{item_id}", summary="Delete an item", response_model=None, responses=DOCS["conversation"]
)
async def delete_item(conversation_id: str, item_id: str, store: TenantStore) -> JSONResponse:
    # The conversation's item (one read), its delete (one write), the conversation as left.
    await amessage_in(store, "conversation", conversation_id, "item", item_id)
    await arun_op(store.messages.delete, item_id)
    conversation = await aget_conversation(store, conversation_id)
    return JSONResponse(conversation_object(conversation))
