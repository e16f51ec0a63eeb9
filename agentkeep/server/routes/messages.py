"""``/v1/threads/{thread_id}/messages``: create, list, retrieve, modify, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from agentkeep._aio_util import arun_op
from agentkeep.errors import NotFound
from agentkeep.models import Message
from agentkeep.server.bodies import CreateMessage, ModifyMessage
from agentkeep.server.deps import TenantStore
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.lookup import arequire_thread, require_no_active_run, require_thread
from agentkeep.server.pagination import Pagination
from agentkeep.server.routes.threads import new_message
from agentkeep.server.schemas import DOCS
from agentkeep.store import Store
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


def _get(store: Store, thread_id: str, message_id: str) -> Message:
    require_thread(store, thread_id)
    try:
        return store.messages.get(message_id, session_id=thread_id)
    except NotFound:
        raise NotFound("message", message_id) from None


@router.post("", summary="Create a message", response_model=None, responses=DOCS["message"])
def create_message(
    thread_id: str,
    body: CreateMessage,
    store: TenantStore,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    row = new_message(body)
    row["idempotency_key"] = idempotency_key or None
    with store.transaction(savepoints=False):
        # Append first: it locks the thread's row, so the check below sees every run
        # committed before us (a run created meanwhile rolls this message back). The
        # check also answers 404 for a session that is not a thread (rolled back too).
        try:
            message = store.messages.append(thread_id, **row)
        except NotFound:
            raise NotFound("thread", thread_id) from None
        require_no_active_run(store, thread_id)
    return JSONResponse(message_object(message))


@router.get("", summary="List messages", response_model=None, responses=DOCS["messages"])
async def list_messages(
    thread_id: str,
    store: TenantStore,
    params: Pagination,
    run_id: Annotated[str | None, Query(description="Only the messages of this run.")] = None,
) -> JSONResponse:
    # On the store's async path: both reads without a worker thread (inline on
    # SQLite, psycopg's async connections on PostgreSQL). A thread deleted between
    # them leaves an empty first page, which page() answers with NotFound.
    await arequire_thread(store, thread_id)
    try:
        page = await arun_op(
            store.messages.page,
            thread_id,
            run_id=run_id or None,
            limit=params.limit,
            order=params.order,
            after=params.after,
            before=params.before,
        )
    except NotFound:
        raise NotFound("thread", thread_id) from None
    return JSONResponse(list_object(page, message_object))


@router.get(
    "/{message_id}", summary="Retrieve a message", response_model=None, responses=DOCS["message"]
)
def retrieve_message(thread_id: str, message_id: str, store: TenantStore) -> JSONResponse:
    return JSONResponse(message_object(_get(store, thread_id, message_id)))


@router.post(
    "/{message_id}", summary="Modify a message", response_model=None, responses=DOCS["message"]
)
def modify_message(
    thread_id: str, message_id: str, body: ModifyMessage, store: TenantStore
) -> JSONResponse:
    with store.transaction():
        message = _get(store, thread_id, message_id)
        if "metadata" in body.model_fields_set:
            message = store.messages.update(message_id, metadata=body.metadata or {})
    return JSONResponse(message_object(message))


@router.delete(
    "/{message_id}", summary="Delete a message", response_model=None, responses=DOCS["deleted"]
)
def delete_message(thread_id: str, message_id: str, store: TenantStore) -> JSONResponse:
    with store.transaction():
        _get(store, thread_id, message_id)
        store.messages.delete(message_id)
    return JSONResponse(deleted_object(message_id, "thread.message.deleted"))
