"""``/v1/threads/{thread_id}/messages``: create, list, retrieve, modify, delete."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Query

from agentkeep._aio_util import arun_op
from agentkeep.errors import NotFound, SessionBusy
from agentkeep.server.bodies import CreateMessage, ModifyMessage
from agentkeep.server.deps import TenantStore
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.lookup import (
    active_run_error,
    amessage_in,
    expired_now,
)
from agentkeep.server.pagination import Pagination, session_page
from agentkeep.server.routes.threads import new_message
from agentkeep.server.schemas import DOCS
from agentkeep.wire.objects import deleted_object, list_object, message_object

__all__ = ["router"]

router = APIRouter(prefix="/v1/threads/{thread_id}/messages", tags=["Assistants"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeating a create with the same key returns the first result, once stored.",
    ),
]


@router.post("", summary="Create a message", response_model=None, responses=DOCS["message"])
async def create_message(
    thread_id: str,
    body: CreateMessage,
    store: TenantStore,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    row = new_message(body)
    row["idempotency_key"] = idempotency_key or None
    # One transaction on the store's async path (no worker thread): the append takes
    # the thread's row, then finds no active run, or rolls back (SessionBusy). 404
    # for a session that is not a thread, nothing written either.
    expired = 0
    while True:
        try:
            message = await arun_op(store.messages.append_if_idle, thread_id, row, kind="thread")
        except NotFound:
            raise NotFound("thread", thread_id) from None
        except SessionBusy as busy:
            # A run waiting for tool outputs past its expires_at is expired on this
            # read, as everywhere (ops.expire_if_due), and is not active: try again.
            expired += 1
            if expired > EXPIRED_RUNS_MAX or not await anyio.to_thread.run_sync(
                expired_now, store, busy.run_id
            ):
                raise active_run_error(thread_id, busy.run_id) from None
            continue
        return JSONResponse(message_object(message))


EXPIRED_RUNS_MAX = 3
"""Runs past their expiry that one create may expire before it answers 400."""


@router.get("", summary="List messages", response_model=None, responses=DOCS["messages"])
async def list_messages(
    thread_id: str,
    store: TenantStore,
    params: Pagination,
    run_id: Annotated[str | None, Query(description="Only the messages of this run.")] = None,
) -> JSONResponse:
    page = await session_page(store, thread_id, "thread", params, run_id or None)
    return JSONResponse(list_object(page, message_object))


@router.get(
    "/{message_id}", summary="Retrieve a message", response_model=None, responses=DOCS["message"]
)
async def retrieve_message(thread_id: str, message_id: str, store: TenantStore) -> JSONResponse:
    message = await amessage_in(store, "thread", thread_id, "message", message_id)
    return JSONResponse(message_object(message))


@router.post(
    "/{message_id}", summary="Modify a message", response_model=None, responses=DOCS["message"]
)
async def modify_message(
    thread_id: str, message_id: str, body: ModifyMessage, store: TenantStore
) -> JSONResponse:
    # The thread's message (one read), then its update (one write) on the store's async path.
    message = await amessage_in(store, "thread", thread_id, "message", message_id)
    if "metadata" in body.model_fields_set:
        message = await arun_op(store.messages.update, message_id, metadata=body.metadata or {})
    return JSONResponse(message_object(message))


@router.delete(
    "/{message_id}", summary="Delete a message", response_model=None, responses=DOCS["deleted"]
)
async def delete_message(thread_id: str, message_id: str, store: TenantStore) -> JSONResponse:
    await amessage_in(store, "thread", thread_id, "message", message_id)
    await arun_op(store.messages.delete, message_id)
    return JSONResponse(deleted_object(message_id, "thread.message.deleted"))
