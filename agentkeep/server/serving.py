"""``serve``: upgrade the schema, then run the app under uvicorn."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from agentkeep.config import Settings
from agentkeep.errors import InvalidInput
from agentkeep.server.app import create_app, open_store
from agentkeep.server.logs import LOG_FORMATS, log_config

__all__ = ["serve"]


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    database_url: str | None = None,
    log_format: str | None = None,
) -> None:
    """Serve on ``host:port`` until interrupted.

    The database is ``database_url``, else ``AGENTKEEP_DATABASE_URL``, else
    ``DATABASE_URL``, ``DATABASE_PATH``, ..., else the embedded SQLite default.
    Its schema is checked before the first request: created or upgraded on
    SQLite (and on PostgreSQL with ``AGENTKEEP_AUTO_MIGRATE=1``); otherwise a
    database behind head raises ``MigrationRequired`` naming ``agentkeep db upgrade``. With ``workers > 1`` uvicorn starts that many
    processes, each building the app from the environment; their metrics meet
    in a multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, else a fresh one
    removed at exit). ``log_format``: ``text`` (uvicorn's lines) or ``json``
    (one JSON object per line); default ``AGENTKEEP_LOG_FORMAT``, else text.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInput("must be a positive integer", field="workers")
    if log_format is not None and log_format not in LOG_FORMATS:
        raise InvalidInput(f"must be one of {', '.join(LOG_FORMATS)}", field="log_format")
    if database_url:
        os.environ["AGENTKEEP_DATABASE_URL"] = database_url  # for worker processes
    if log_format:
        os.environ["AGENTKEEP_LOG_FORMAT"] = log_format
    settings = Settings.from_env()
    if database_url:
        settings = dataclasses.replace(settings, database_url=database_url)
    open_store(settings).close()
    options = _options(host, port, settings.log_format)
    if workers > 1:
        # One dashboard cookie key for every worker process (each would draw its own).
        os.environ.setdefault("AGENTKEEP_UI_SECRET", secrets.token_urlsafe(32))
        config = uvicorn.Config(
            "agentkeep.server.app:create_app", factory=True, workers=workers, **options
        )
        with _metrics_dir():
            Multiprocess(config, sockets=[_tcp_socket(config)]).run()
    else:
        uvicorn.run(create_app(settings), **options)


@contextmanager
def _metrics_dir() -> Iterator[None]:
    """A directory where the worker processes' metrics meet (prometheus-client's
    multiprocess mode): ``PROMETHEUS_MULTIPROC_DIR`` emptied of an earlier
    run's files, else a fresh one, removed at the end."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:  # made when agentkeep.metrics was imported
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        yield
        return
    made = tempfile.mkdtemp(prefix="agentkeep-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(made, ignore_errors=True)


def _options(host: str, port: int, log_format: str) -> dict[str, Any]:
    # Keep idle connections longer than clients do (httpx and the openai SDK drop
    # theirs after 5 s): a server closing first races a client reusing the socket.
    return {
        "host": host,
        "port": port,
        "timeout_keep_alive": 75,
        "timeout_graceful_shutdown": 10,
        "log_config": log_config(log_format),
        "access_log": log_format == "text",
    }


def _tcp_socket(config: uvicorn.Config) -> socket.socket:
    """The listening socket for worker processes, created with ``IPPROTO_TCP``.

    uvicorn binds it with protocol 0, and asyncio then leaves Nagle's algorithm
    on for accepted connections: every response waited ~40 ms for a delayed
    ACK (uvicorn issue 3149). Re-wrapping the descriptor fixes the protocol.
    """
    sock = config.bind_socket()
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
