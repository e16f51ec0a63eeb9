"""The app factory: routes, error mapping, body limit, and the store and run worker it runs on."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from prometheus_client import multiprocess
from sqlalchemy.pool import QueuePool

import agentkeep
from agentkeep import metrics
from agentkeep.config import Settings, display_url
from agentkeep.lifecycle.schedule import BackupScheduler
from agentkeep.runner import RunWorker, stopping
from agentkeep.server import ratelimit
from agentkeep.server.connections import log_budget, open_store
from agentkeep.server.deps import ServiceState
from agentkeep.server.errors import install_error_handlers
from agentkeep.server.json_response import JSONResponse
from agentkeep.server.middleware import GuardMiddleware
from agentkeep.server.observe import ObserveMiddleware
from agentkeep.server.observe import router as metrics_router
from agentkeep.server.openapi import install_openapi
from agentkeep.server.remote_events import RemoteEvents
from agentkeep.server.routes import (
    admin,
    assistants,
    conversations,
    health,
    items,
    messages,
    models,
    responses,
    runs,
    threads,
)
from agentkeep.store import Store
from agentkeep.store.api_keys import KeyCache, parse_bootstrap_keys
from agentkeep.ui import install_ui

__all__ = ["create_app"]

log = logging.getLogger("agentkeep.server")

SETTLE_S = 10.0  # the longest a stopping service waits for the ends of the responses cut


def _pool_limit(store: Store) -> int:
    """Connections the store's pool may hold at once (size plus overflow; 1 for one shared)."""
    pool = store._core.engine.pool
    if isinstance(pool, QueuePool):
        return int(pool.size() + max(0, pool._max_overflow))
    return 1


def log_start(settings: Settings, store: Store, bootstrap: dict[str, str]) -> None:
    """Say which database and upstream the service uses, and what a first request needs."""
    log.info("agentkeep service ready on %s (%s)", display_url(store.url), store.backend)
    if settings.llm_base_url:
        log.info("run upstream: %s", settings.llm_base_url)
    else:
        log.warning(
            "no upstream configured: runs fail until AGENTKEEP_LLM_BASE_URL names an "
            "OpenAI-compatible chat-completions server (e.g. http://127.0.0.1:11434/v1)"
        )
    if not bootstrap:
        log.warning(
            "AGENTKEEP_API_KEYS is not set: only keys made with "
            "`agentkeep keys create --tenant NAME` are accepted"
        )


async def _start_work(state: ServiceState) -> None:
    """The run worker and, when on, the backup scheduler; then the start-up log lines."""
    settings, root = state.settings, state.store
    worker = RunWorker(root, settings)
    await worker.start()
    state.worker = worker
    if root._core.dialect.supports_listen:  # streams are told of other processes' writes
        state.remote_events = RemoteEvents(root)
    if settings.backup_enabled:
        state.scheduler = BackupScheduler(root, settings)
        state.scheduler.start()
    log_start(settings, root, state.bootstrap_keys)
    await anyio.to_thread.run_sync(log_budget, root, settings)
    if state.rate_limited:
        log.info(
            "rate limiting: %d requests per key per %d ms",
            settings.rate_limit_max_requests,
            settings.rate_limit_window_ms,
        )


async def _stop_work(state: ServiceState) -> None:
    if state.scheduler is not None:
        await anyio.to_thread.run_sync(state.scheduler.stop)
    if state.worker is not None:
        await state.worker.stop()
    if state.remote_events is not None:
        await anyio.to_thread.run_sync(state.remote_events.close)


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """The agentkeep service as an ASGI app.

    ``settings`` default to the environment (``AGENTKEEP_*``). Without a
    ``store`` the app opens one on ``settings.database_url`` when it starts
    (upgrading the schema) and closes it when it stops; a given store is
    used as it is and left open.
    """
    settings = settings or Settings.from_env()
    bootstrap = parse_bootstrap_keys(settings.api_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        root = store if store is not None else await anyio.to_thread.run_sync(open_store, settings)
        state = ServiceState(
            settings=settings,
            store=root,
            bootstrap_keys=bootstrap,
            keys=KeyCache(settings.key_cache_seconds),
            rate_limited=ratelimit.enabled(settings, root),
        )
        app.state.agentkeep = state
        unwatch = metrics.watch_pool(root._core.engine, _pool_limit(root))
        try:
            await _start_work(state)
            yield
        finally:
            # Responses their requests left (cut by this stop, say) are ended first.
            if late := await stopping.settle(SETTLE_S):
                log.warning("%d cut responses were not ended in %.0f s", late, SETTLE_S)
            await _stop_work(state)
            if store is None:
                root.close()
            unwatch()
            if metrics.multiprocess_dir():
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    app = FastAPI(
        title="agentkeep",
        version=agentkeep.__version__,
        summary="OpenAI-compatible Assistants and Conversations APIs over the agentkeep store.",
        lifespan=lifespan,
        docs_url=None,  # served by install_ui from the vendored Swagger UI
        redoc_url=None,
        default_response_class=JSONResponse,  # the handlers returning a dict (the runs')
    )
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(ObserveMiddleware)  # outermost: it sees the guard's 413 and 500 too
    app.include_router(health.router)
    # FastAPI tries the routes in order, each at some cost (about a tenth of the
    # service's time on a create-message placed behind forty others): the most
    # requested first. No messages path is another router's.
    app.include_router(messages.router)
    app.include_router(assistants.router)
    # Before the threads router: POST /v1/threads/runs must not match /v1/threads/{thread_id}.
    app.include_router(runs.router)
    app.include_router(threads.router)
    app.include_router(conversations.router)
    app.include_router(items.router)
    app.include_router(responses.router)
    app.include_router(admin.router)
    app.include_router(models.router)
    app.include_router(metrics_router)
    install_openapi(app)
    install_ui(app, settings)
    return app
