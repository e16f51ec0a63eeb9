"""The live service: a real ``agentkeep`` server process on 127.0.0.1, per backend.

``service`` (session scope, parametrized ``sqlite`` / ``postgres``) starts
``python -m agentkeep serve`` (the ``agentkeep serve`` command) on a free port,
on a fresh database (a new SQLite file, or a new PostgreSQL database from the
``postgres_server`` fixture; PostgreSQL tests fail, never skip, when it is
down), with

- ``AGENTKEEP_API_KEYS`` = bootstrap keys for the tenants ``acme`` and ``globex``,
- ``AGENTKEEP_LLM_BASE_URL`` = the scripted upstream (``tests/upstream_llm.py``),
- ``AGENTKEEP_MAX_BODY_BYTES`` = 1 MiB,

and waits for ``GET /healthz``. It yields a :class:`LiveService`:

- ``base_url`` (``http://127.0.0.1:PORT``), ``api_base`` (``.../v1``), ``keys`` ({tenant: key}),
  ``database_url``, ``upstream`` (the :class:`UpstreamLLM`), ``backend``;
- ``client(tenant="acme")`` / ``async_client(tenant="acme")``: ready ``openai`` clients
  (``max_retries=0``), ``http(key=...)``: an ``httpx.Client`` for raw requests;
- ``new_tenant()``: a :class:`Tenant` of its own (a key created in the database), so
  listings in one test never see another test's objects;
- ``store``: a direct :class:`agentkeep.Store` on the same database;
- ``kill()`` (SIGKILL), ``restart()`` (kill -9, then start again on the same port and
  database), ``stop()``, ``log()`` (the server's output so far).

``tenant`` gives each test a fresh tenant on the shared service; ``start_service``
(module scope) starts services of a module's own (with extra environment) for tests
that kill, restart or break them; they are stopped at the module's end.

The classes live in ``tests/server/live.py``: import them with ``from live import
LiveService, Tenant`` (they are re-exported here for older imports from ``conftest``,
which is fragile when several ``conftest.py`` files are collected).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from live import (
    MAX_BODY_BYTES,
    SERVICE_BACKENDS,
    LiveService,
    ServiceFactory,
    StartService,
    Tenant,
)
from upstream_llm import UpstreamLLM

__all__ = [
    "MAX_BODY_BYTES",
    "SERVICE_BACKENDS",
    "LiveService",
    "ServiceFactory",
    "StartService",
    "Tenant",
]

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The client marks the Assistants API deprecated; that warning is expected here."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"))
            item.add_marker(
                pytest.mark.filterwarnings(
                    "ignore:The Assistants API is deprecated:DeprecationWarning"
                )
            )


@pytest.fixture(scope="session")
def upstream_llm() -> Iterator[UpstreamLLM]:
    """The scripted chat-completions upstream every live service points at."""
    upstream = UpstreamLLM()
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def start_service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream_llm: UpstreamLLM,
) -> Iterator[StartService]:
    """``start_service(backend, **env)``: a service of the module's own on a fresh database.

    For tests that kill, restart or break their service; stopped at the module's end.
    """
    factory = ServiceFactory(request, tmp_path_factory, upstream_llm)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def _shared_services(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream_llm: UpstreamLLM,
) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(request, tmp_path_factory, upstream_llm)
    yield factory
    factory.close()


@pytest.fixture(scope="session", params=SERVICE_BACKENDS)
def service(request: pytest.FixtureRequest, _shared_services: ServiceFactory) -> LiveService:
    """The live service on ``sqlite`` or ``postgres``, shared by the session's tests.

    Tests keep to tenants of their own (``tenant``) or to ids they created; a test
    that kills, restarts or breaks a service starts its own with ``start_service``.
    """
    return _shared_services(str(request.param))


@pytest.fixture
def tenant(service: LiveService) -> Tenant:
    """A fresh tenant (and key) on the module's service."""
    return service.new_tenant()


@pytest.fixture
def client(tenant: Tenant) -> openai.OpenAI:
    """An ``openai.OpenAI`` client for this test's own tenant."""
    return tenant.client()
