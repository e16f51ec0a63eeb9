"""``serve``: upgrade the schema, then run the app under uvicorn."""

from __future__ import annotations

import dataclasses
import os

import uvicorn

from agentkeep.config import Settings
from agentkeep.errors import InvalidInput
from agentkeep.server.app import create_app, open_store

__all__ = ["serve"]


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    database_url: str | None = None,
) -> None:
    """Serve on ``host:port`` until interrupted.

    The database is ``database_url``, else ``AGENTKEEP_DATABASE_URL``, else
    ``DATABASE_URL``, else the embedded SQLite default; its schema is upgraded
    before the first request. With ``workers > 1`` uvicorn starts that many
    processes, each building the app from the environment.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInput("must be a positive integer", field="workers")
    if database_url:
        os.environ["AGENTKEEP_DATABASE_URL"] = database_url  # for worker processes
    settings = Settings.from_env()
    if database_url:
        settings = dataclasses.replace(settings, database_url=database_url)
    open_store(settings).close()
    if workers > 1:
        uvicorn.run(
            "agentkeep.server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_graceful_shutdown=10,
        )
    else:
        uvicorn.run(create_app(settings), host=host, port=port, timeout_graceful_shutdown=10)
