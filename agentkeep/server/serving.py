"""``serve``: upgrade the schema, then run the app under uvicorn."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from agentkeep.config import Settings
from agentkeep.errors import InvalidInput
from agentkeep.runner import stopping
from agentkeep.server.app import create_app
from agentkeep.server.connections import check_schema
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
    On SIGTERM or SIGINT each process stops taking connections, gives the
    requests in flight ``AGENTKEEP_SHUTDOWN_GRACE_SECONDS`` to finish, then
    cuts the rest: a streamed response cut then is stored as stopped by the
    service, not by its client.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInput("must be a positive integer", field="workers")
    if log_format is not None and log_format not in LOG_FORMATS:
        raise InvalidInput(f"must be one of {', '.join(LOG_FORMATS)}", field="log_format")
    if database_url:
        os.environ["AGENTKEEP_DATABASE_URL"] = database_url  # for worker processes
    # Each process sizes its database connections to its share of the server's.
    os.environ["AGENTKEEP_WORKERS"] = str(workers)
    if log_format:
        os.environ["AGENTKEEP_LOG_FORMAT"] = log_format
    settings = Settings.from_env()
    if database_url:
        settings = dataclasses.replace(settings, database_url=database_url)
    check_schema(settings)
    options = _options(host, port, settings)
    if workers > 1:
        # One dashboard cookie key for every worker process (each would draw its own).
        os.environ.setdefault("AGENTKEEP_UI_SECRET", secrets.token_urlsafe(32))
        config = uvicorn.Config(
            "agentkeep.server.app:create_app", factory=True, workers=workers, **options
        )
        with _metrics_dir(), _workers_marking_their_stop():
            multiprocess.Multiprocess(config, sockets=[_tcp_socket(config)]).run()
    else:
        server = _Server(uvicorn.Config(create_app(settings), **options))
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:  # it could not start (the port taken, say): as uvicorn.run
            sys.exit(STARTUP_FAILURE)


class _Server(uvicorn.Server):
    """uvicorn's server, marking :mod:`agentkeep.runner.stopping` as its shutdown begins."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopping.begin()
        await super().shutdown(sockets)


class _Process(multiprocess.Process):
    """uvicorn's worker process, serving with :class:`_Server`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = _Server(config=self.config)
        return self._server


@contextmanager
def _workers_marking_their_stop() -> Iterator[None]:
    """Worker processes started meanwhile serve with :class:`_Server`.

    uvicorn's supervisor makes its processes from its module's ``Process``
    and offers no other way in; each process unpickles this subclass by name.
    """
    made = multiprocess.Process
    multiprocess.Process = _Process  # type: ignore[misc]
    try:
        yield
    finally:
        multiprocess.Process = made  # type: ignore[misc]


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


def _options(host: str, port: int, settings: Settings) -> dict[str, Any]:
    # Keep idle connections longer than clients do (httpx and the openai SDK drop
    # theirs after 5 s): a server closing first races a client reusing the socket.
    return {
        "host": host,
        "port": port,
        "http": "httptools",  # C parsing: a fifth more requests/s than h11's pure Python
        "timeout_keep_alive": 75,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        "log_config": log_config(settings.log_format),
        "access_log": settings.log_format == "text",
    }


def _tcp_socket(config: uvicorn.Config) -> socket.socket:
    """The listening socket for worker processes, created with ``IPPROTO_TCP``.

    uvicorn binds it with protocol 0, and asyncio then leaves Nagle's algorithm
    on for accepted connections: every response waited ~40 ms for a delayed
    ACK (uvicorn issue 3149). Re-wrapping the descriptor fixes the protocol.
    """
    sock = config.bind_socket()
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
