"""Request dependencies: the service state and the caller's tenant-scoped store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request

from agentkeep.config import Settings
from agentkeep.server.errors import ApiError
from agentkeep.server.ratelimit import check_rate_limit
from agentkeep.store import Store
from agentkeep.store.api_keys import ADMIN_TENANT, KeyCache, hash_key, resolve_hash

__all__ = [
    "AdminState",
    "ServiceState",
    "ServiceStateDep",
    "TenantStore",
    "admin_state",
    "service_state",
    "tenant_store",
]


@dataclass
class ServiceState:
    """What the running app holds: settings, the root store, bootstrap keys, the run worker."""

    settings: Settings
    store: Store
    bootstrap_keys: dict[str, str] = field(default_factory=dict)  # key hash -> tenant
    worker: Any = None  # agentkeep.runner.RunWorker once started
    keys: KeyCache = field(default_factory=lambda: KeyCache(0.0))  # stored keys resolved lately
    scheduler: Any = None  # agentkeep.lifecycle.schedule.BackupScheduler when backups are on
    rate_limited: bool = False  # requests counted per key (agentkeep.server.ratelimit)
    response_writes: Any = None  # the responses' ResponseWrites, made on first use
    run_creates: Any = None  # the group commit of new threads with their runs (routes.runs)
    remote_events: Any = None  # server.remote_events.RemoteEvents, on PostgreSQL
    _tenants: dict[str, Store] = field(default_factory=dict)

    def tenant(self, tenant_id: str) -> Store:
        scoped = self._tenants.get(tenant_id)
        if scoped is None:
            scoped = self._tenants[tenant_id] = self.store.tenant(tenant_id)
        return scoped


def service_state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "agentkeep", None)
    if not isinstance(state, ServiceState):
        raise ApiError(503, "The service is starting.", type="server_error", code="starting")
    return state


ServiceStateDep = Annotated[ServiceState, Depends(service_state)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")


async def tenant_store(request: Request) -> Store:
    """The store scoped to the tenant of the request's ``Authorization: Bearer`` key.

    Bootstrap keys resolve in memory; stored keys with one indexed read in a
    worker thread, then from ``state.keys`` for ``AGENTKEEP_KEY_CACHE_SECONDS``.
    With rate limiting on, the request is then counted against its key (one
    upsert; 429 over the limit).
    """
    state = service_state(request)
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _unauthorized("The Authorization header must be 'Bearer YOUR_KEY'.")
    digest = hash_key(key)
    tenant = state.bootstrap_keys.get(digest) or state.keys.get(digest)
    if tenant is None:
        tenant = await anyio.to_thread.run_sync(resolve_hash, state.store, digest)
        if tenant is not None:
            state.keys.put(digest, tenant)
    if tenant is None:
        raise _unauthorized(f"Incorrect API key provided: {key[:6]}****.")
    if tenant == ADMIN_TENANT:
        raise _unauthorized(
            "This is an admin key: it opens the dashboard (/ui) and /v1/admin, not the "
            "tenant APIs; use a tenant's key."
        )
    request.state.tenant_id = tenant
    store = state.tenant(tenant)
    if state.rate_limited:
        await check_rate_limit(request, state.settings, store, digest)
    return store


def _bearer(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("Send an admin key as 'Authorization: Bearer YOUR_ADMIN_KEY'.")
    return key.strip()


async def admin_state(request: Request) -> ServiceState:
    """The service state, for a request with an admin key (``agentkeep keys create --admin``)."""
    state = service_state(request)
    key = _bearer(request)
    digest = hash_key(key)
    tenant = state.bootstrap_keys.get(digest)
    if tenant is None:  # never from the cache: a revoked admin key stops at once
        tenant = await anyio.to_thread.run_sync(resolve_hash, state.store, digest)
    if tenant is None:
        raise _unauthorized(f"Incorrect API key provided: {key[:6]}****.")
    if tenant != ADMIN_TENANT:
        raise ApiError(
            403,
            "This endpoint needs an admin key (`agentkeep keys create --admin`).",
            type="permission_error",
            code="admin_key_required",
        )
    return state


AdminState = Annotated[ServiceState, Depends(admin_state)]


TenantStore = Annotated[Store, Depends(tenant_store)]
