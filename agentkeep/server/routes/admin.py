"""Admin endpoints (an admin key, not a tenant's): backups, export, import, erasure, retention.

- ``POST /v1/admin/backups`` take a backup; ``GET /v1/admin/backups`` the catalog;
  ``GET /v1/admin/backups/{id}`` one; ``GET /v1/admin/backups/{id}/content`` its file.
- ``GET /v1/admin/export?tenant=T`` a tenant (or everything) as a JSON Lines stream.
- ``POST /v1/admin/import?mode=merge&tenant=T&dry_run=false`` an export file as the
  request body (``.jsonl``, gzip or zstd); the report of imported, skipped, conflicting rows.
- ``POST /v1/admin/erasures`` ``{"tenant": T, "user_id": U}``: the erasure receipt.
- ``POST /v1/admin/retention`` ``{"tenant": T, "inactive_days": N, "compact_events": true,
  "dry_run": true}``: what went (or would go).
- ``GET /v1/admin/metrics?tenant=T``: ``store.get_metrics()`` of the answering service
  process (its own counters; each process has its own) with tenant T's row counts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from agentkeep.lifecycle import ExportFilter, export, import_file
from agentkeep.lifecycle.retention import sweep
from agentkeep.models import Backup, ErasureReceipt, StoreMetrics
from agentkeep.server.deps import AdminState
from agentkeep.server.errors import ApiError

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["Admin"])


class BackupRequest(BaseModel):
    compress: bool | Literal["gzip", "zstd"] = False


class ErasureRequest(BaseModel):
    tenant: str = Field(min_length=1, max_length=64)
    user_id: str = Field(min_length=1, max_length=256)


class RetentionRequest(BaseModel):
    tenant: str = Field(min_length=1, max_length=64)
    inactive_days: int | None = Field(default=None, ge=1)
    compact_events: bool = False
    dry_run: bool = True


@router.post("/backups", summary="Take a backup of the whole database")
def create_backup(state: AdminState, body: BackupRequest | None = None) -> Backup:
    return state.store.backups.create(
        to=state.settings.backup_dir, compress=body.compress if body else False
    )


@router.get("/backups", summary="The backup catalog, newest first")
def list_backups(state: AdminState) -> dict[str, Any]:
    return {"object": "list", "data": state.store.backups.list()}


@router.get("/backups/{backup_id}", summary="One catalogued backup")
def get_backup(backup_id: str, state: AdminState) -> Backup:
    return state.store.backups.get(backup_id)


@router.get("/backups/{backup_id}/content", summary="Download a backup file")
def download_backup(backup_id: str, state: AdminState) -> FileResponse:
    backup = state.store.backups.get(backup_id)
    if not Path(backup.path).is_file():
        raise ApiError(404, f"The file of backup {backup_id!r} is missing.", code="file_missing")
    return FileResponse(backup.path, filename=Path(backup.path).name)


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


@router.get("/export", summary="Export as JSON Lines (one tenant, or everything)")
def export_jsonl(state: AdminState, tenant: str | None = None) -> FileResponse:
    handle, path = tempfile.mkstemp(prefix="agentkeep-export-", suffix=".jsonl")
    os.close(handle)
    try:
        export(state.store, path, ExportFilter(tenant=tenant))
    except BaseException:
        _remove(path)
        raise
    return FileResponse(
        path,
        media_type="application/x-ndjson",
        filename=f"agentkeep-{tenant or 'all'}.jsonl",
        background=BackgroundTask(_remove, path),
    )


@router.post("/import", summary="Import an export file sent as the request body")
async def import_jsonl(
    request: Request,
    state: AdminState,
    mode: str = "merge",
    tenant: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    handle, path = tempfile.mkstemp(prefix="agentkeep-import-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        report = await anyio.to_thread.run_sync(
            lambda: import_file(state.store, path, mode=mode, tenant=tenant, dry_run=dry_run)
        )
    finally:
        _remove(path)
    return report.as_dict()


@router.post("/erasures", summary="Erase everything of one user of a tenant")
def erase_user(body: ErasureRequest, state: AdminState) -> ErasureReceipt:
    return state.tenant(body.tenant).erase_user(body.user_id)


@router.post("/retention", summary="Apply data retention to a tenant (dry run by default)")
def retention(body: RetentionRequest, state: AdminState) -> dict[str, Any]:
    report = sweep(
        state.tenant(body.tenant),
        inactive_days=body.inactive_days,
        compact_events=body.compact_events,
        dry_run=body.dry_run,
    )
    return report.as_dict()


@router.get("/metrics", summary="Operation counts, latency and storage size (this process)")
def metrics(
    state: AdminState,
    tenant: str = Query("default", min_length=1, max_length=64, description="Whose rows to count."),
) -> StoreMetrics:
    return state.store.tenant(tenant).get_metrics()
