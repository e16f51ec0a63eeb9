"""Rate limiting per API key over HTTP, with the official client (``max_retries=0``).

Two service processes on one PostgreSQL database share each key's count; the
seed's variable names work; the embedded SQLite set-up has no limit unless asked.
The window is 30 days (epoch-aligned), so no test straddles two windows.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from live import LiveService, StartService

from agentkeep.server.keys import create_key

pytestmark = pytest.mark.slow

WINDOW_MS = 30 * 86_400_000
HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")


def _second_process(start_service: StartService, first: LiveService) -> LiveService:
    """Another service process on ``first``'s database, keys and settings."""
    second = LiveService(
        backend=first.backend,
        database_url=first.database_url,
        log_path=first.log_path.with_name("server-2.log"),
        upstream=first.upstream,
        env=dict(first.env),
        keys=dict(first.keys),
    )
    start_service.started.append(second)  # type: ignore[attr-defined]
    second.start()
    return second


def _list(client: openai.OpenAI) -> httpx.Headers:
    raw = client.beta.assistants.with_raw_response.list()
    raw.parse()
    return raw.headers


def test_two_processes_share_each_keys_limit(start_service: StartService) -> None:
    first = start_service(
        "postgres",
        AGENTKEEP_RATE_LIMIT_ENABLED="1",
        AGENTKEEP_RATE_LIMIT_MAX_REQUESTS="5",
        AGENTKEEP_RATE_LIMIT_WINDOW_MS=str(WINDOW_MS),
    )
    second = _second_process(start_service, first)
    _, key = create_key(first.store, tenant="limited", name="test")
    clients = [first.client(key=key), second.client(key=key)]
    remaining = []
    for i in range(5):
        headers = _list(clients[i % 2])
        assert headers["x-ratelimit-limit-requests"] == "5"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(int(headers["x-ratelimit-remaining-requests"]))
    assert remaining == [4, 3, 2, 1, 0]
    for client in clients:  # both processes refuse the sixth request and after
        with pytest.raises(openai.RateLimitError) as caught:
            client.beta.assistants.list()
        error = caught.value
        assert error.status_code == 429
        assert error.code == "rate_limit_exceeded"
        assert error.type == "requests"
        body: Any = error.body
        assert body["param"] is None and "Limit 5" in body["message"]
        headers = error.response.headers
        assert int(headers["retry-after"]) >= 1
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-limit-requests"] == "5"
    # Another key counts on its own; nothing of the refused requests was done.
    other = first.client(key=create_key(first.store, tenant="other", name="test")[1])
    assert _list(other)["x-ratelimit-remaining-requests"] == "4"


def test_the_seed_names_turn_it_on_for_sqlite(start_service: StartService) -> None:
    service = start_service(
        "sqlite",
        AGENTKEEP_RATE_LIMIT_ENABLED="",
        ENABLE_RATE_LIMITING="true",
        RATE_LIMIT_MAX_REQUESTS="2",
        RATE_LIMIT_WINDOW_MS=str(WINDOW_MS),
    )
    client = service.client()
    assert _list(client)["x-ratelimit-remaining-requests"] == "1"
    assert _list(client)["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError):
        client.models.list()
    # Health probes are not tenant requests: never limited.
    assert httpx.get(f"{service.base_url}/healthz").status_code == 200


def test_off_by_default_on_embedded_sqlite(start_service: StartService) -> None:
    service = start_service("sqlite", AGENTKEEP_RATE_LIMIT_ENABLED="")
    client = service.client()
    for _ in range(3):
        headers = _list(client)
        assert not any(h in headers for h in HEADERS)


def test_on_by_default_on_postgres(start_service: StartService) -> None:
    service = start_service("postgres", AGENTKEEP_RATE_LIMIT_ENABLED="")
    headers = _list(service.client())
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "99"
