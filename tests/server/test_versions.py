"""Optimistic concurrency over HTTP: ETag out, If-Match / ?expected_version= in, 409 VERSION_CONFLICT."""

from __future__ import annotations

from live import Tenant


def test_if_match_and_expected_version_on_modify_endpoints(tenant: Tenant) -> None:
    http = tenant.http()
    created = http.post("/v1/assistants", json={"model": "m"}).json()
    path = f"/v1/assistants/{created['id']}"
    assert http.get(path).headers["etag"] == '"1"'

    ok = http.post(path, json={"name": "a"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    stale = http.post(path, json={"name": "b"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409, stale.text
    error = stale.json()["error"]
    assert error["code"] == "VERSION_CONFLICT" and error["param"] == "expected_version"
    assert (error["current_version"], error["requested_version"]) == (2, 1)
    assert http.get(path).json()["name"] == "a"  # nothing written
    tools = {"tools": [{"type": "code_interpreter"}], "temperature": 0.5}  # the merge path
    assert http.post(f"{path}?expected_version=1", json=tools).status_code == 409
    merged = http.post(f"{path}?expected_version=2", json=tools)
    assert merged.status_code == 200 and merged.headers["etag"] == '"3"'  # one change, one version
    assert merged.json()["tools"] == [{"type": "code_interpreter"}]
    again = http.post(path, json={"temperature": 0.7})  # the merge path without If-Match
    assert again.headers["etag"] == '"4"' and again.json()["temperature"] == 0.7
    assert http.post(path, json={}, headers={"If-Match": "soon"}).json()["error"]["param"] == (
        "If-Match"
    )
    assert http.post(path, json={"name": "c"}).headers["etag"] == '"5"'  # none: last writer wins

    thread = http.post("/v1/threads", json={}).json()
    tpath = f"/v1/threads/{thread['id']}"
    assert (
        http.post(tpath, json={"metadata": {"k": "v"}}, headers={"If-Match": '"1"'}).status_code
        == 200
    )
    assert http.post(tpath, json={"metadata": {}}, headers={"If-Match": '"1"'}).status_code == 409
    assert http.get(tpath).json()["metadata"] == {"k": "v"}
    resources = {"tool_resources": {"code_interpreter": {"file_ids": []}}}  # the merge path
    assert http.post(tpath, json=resources, headers={"If-Match": '"1"'}).status_code == 409
    merged = http.post(tpath, json=resources, headers={"If-Match": '"2"'})
    assert merged.status_code == 200 and merged.headers["etag"] == '"3"'
    assert http.post(tpath, json=resources).headers["etag"] == '"4"'
    assert http.get(tpath).json()["metadata"] == {"k": "v"}

    conversation = http.post("/v1/conversations", json={}).json()
    cpath = f"/v1/conversations/{conversation['id']}"
    assert http.post(cpath, json={"metadata": {}}, headers={"If-Match": 'W/"7"'}).status_code == 409
    assert http.post(cpath, json={"metadata": {}}, headers={"If-Match": '"1"'}).status_code == 200


def test_assistant_versions_and_the_version_a_run_was_made_with(tenant: Tenant) -> None:
    http = tenant.http()
    created = http.post("/v1/assistants", json={"model": "m", "instructions": "one"}).json()
    path = f"/v1/assistants/{created['id']}"
    assert http.post(path, json={"instructions": "two", "temperature": 0.3}).status_code == 200
    old = http.get(path, params={"version": 1})
    assert old.status_code == 200 and old.headers["etag"] == '"1"'
    assert (old.json()["instructions"], old.json()["temperature"]) == ("one", 1.0)
    assert http.get(path).json()["temperature"] == 0.3
    assert http.get(path).json()["instructions"] == "two"
    missing = http.get(path, params={"version": 9})
    assert missing.status_code == 404 and "assistant version" in missing.json()["error"]["message"]
    assert http.get(path, params={"version": 0}).json()["error"]["param"] == "version"

    listed = http.get(f"{path}/versions", params={"limit": 1}).json()
    assert [(v["version"], v["instructions"]) for v in listed["data"]] == [(2, "two")]
    assert listed["has_more"] and listed["last_id"] == "2"
    rest = http.get(f"{path}/versions", params={"after": listed["last_id"]}).json()
    assert [v["version"] for v in rest["data"]] == [1] and not rest["has_more"]
    assert http.get("/v1/assistants/asst_nope/versions").status_code == 404

    # a run records the version it was made with, also through the openai client
    client = tenant.client()
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=created["id"])
    assert run.to_dict()["assistant_version"] == 2
    http.post(path, json={"instructions": "three"})
    again = http.get(f"/v1/threads/{thread.id}/runs/{run.id}").json()
    assert again["assistant_version"] == 2
    ran_with = http.get(path, params={"version": again["assistant_version"]}).json()
    assert ran_with["instructions"] == "two"
