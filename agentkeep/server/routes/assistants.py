"""``/v1/assistants``: create, list, retrieve, modify, delete (agents in the store)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from agentkeep._aio_util import arun_op
from agentkeep.models import Agent
from agentkeep.server.bodies import CreateAssistant, ModifyAssistant
from agentkeep.server.deps import TenantStore
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.lookup import aretry_on_conflict
from agentkeep.server.pagination import Pagination
from agentkeep.server.schemas import DOCS
from agentkeep.server.versions import ExpectedVersion, versioned
from agentkeep.wire.objects import (
    ASSISTANT_EXTRA_FIELDS,
    assistant_object,
    deleted_object,
    list_object,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/assistants", tags=["Assistants"])


def _extra(body: CreateAssistant | ModifyAssistant) -> dict[str, Any]:
    return {
        name: getattr(body, name)
        for name in ASSISTANT_EXTRA_FIELDS
        if name in body.model_fields_set and getattr(body, name) is not None
    }


@router.post("", summary="Create an assistant", response_model=None, responses=DOCS["assistant"])
async def create_assistant(body: CreateAssistant, store: TenantStore) -> JSONResponse:
    agent = await arun_op(  # one INSERT on the store's async path
        store.agents.create,
        model=body.model,
        name=body.name,
        description=body.description,
        instructions=body.instructions,
        tools=body.tools,
        metadata=body.metadata,
        extra=_extra(body),
    )
    return JSONResponse(assistant_object(agent))


@router.get("", summary="List assistants", response_model=None, responses=DOCS["assistants"])
async def list_assistants(store: TenantStore, params: Pagination) -> JSONResponse:
    page = await arun_op(
        store.agents.list,
        limit=params.limit,
        order=params.order,
        after=params.after,
        before=params.before,
    )
    return JSONResponse(list_object(page, assistant_object))


@router.get(
    "/{assistant_id}",
    summary="Retrieve an assistant",
    response_model=None,
    responses=DOCS["assistant"],
)
async def retrieve_assistant(
    assistant_id: str,
    store: TenantStore,
    version: Annotated[
        int | None,
        Query(ge=1, description="agentkeep extension: the assistant as it was at this version."),
    ] = None,
) -> JSONResponse:
    agent = await arun_op(store.agents.get, assistant_id, version=version)
    return versioned(assistant_object(agent), agent.version)


def _versioned(agent: Agent) -> dict[str, Any]:
    return {**assistant_object(agent), "version": agent.version}


@router.get(
    "/{assistant_id}/versions",
    summary="List an assistant's versions (agentkeep extension)",
    response_model=None,
)
async def list_assistant_versions(
    assistant_id: str,
    store: TenantStore,
    limit: Annotated[int, Query(ge=1, le=100, description="Versions to return, 1 to 100.")] = 20,
    order: Annotated[Literal["asc", "desc"], Query(description="By version.")] = "desc",
    after: Annotated[
        int | None, Query(ge=0, description="A version: list the versions after it.")
    ] = None,
) -> JSONResponse:
    """Every version of the assistant, the current one included, each with its ``version``.

    ``first_id`` / ``last_id`` are the first and last version numbers (as strings);
    pass ``last_id`` as ``after`` for the next page.
    """
    page = await arun_op(
        store.agents.versions, assistant_id, limit=limit, order=order, after_version=after
    )
    out = list_object(page, _versioned)
    if page.items:
        out["first_id"], out["last_id"] = str(page.items[0].version), str(page.items[-1].version)
    return JSONResponse(out)


@router.post(
    "/{assistant_id}",
    summary="Modify an assistant",
    response_model=None,
    responses=DOCS["assistant"],
)
async def modify_assistant(
    assistant_id: str,
    body: ModifyAssistant,
    store: TenantStore,
    expected: ExpectedVersion,
) -> JSONResponse:
    given = body.model_fields_set
    changes: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("model", "name", "description", "instructions", "metadata")
        if name in given
    }
    if "tools" in given:
        changes["tools"] = body.tools or []
    if changes.get("model", "") is None:
        del changes["model"]  # null keeps the model, as OpenAI does
    cleared = [n for n in ASSISTANT_EXTRA_FIELDS if n in given and getattr(body, n) is None]
    extra_changes = _extra(body)

    async def merge() -> Agent:
        if not (extra_changes or cleared):
            return await arun_op(
                store.agents.update, assistant_id, expected_version=expected, **changes
            )
        # The extra is read, then written only at the version read (else read again): one
        # change, one version, nothing another writer set is lost.
        current = await arun_op(store.agents.get, assistant_id)
        extra = {k: v for k, v in current.extra.items() if k not in cleared}
        return await arun_op(
            store.agents.update,
            assistant_id,
            expected_version=current.version if expected is None else expected,
            extra={**extra, **extra_changes},
            **changes,
        )

    agent = await aretry_on_conflict(merge, once=expected is not None)
    return versioned(assistant_object(agent), agent.version)


@router.delete(
    "/{assistant_id}", summary="Delete an assistant", response_model=None, responses=DOCS["deleted"]
)
async def delete_assistant(assistant_id: str, store: TenantStore) -> JSONResponse:
    await arun_op(store.agents.delete, assistant_id)
    return JSONResponse(deleted_object(assistant_id, "assistant.deleted"))
