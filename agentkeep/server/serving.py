"""``serve``: upgrade the schema, then run the app under uvicorn."""

from __future__ import annotations

import copy
import dataclasses
import os
import secrets
import socket
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.supervisors import Multiprocess

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
    ``DATABASE_URL``, ``DATABASE_PATH``, ..., else the embedded SQLite default.
    Its schema is checked before the first request: created or upgraded on
    SQLite (and on PostgreSQL with ``AGENTKEEP_AUTO_MIGRATE=1``); otherwise a
    database behind head raises ``MigrationRequired`` naming ``agentkeep db upgrade``. With ``workers > 1`` uvicorn starts that many
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
        # One dashboard cookie key for every worker process (each would draw its own).
        os.environ.setdefault("AGENTKEEP_UI_SECRET", secrets.token_urlsafe(32))
        config = uvicorn.Config(
            "agentkeep.server.app:create_app", factory=True, workers=workers, **_options(host, port)
        )
        Multiprocess(config, sockets=[_tcp_socket(config)]).run()
    else:
        uvicorn.run(create_app(settings), **_options(host, port))


def _options(host: str, port: int) -> dict[str, Any]:
    # Keep idle connections longer than clients do (httpx and the openai SDK drop
    # theirs after 5 s): a server closing first races a client reusing the socket.
    return {
        "host": host,
        "port": port,
        "timeout_keep_alive": 75,
        "timeout_graceful_shutdown": 10,
        "log_config": _log_config(),
    }


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus agentkeep's own loggers at INFO on the same handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["agentkeep"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _tcp_socket(config: uvicorn.Config) -> socket.socket:
    """The listening socket for worker processes, created with ``IPPROTO_TCP``.

    uvicorn binds it with protocol 0, and asyncio then leaves Nagle's algorithm
    on for accepted connections: every response waited ~40 ms for a delayed
    ACK (uvicorn issue 3149). Re-wrapping the descriptor fixes the protocol.
    """
    sock = config.bind_socket()
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
