"""``/v1/models``: the models runs can use (the configured list, else the upstream's).

``AGENTKEEP_LLM_MODELS`` (comma-separated) names them; without it the run
upstream's own ``GET /models`` is asked (a 502 when it fails), and without an
upstream the list is empty.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from agentkeep.runner.upstream import UpstreamError
from agentkeep.server.deps import ServiceState, ServiceStateDep, tenant_store
from agentkeep.server.errors import ApiError
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.schemas import DOCS

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["Models"], dependencies=[Depends(tenant_store)])

_OWNER = "agentkeep"


def _model(item: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``model`` object from a configured name or an upstream entry."""
    created = item.get("created")
    owner = item.get("owned_by")
    return {
        "id": item["id"],
        "object": "model",
        "created": created if isinstance(created, int) and not isinstance(created, bool) else 0,
        "owned_by": owner if isinstance(owner, str) else _OWNER,
    }


async def _models(state: ServiceState) -> list[dict[str, Any]]:
    if state.settings.llm_models:
        return [_model({"id": name}) for name in state.settings.llm_models]
    client = getattr(state.worker, "client", None)
    if client is None:
        return []
    try:
        return [_model(m) for m in await client.models()]
    except UpstreamError as exc:
        raise ApiError(
            502,
            f"The upstream LLM did not list its models: {exc}",
            type="server_error",
            code="upstream_error",
        ) from exc


@router.get("", summary="List models", response_model=None, responses=DOCS["models"])
async def list_models(request_state: ServiceStateDep) -> JSONResponse:
    return JSONResponse({"object": "list", "data": await _models(request_state)})


@router.get("/{model}", summary="Retrieve a model", response_model=None, responses=DOCS["model"])
async def retrieve_model(model: str, request_state: ServiceStateDep) -> JSONResponse:
    for item in await _models(request_state):
        if item["id"] == model:
            return JSONResponse(item)
    raise ApiError(
        404, f"The model '{model}' does not exist.", param="model", code="model_not_found"
    )
