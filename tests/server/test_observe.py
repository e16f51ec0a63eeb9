"""GET /metrics and the JSON logs of a real ``agentkeep serve``.

Metrics are scraped from a service of two worker processes and parsed with
prometheus_client's own parser: counters and histograms must count every
request whichever worker answered it or the scrape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from live import StartService, free_port
from prometheus_client.parser import text_string_to_metric_families
from upstream_llm import Reply, UpstreamLLM

from agentkeep.server.keys import create_key

pytestmark = pytest.mark.slow

MESSAGES_ROUTE = "/v1/threads/{thread_id}/messages"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all((k, want) in ls for k, want in labels.items())
    )


def _scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_metrics_count_every_workers_requests_runs_and_upstream_calls(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    service = start_service(backend, AGENTKEEP_WORKERS="2")
    _, admin_key = create_key(service.store, admin=True)
    admin = service.http(key=admin_key)
    tenant = service.new_tenant()
    assert service.http(key="").get("/metrics").status_code == 401
    refused = service.http(key=tenant.key).get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"

    before = _scrape(admin)
    assert _value(before, "agentkeep_db_pool_connections_limit") > 0
    assert _value(before, "agentkeep_database_up") == 1
    assert ("agentkeep_last_backup_age_seconds", ()) not in before  # no backup yet

    client = tenant.client()
    thread = client.beta.threads.create()
    posts = 12
    with tenant.http() as http:
        for i in range(posts):
            response = http.post(
                f"/v1/threads/{thread.id}/messages", json={"role": "user", "content": f"m{i}"}
            )
            assert response.status_code == 200
        assert http.get(f"/v1/threads/{thread.id}/messages/msg_missing").status_code == 404

    model = "gpt-4o-mini-2024-07-18"  # a priced name (no other test scripts it)
    upstream_llm.script(
        model,
        Reply(text="all done here", prompt_tokens=11, completion_tokens=3),
        Reply(status=500, error_message="scripted outage"),
    )
    assistant = client.beta.assistants.create(model=model)
    done = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert done.status == "completed", done.last_error
    client.beta.threads.messages.create(thread.id, role="user", content="again")
    failed = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert failed.status == "failed"
    assert admin.post("/v1/admin/backups", json={}).status_code == 200

    # Whichever worker answers the scrape, it counts what both workers did.
    for _ in range(4):
        after = _scrape(admin)
        route = {"method": "POST", "route": MESSAGES_ROUTE, "status": "200"}
        assert (
            _value(after, "agentkeep_http_requests_total", **route)
            - _value(before, "agentkeep_http_requests_total", **route)
            == posts + 1
        )  # the posts above, and the one before the second run
        assert _value(after, "agentkeep_http_request_duration_seconds_count", **route) == _value(
            after, "agentkeep_http_requests_total", **route
        )
        missing = {"route": "/v1/threads/{thread_id}/messages/{message_id}", "status": "404"}
        assert _value(after, "agentkeep_http_requests_total", **missing) == 1
        assert _value(after, "agentkeep_runs", status="completed") >= 1
        assert _value(after, "agentkeep_runs", status="failed") >= 1
        assert _value(after, "agentkeep_upstream_requests_total", outcome="ok") >= 1
        assert _value(after, "agentkeep_upstream_requests_total", outcome="error") >= 1
        assert _value(after, "agentkeep_upstream_errors_total") >= 1
        assert _value(after, "agentkeep_upstream_request_duration_seconds_count") >= 2
        assert _value(after, "agentkeep_llm_tokens_total", model=model, kind="input") == 11
        assert _value(after, "agentkeep_llm_tokens_total", model=model, kind="output") == 3
        assert _value(after, "agentkeep_llm_calls_total", model=model, status="success") == 1
        assert _value(after, "agentkeep_llm_cost_usd_total", model=model) > 0
        assert 0 <= _value(after, "agentkeep_last_backup_age_seconds") < 3600
        assert _value(after, "agentkeep_db_pool_connections_in_use") >= 0


def test_metrics_can_be_open(start_service: StartService) -> None:
    service = start_service("sqlite", AGENTKEEP_METRICS_AUTH="none")
    with httpx.Client(base_url=service.base_url) as http:
        http.get("/healthz")
        samples = _scrape(http)
    assert _value(samples, "agentkeep_http_requests_total", route="/healthz", status="200") >= 1


def test_a_worker_file_not_yet_sized_does_not_fail_the_scrape(
    start_service: StartService, tmp_path: Path
) -> None:
    """A worker's metrics file exists empty for a moment after it is created (and for good
    if the worker is killed then): the scrape leaves it out instead of answering 500. The
    multiprocess directory is named but not made: the service makes it (it failed to
    start on a FileNotFoundError)."""
    directory = tmp_path / "metrics"  # not made yet: the service makes it
    service = start_service(
        "sqlite",
        AGENTKEEP_WORKERS="2",
        AGENTKEEP_METRICS_AUTH="none",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    (directory / "counter_4194301.db").touch()  # a pid no worker has: created, never sized
    with httpx.Client(base_url=service.base_url) as http:
        http.get("/healthz")
        response = http.get("/metrics")
        assert response.status_code == 200, response.text[:300]
    samples = _samples(response.text)
    assert _value(samples, "agentkeep_http_requests_total", route="/healthz", status="200") >= 1


def test_a_bad_metrics_auth_setting_names_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTKEEP_METRICS_AUTH": "sometimes"}
    env.pop("AGENTKEEP_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "agentkeep", "serve", "-d", f"sqlite:///{tmp_path / 'x.db'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "AGENTKEEP_METRICS_AUTH" in done.stderr + done.stdout


def test_json_logs_one_object_per_line_with_request_fields(tmp_path: Path) -> None:
    """``--log-format json``: every stderr line is a JSON object; access records carry the request."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTKEEP_")}
    env.update(
        {
            "AGENTKEEP_API_KEYS": "acme:sk-json-logs",
            "AGENTKEEP_BACKUP_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentkeep",
                "serve",
                "-d",
                f"sqlite:///{tmp_path / 'json.db'}",
                "--port",
                str(port),
                "--log-format",
                "json",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, stderr_path.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.05)
        headers = {"Authorization": "Bearer sk-json-logs", "X-Request-ID": "req-test-42"}
        answered = httpx.post(f"{base}/v1/threads", json={}, headers=headers, timeout=30)
        assert answered.status_code == 200
        assert answered.headers["x-request-id"] == "req-test-42"
        thread_id = answered.json()["id"]
        missing = httpx.get(
            f"{base}/v1/threads/thread_nope", headers={"Authorization": "Bearer sk-json-logs"}
        )
        assert missing.status_code == 404
        generated = missing.headers["x-request-id"]
        assert generated.startswith("req_")
    finally:
        process.terminate()
        process.wait(30)
    lines = stderr_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    access = [r for r in records if r["logger"] == "agentkeep.access"]
    created = next(r for r in access if r.get("request_id") == "req-test-42")
    assert created["method"] == "POST" and created["path"] == "/v1/threads"
    assert created["status"] == 200 and created["route"] == "/v1/threads"
    assert isinstance(created["duration_ms"], (int, float)) and created["duration_ms"] >= 0
    not_found = next(r for r in access if r.get("request_id") == generated)
    assert not_found["status"] == 404 and not_found["route"] == "/v1/threads/{thread_id}"
    assert thread_id not in not_found["path"]
    assert any(r["logger"].startswith("uvicorn") for r in records)  # the server's own lines too
    assert any("agentkeep service ready" in r["message"] for r in records)
