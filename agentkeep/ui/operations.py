"""Operations: health, the consistency check, the schema revision, and (admin only) API keys."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from agentkeep.server.deps import service_state
from agentkeep.server.errors import ApiError
from agentkeep.server.keys import create_key, list_keys, revoke_key
from agentkeep.store import migrate
from agentkeep.ui.auth import SignedIn, Visitor, check_csrf
from agentkeep.ui.web import UiRoute, form_data, opt, render

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _require_admin(visitor: Visitor) -> None:
    if not visitor.admin:
        raise ApiError(403, "Only an admin key can manage API keys.", code="forbidden")


@router.get("/operations")
def operations_page(request: Request, visitor: SignedIn) -> Response:
    return _operations(request, visitor)


def _operations(
    request: Request, visitor: Visitor, *, new_key: str | None = None, status_code: int = 200
) -> Response:
    store = visitor.store
    health = store.health()
    return render(
        request,
        "operations.html",
        status_code=status_code,
        health=health,
        head=migrate.head_revision(),
        consistency=store.check_consistency(),
        keys=list_keys(service_state(request).store) if visitor.admin else [],
        new_key=new_key,
    )


@router.post("/keys")
async def create_api_key(request: Request, visitor: SignedIn) -> Response:
    """Create a key (admin); the page shows its plaintext this once."""
    form = await form_data(request)
    check_csrf(visitor, form)
    _require_admin(visitor)
    root = service_state(request).store
    tenant, name = form.get("tenant", "").strip(), opt(form.get("name"))
    _, plaintext = await anyio.to_thread.run_sync(
        lambda: create_key(root, tenant=tenant, name=name)
    )
    return await anyio.to_thread.run_sync(
        lambda: _operations(request, visitor, new_key=plaintext, status_code=201)
    )


@router.post("/keys/{key_id}/revoke")
async def revoke_api_key(request: Request, visitor: SignedIn, key_id: str) -> Response:
    form = await form_data(request)
    check_csrf(visitor, form)
    _require_admin(visitor)
    root = service_state(request).store
    await anyio.to_thread.run_sync(revoke_key, root, key_id)
    return RedirectResponse("/ui/operations#keys", status_code=303)
