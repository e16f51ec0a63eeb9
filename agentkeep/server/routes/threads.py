"""``/v1/threads``: create (with initial messages), retrieve, modify, delete."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter

from agentkeep._aio_util import arun_op
from agentkeep.models import Session
from agentkeep.server.bodies import CreateMessage, CreateThread, ModifyThread
from agentkeep.server.deps import TenantStore
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.lookup import aget_thread, aretry_on_conflict
from agentkeep.server.schemas import DOCS
from agentkeep.server.versions import ExpectedVersion, versioned
from agentkeep.store import Store
from agentkeep.wire.objects import deleted_object, thread_message_content, thread_object

__all__ = ["new_message", "router"]

router = APIRouter(prefix="/v1/threads", tags=["Assistants"])


def new_message(body: CreateMessage, field: str = "") -> dict[str, Any]:
    """A create-message body as a row for ``store.messages.append_many``."""
    extra: dict[str, Any] = {}
    if body.attachments:
        extra["attachments"] = body.attachments
    return {
        "role": body.role,
        "content": thread_message_content(body.content, f"{field}content"),
        "metadata": body.metadata,
        "extra": extra,
    }


@router.post("", summary="Create a thread", response_model=None, responses=DOCS["thread"])
async def create_thread(store: TenantStore, body: CreateThread | None = None) -> JSONResponse:
    body = body or CreateThread()
    rows = [new_message(m, f"messages[{i}].") for i, m in enumerate(body.messages or [])]
    extra = {"tool_resources": body.tool_resources} if body.tool_resources else None
    if rows:  # the thread and its messages in one transaction, in a worker thread
        thread = await anyio.to_thread.run_sync(_create_with_messages, store, body, extra, rows)
    else:  # one INSERT on the store's async path: no worker thread
        thread = await arun_op(
            store.sessions.create, kind="thread", metadata=body.metadata, extra=extra
        )
    return JSONResponse(thread_object(thread))


def _create_with_messages(
    store: Store, body: CreateThread, extra: dict[str, Any] | None, rows: list[dict[str, Any]]
) -> Session:
    with store.transaction():
        thread = store.sessions.create(kind="thread", metadata=body.metadata, extra=extra)
        store.messages.append_many(thread.id, rows)
    return thread


@router.get(
    "/{thread_id}", summary="Retrieve a thread", response_model=None, responses=DOCS["thread"]
)
async def retrieve_thread(thread_id: str, store: TenantStore) -> JSONResponse:
    thread = await aget_thread(store, thread_id)
    return versioned(thread_object(thread), thread.version)


@router.post(
    "/{thread_id}", summary="Modify a thread", response_model=None, responses=DOCS["thread"]
)
async def modify_thread(
    thread_id: str,
    body: ModifyThread,
    store: TenantStore,
    expected: ExpectedVersion,
) -> JSONResponse:
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "metadata" in given:
        changes["metadata"] = body.metadata or {}

    async def update() -> Session:
        if "tool_resources" not in given:  # one statement, of a thread only
            return await arun_op(
                store.sessions.update,
                thread_id,
                kind="thread",
                expected_version=expected,
                **changes,
            )
        # The thread's extra is read, then written only at the version read (else read
        # again): one change, one version, nothing another writer set is lost.
        current = await aget_thread(store, thread_id)
        extra = {**current.extra, "tool_resources": body.tool_resources or {}}
        return await arun_op(
            store.sessions.update,
            thread_id,
            kind="thread",
            expected_version=current.version if expected is None else expected,
            extra=extra,
            **changes,
        )

    thread = await aretry_on_conflict(update, once=expected is not None)
    return versioned(thread_object(thread), thread.version)


@router.delete(
    "/{thread_id}", summary="Delete a thread", response_model=None, responses=DOCS["deleted"]
)
async def delete_thread(thread_id: str, store: TenantStore) -> JSONResponse:
    # One statement, of a thread only (a conversation's id is a 404 here).
    await arun_op(store.sessions.delete, thread_id, kind="thread")
    return JSONResponse(deleted_object(thread_id, "thread.deleted"))
