"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the database is usable).

Neither needs a key and neither writes anything.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from agentkeep.server.deps import ServiceState, service_state
from agentkeep.server.errors import error_body
from agentkeep.server.json_response import JSONResponse
from agentkeep.store import migrate

__all__ = ["router"]

router = APIRouter(tags=["Service"])
log = logging.getLogger("agentkeep.server")

State = Annotated[ServiceState, Depends(service_state)]


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and at the expected revision")
def readyz(state: State) -> JSONResponse:
    health = state.store.health()
    database = health.database
    expected = migrate.head_revision()
    if health.healthy:
        return JSONResponse(
            {
                "status": "ready",
                "backend": health.backend,
                "revision": database.get("revision"),
                "latency_ms": database.get("latency_ms"),
            }
        )
    if not database.get("connected"):
        # The driver's text names the host and port: logged, not answered.
        log.error("readiness: the database cannot be reached: %s", database.get("error"))
        reason = "the database cannot be reached"
    else:
        reason = f"the database is at revision {database.get('revision')!r}, expected {expected!r}"
    body = error_body(f"Not ready: {reason}.", type="server_error", code="not_ready")
    body["status"] = "not_ready"
    return JSONResponse(body, status_code=503)
