"""Every error status in OpenAI's envelope: 400, 401, 404, 405, 413 live; 409, 500, 503 mapped."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from live import MAX_BODY_BYTES, LiveService, Tenant, until_refused

import agentkeep
from agentkeep.config import Settings
from agentkeep.errors import Conflict, InvalidTransition, StoreUnavailable
from agentkeep.server import create_app
from agentkeep.store.api_keys import create_key, revoke_key

pytestmark = pytest.mark.slow


def envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def test_missing_malformed_unknown_and_revoked_keys(service: LiveService) -> None:
    assert envelope(service.http(key="").get("/v1/assistants"), 401)["code"] == "invalid_api_key"
    raw = httpx.get(f"{service.base_url}/v1/assistants", headers={"Authorization": "Basic abc"})
    envelope(raw, 401)
    envelope(service.http(key="sk-nobody").get("/v1/assistants"), 401)

    _, key = create_key(service.store, tenant="revoked_t")
    assert service.http(key=key).get("/v1/assistants").status_code == 200
    info = next(k for k in _keys(service) if k.tenant_id == "revoked_t")
    revoke_key(service.store, info.id)
    envelope(until_refused(service.http(key=key)), 401)

    with pytest.raises(openai.AuthenticationError):
        service.client(key="sk-nobody").beta.assistants.list()


def _keys(service: LiveService) -> list[Any]:
    from agentkeep.store.api_keys import list_keys

    return list_keys(service.store, tenant="revoked_t")


def test_bootstrap_keys_reach_their_tenants(service: LiveService) -> None:
    acme = service.client("acme").beta.assistants.create(model="m")
    globex = service.client("globex")
    with pytest.raises(openai.NotFoundError):
        globex.beta.assistants.retrieve(acme.id)
    assert service.store.tenant("acme").agents.get(acme.id).id == acme.id


def test_invalid_json_and_bodies_are_400_naming_the_field(tenant: Tenant) -> None:
    http = tenant.http()
    error = envelope(
        http.post(
            "/v1/assistants", content=b'{"model": ', headers={"content-type": "application/json"}
        ),
        400,
    )
    assert "JSON" in error["message"]
    assert envelope(http.post("/v1/assistants", json={}), 400)["param"] == "model"
    assert envelope(http.post("/v1/assistants", json={"model": 5}), 400)["param"] == "model"
    assert envelope(http.post("/v1/assistants", json=[1]), 400)["type"] == "invalid_request_error"
    error = envelope(http.post("/v1/assistants", json={"model": "m", "colour": 1}), 400)
    assert error["param"] == "colour" and "Unknown parameter" in error["message"]
    big = {"model": "m", "name": "n" * 300}
    assert envelope(http.post("/v1/assistants", json=big), 400)["param"] == "name"
    bad_tool = {"model": "m", "tools": [{"type": "function", "function": {}}]}
    assert envelope(http.post("/v1/assistants", json=bad_tool), 400)["param"] == (
        "tools[0].function.name"
    )
    many = {"model": "m", "metadata": {f"k{i}": "v" for i in range(17)}}
    assert envelope(http.post("/v1/assistants", json=many), 400)["param"] == "metadata"
    assert (
        envelope(http.post("/v1/assistants", json={"model": "m", "temperature": 3}), 400)["param"]
        == "temperature"
    )
    assert http.get("/v1/assistants").json()["data"] == []


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("after=msg_unknown", "after"),
        ("before=msg_unknown", "before"),
    ],
)
def test_invalid_list_params_are_400(tenant: Tenant, query: str, param: str) -> None:
    thread = tenant.client().beta.threads.create(messages=[{"role": "user", "content": "x"}])
    for path in ("/v1/assistants", f"/v1/threads/{thread.id}/messages"):
        if param in ("after", "before") and path == "/v1/assistants":
            continue  # assistant ids sort by time: an unknown cursor is just a position
        error = envelope(tenant.http().get(f"{path}?{query}"), 400)
        assert error["param"] == param


def test_limit_bounds_are_accepted(tenant: Tenant) -> None:
    http = tenant.http()
    for limit in (1, 100):
        assert http.get(f"/v1/assistants?limit={limit}").status_code == 200


def test_unknown_ids_routes_and_methods(tenant: Tenant) -> None:
    http = tenant.http()
    for path in (
        "/v1/assistants/asst_nope",
        "/v1/threads/thread_nope",
        "/v1/threads/thread_nope/messages",
        "/v1/threads/thread_nope/messages/msg_nope",
        "/v1/conversations/conv_nope",
        "/v1/conversations/conv_nope/items",
        "/v1/conversations/conv_nope/items/msg_nope",
        "/v1/nothing",
    ):
        envelope(http.get(path), 404)
    envelope(http.delete("/v1/assistants/asst_nope"), 404)
    envelope(http.post("/v1/threads/thread_nope", json={"metadata": {}}), 404)
    envelope(
        http.post("/v1/threads/thread_nope/messages", json={"role": "user", "content": "x"}), 404
    )
    envelope(http.post("/v1/conversations/conv_nope/items", json={"items": []}), 404)
    envelope(http.put("/v1/assistants"), 405)


def test_oversize_body_is_413(tenant: Tenant) -> None:
    http = tenant.http()
    payload = b'{"model": "m", "instructions": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    error = envelope(
        http.post("/v1/assistants", content=payload, headers={"content-type": "application/json"}),
        413,
    )
    assert error["code"] == "request_too_large"

    def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b"x" * (MAX_BODY_BYTES // 10)

    response = http.post(
        "/v1/assistants", content=chunks(), headers={"content-type": "application/json"}
    )
    envelope(response, 413)
    assert http.get("/v1/assistants").json()["data"] == []
    # just under the limit is fine
    ok = {"model": "m", "instructions": "y" * 200_000}
    assert http.post("/v1/assistants", json=ok).status_code == 200


def test_never_422(tenant: Tenant) -> None:
    http = tenant.http()
    for response in (
        http.post("/v1/threads", json={"messages": "x"}),
        http.post("/v1/threads", json={"messages": [{"role": "user"}]}),
        http.post("/v1/conversations", json={"metadata": 1}),
        http.post("/v1/assistants", content=b"not json", headers={"content-type": "text/plain"}),
        http.get("/v1/threads/x/messages?limit=-1"),
    ):
        assert response.status_code == 400, response.text


# -- mapped in process: store errors that a live request cannot provoke on demand ---------------


@pytest.fixture
def app_client(tmp_path: Any) -> Any:
    store = agentkeep.connect(f"sqlite:///{tmp_path}/app.db")
    app = create_app(Settings(api_keys="k"), store=store)

    @app.get("/boom/{kind}")
    def boom(kind: str) -> None:
        if kind == "conflict":
            raise Conflict("agent 'a' is at version 3, not 2; reload and retry")
        if kind == "transition":
            raise InvalidTransition("run", "run_1", "completed", "in_progress")
        if kind == "unavailable":
            raise StoreUnavailable("the database cannot be reached")
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = "Bearer k"
        yield client
    store.close()


def test_conflict_is_409(app_client: Any) -> None:
    assert envelope(app_client.get("/boom/conflict"), 409)["code"] == "conflict"
    assert envelope(app_client.get("/boom/transition"), 409)["code"] == "conflict"


def test_unavailable_is_503(app_client: Any) -> None:
    error = envelope(app_client.get("/boom/unavailable"), 503)
    assert error["type"] == "server_error" and error["code"] == "database_unavailable"


def test_unexpected_error_is_a_500_envelope_and_a_log_line(
    app_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    error = envelope(app_client.get("/boom/bug"), 500)
    assert error["type"] == "server_error"
    assert "a bug" not in error["message"]
    assert any("a bug" in r.getMessage() or r.exc_info for r in caplog.records)
