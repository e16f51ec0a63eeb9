"""Operations: health and the schema revision; the doctor's checks on demand; (admin only) backups and API keys.

A page view reads only cheap things (health, the backup catalog, the keys).
The doctor's checks (:func:`agentkeep.lifecycle.doctor.check_store`) read the
whole database (SQLite's ``quick_check``, the consistency of every tenant), so
they run when the button asks for them: every check for an admin key; for a
tenant's key the schema revision and that tenant's consistency, nothing of the
database as a whole (disk, backups, WAL) or of other tenants.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from agentkeep.lifecycle.doctor import DoctorReport, check_store
from agentkeep.models import BackupCheck
from agentkeep.store import migrate
from agentkeep.store.api_keys import create_key, list_keys, revoke_key
from agentkeep.ui.auth import SignedIn, Visitor, check_csrf
from agentkeep.ui.web import PageError, UiRoute, form_data, opt, render, service

__all__ = ["router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _require_admin(visitor: Visitor) -> None:
    if not visitor.admin:
        raise PageError(403, "Only an admin key can manage backups and API keys.")


@router.get("/operations")
def operations_page(request: Request, visitor: SignedIn) -> Response:
    return _operations(request, visitor)


def _operations(
    request: Request,
    visitor: Visitor,
    *,
    new_key: str | None = None,
    checked: BackupCheck | None = None,
    doctor: DoctorReport | None = None,
    doctor_ms: float | None = None,
    status_code: int = 200,
) -> Response:
    store = visitor.store
    health = store.health()
    root = service(request).store
    return render(
        request,
        "operations.html",
        status_code=status_code,
        health=health,
        head=migrate.head_revision(),
        doctor=doctor,
        doctor_ms=doctor_ms,
        keys=list_keys(root) if visitor.admin else [],
        new_key=new_key,
        backups=root.backups.list(limit=50) if visitor.admin else [],
        checked=checked,
    )


@router.post("/operations/doctor")
async def run_doctor(request: Request, visitor: SignedIn) -> Response:
    """Run the doctor's checks now (all of them for an admin) and show the page with them."""
    check_csrf(visitor, await form_data(request))
    state = service(request)
    tenant = None if visitor.admin else visitor.tenant
    started = time.perf_counter()
    report = await anyio.to_thread.run_sync(
        lambda: check_store(state.store, state.settings, tenant=tenant)
    )
    took = (time.perf_counter() - started) * 1000
    return await anyio.to_thread.run_sync(
        lambda: _operations(request, visitor, doctor=report, doctor_ms=took)
    )


@router.post("/keys")
async def create_api_key(request: Request, visitor: SignedIn) -> Response:
    """Create a key (admin); the page shows its plaintext this once."""
    form = await form_data(request)
    check_csrf(visitor, form)
    _require_admin(visitor)
    root = service(request).store
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
    root = service(request).store
    await anyio.to_thread.run_sync(revoke_key, root, key_id)
    return RedirectResponse("/ui/operations#keys", status_code=303)


# -- backups (admin only: a backup holds every tenant) ----------------------------------


@router.post("/backups")
async def create_backup(request: Request, visitor: SignedIn) -> Response:
    """Take a verified backup now (into AGENTKEEP_BACKUP_DIR) and catalogue it."""
    form = await form_data(request)
    check_csrf(visitor, form)
    _require_admin(visitor)
    state = service(request)
    backup = await anyio.to_thread.run_sync(
        lambda: state.store.backups.create(to=state.settings.backup_dir)
    )
    return RedirectResponse(f"/ui/operations#backup-{backup.id}", status_code=303)


@router.post("/backups/{backup_id}/verify")
async def verify_backup(request: Request, visitor: SignedIn, backup_id: str) -> Response:
    """Open the copy, check its integrity, counts and sha256; the page shows the result."""
    form = await form_data(request)
    check_csrf(visitor, form)
    _require_admin(visitor)
    root = service(request).store
    await anyio.to_thread.run_sync(root.backups.get, backup_id)  # 404 for an unknown id
    checked = await anyio.to_thread.run_sync(root.backups.verify, backup_id)
    return await anyio.to_thread.run_sync(lambda: _operations(request, visitor, checked=checked))


@router.get("/backups/{backup_id}/download")
def download_backup(request: Request, visitor: SignedIn, backup_id: str) -> Response:
    _require_admin(visitor)
    backup = service(request).store.backups.get(backup_id)
    path = Path(backup.path)
    if not path.is_file():
        raise PageError(404, f"The file of backup {backup_id} is missing.")
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")
