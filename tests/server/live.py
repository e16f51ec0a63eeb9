"""The live service for tests: a real ``agentkeep`` server process and its clients.

Fixtures in ``conftest.py`` hand these out; import the classes from here
(``from live import LiveService``), not from ``conftest``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from _multiproc import kill9
from upstream_llm import UpstreamLLM

import agentkeep
from agentkeep.store import Store
from agentkeep.store.api_keys import create_key

SERVICE_BACKENDS = ["sqlite", "postgres"]
KEY_CACHE_SECONDS = 1.0  # how long a test service may still accept a revoked key


def until_refused(http: httpx.Client, path: str = "/v1/assistants") -> httpx.Response:
    """GET ``path`` with a revoked key until the service refuses it (401), and that answer.

    The service remembers a resolved key for ``AGENTKEEP_KEY_CACHE_SECONDS``, no longer.
    """
    deadline = time.monotonic() + KEY_CACHE_SECONDS + 30
    while (response := http.get(path)).status_code != 401:
        assert time.monotonic() < deadline, f"the revoked key still works: {response.text}"
        time.sleep(0.05)
    return response


MAX_BODY_BYTES = 1024 * 1024
# How long a service may take to answer /healthz before the test calls it hung. It waits
# for the answer, so it is only reached by a real hang: generous, because a loaded machine
# (or `--workers 2`, two processes importing everything at once) can take tens of seconds.
# `make coverage` raises it: a service measured by coverage.py starts several times slower.
START_TIMEOUT = float(os.environ.get("AGENTKEEP_TEST_START_TIMEOUT", "120"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tenant:
    """A tenant of a live service with its own key."""

    id: str
    key: str
    service: LiveService

    def client(self, **options: Any) -> openai.OpenAI:
        return self.service.client(key=self.key, **options)

    def async_client(self, **options: Any) -> openai.AsyncOpenAI:
        return self.service.async_client(key=self.key, **options)

    def http(self) -> httpx.Client:
        return self.service.http(key=self.key)


@dataclass
class LiveService:
    """One server process and the database it serves."""

    backend: str
    database_url: str
    log_path: Path
    upstream: UpstreamLLM | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    keys: dict[str, str] = field(
        default_factory=lambda: {
            "acme": "sk-acme-" + secrets.token_hex(8),
            "globex": "sk-globex-" + secrets.token_hex(8),
        }
    )
    process: subprocess.Popen[bytes] | None = None
    _store: Store | None = None
    _started: bool = False
    _clients: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/v1"

    # -- process ----------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AGENTKEEP_") and k != "DATABASE_URL"
        }
        env.update(
            {
                "AGENTKEEP_DATABASE_URL": self.database_url,
                "AGENTKEEP_API_KEYS": ",".join(f"{t}:{k}" for t, k in self.keys.items()),
                "AGENTKEEP_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
                "AGENTKEEP_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS),
                # Tests send many requests per key; tests of the limit turn it on.
                "AGENTKEEP_RATE_LIMIT_ENABLED": "0",
                # Tests of a failing upstream see its first answer; those of the retries
                # (test_upstream_retries.py) turn them on.
                "AGENTKEEP_LLM_MAX_RETRIES": "0",
                # The daily backup's scheduler takes its slot at once when it starts up
                # to ten minutes after it (02:00 by default): a service started then would
                # back up while its test runs. Tests of the schedule turn it on.
                "AGENTKEEP_BACKUP_ENABLED": "false",
                "AGENTKEEP_BACKUP_DIR": str(self.log_path.parent / "backups"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.upstream is not None:
            env["AGENTKEEP_LLM_BASE_URL"] = self.upstream.base_url
            env["AGENTKEEP_LLM_API_KEY"] = "sk-upstream-test"
        env.update(self.env)
        return env

    def start(self) -> None:
        """Start the server and wait for ``/healthz``; a first start retries a taken port."""
        assert self.process is None or self.process.poll() is not None, "already running"
        for attempt in range(3):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "agentkeep",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                    ],
                    env=self._environment(),
                    cwd=self.log_path.parent,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self.wait_ready():
                self._started = True
                return
            with self.log_path.open("rb") as log:
                log.seek(offset)
                taken = b"address already in use" in log.read().lower()
            if self._started or not taken or attempt == 2:
                break
            self.port = free_port()  # another process took the port first: pick another
        pytest.fail(
            f"the service exited with {self.process.returncode}:\n{self.log()}", pytrace=False
        )

    def wait_ready(self) -> bool:
        """True once ``/healthz`` answers; False if the process exits first."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"the service did not answer /healthz in {START_TIMEOUT}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no flush, like a crash."""
        if self.process is not None and self.process.poll() is None:
            kill9(self.process)
            self.process.wait(20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self, *, kill: bool = True) -> None:
        """Kill -9 (or stop) the server, then start it again on the same port and database."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        for client in self._clients:
            if isinstance(client, (openai.OpenAI, httpx.Client)):
                client.close()
        self._clients.clear()
        self.stop()
        if self._store is not None:
            self._store.close()
            self._store = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    # -- clients ----------------------------------------------------------------------

    def _key(self, tenant: str, key: str | None) -> str:
        return key if key is not None else self.keys[tenant]

    def client(
        self, tenant: str = "acme", *, key: str | None = None, **options: Any
    ) -> openai.OpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 30.0)
        client = openai.OpenAI(base_url=self.api_base, api_key=self._key(tenant, key), **options)
        self._clients.append(client)
        return client

    def async_client(
        self, tenant: str = "acme", *, key: str | None = None, **options: Any
    ) -> openai.AsyncOpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 30.0)
        return openai.AsyncOpenAI(base_url=self.api_base, api_key=self._key(tenant, key), **options)

    def http(self, tenant: str = "acme", *, key: str | None = None) -> httpx.Client:
        """A raw client on ``base_url`` (paths start with ``/v1``); ``key=""`` sends none."""
        value = self._key(tenant, key)
        headers = {"Authorization": f"Bearer {value}"} if value else {}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0)
        self._clients.append(client)
        return client

    @property
    def store(self) -> Store:
        """The service's database, opened directly (default tenant; use ``.tenant(...)``)."""
        if self._store is None:
            self._store = agentkeep.connect(self.database_url)
        return self._store

    def new_tenant(self) -> Tenant:
        tenant = f"t_{secrets.token_hex(6)}"
        _, key = create_key(self.store, tenant=tenant, name="test")
        return Tenant(id=tenant, key=key, service=self)


StartService = Callable[..., LiveService]


def _database_url(backend: str, directory: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory / 'agentkeep.db'}"
    server = request.getfixturevalue("postgres_server")
    url = str(server.new_database())
    # As deployed: `agentkeep db upgrade`, then serve (serve upgrades PostgreSQL
    # only with AGENTKEEP_AUTO_MIGRATE=1).
    agentkeep.connect(url, auto_migrate=True).close()
    return url


class ServiceFactory:
    """Starts live services on fresh databases and stops them all at the end."""

    def __init__(
        self,
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
        upstream: UpstreamLLM,
    ) -> None:
        self.request = request
        self.tmp_path_factory = tmp_path_factory
        self.upstream = upstream
        self.started: list[LiveService] = []

    def __call__(self, backend: str, **env: str) -> LiveService:
        directory = self.tmp_path_factory.mktemp(f"service-{backend}")
        service = LiveService(
            backend=backend,
            database_url=_database_url(backend, directory, self.request),
            log_path=directory / "server.log",
            upstream=self.upstream,
            env=dict(env),
        )
        self.started.append(service)
        service.start()
        return service

    def close(self) -> None:
        for service in self.started:
            service.close()
