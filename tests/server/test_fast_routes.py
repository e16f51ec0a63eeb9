"""The most requested routes run on the event loop, on the store's async path: no worker thread.

Rate limiting is on here (it is by default on PostgreSQL): each request is
counted with ``rate_limits.hit`` on that path too.

A sync route (and a sync dependency) is called in a worker thread of
anyio's pool; with 32 clients those hops were more than half of a list
request's time. These requests are served in process with every hop to a
worker thread refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
from _statements import sent_statements, verbs
from _threads import WAIT_S
from fastapi.testclient import TestClient

import agentkeep
from agentkeep.config import Settings
from agentkeep.server import create_app
from agentkeep.store.api_keys import DEFAULT_TENANT


@pytest.fixture
def http(db_url: str) -> Iterator[TestClient]:
    store = agentkeep.connect(db_url, auto_migrate=True)
    with TestClient(
        create_app(Settings(api_keys="k", rate_limit_enabled=True), store=store)
    ) as client:
        client.headers["Authorization"] = "Bearer k"
        yield client
    store.close()


def test_the_most_requested_routes_send_the_fewest_statements(db_url: str, backend: str) -> None:
    """A message's and an item's create and the lists of 20 (rate limiting off: its count is
    one more operation). PostgreSQL: one statement each, the append with the thread's
    checks, the page with the session's kind. SQLite: a list is one; a create is one write
    transaction (the append's three statements, then the session's check). The API key is
    resolved from the process's cache: no statement of its own."""
    store = agentkeep.connect(db_url, auto_migrate=True)
    settings = Settings(api_keys="k", rate_limit_enabled=False)
    with TestClient(create_app(settings, store=store)) as http:
        http.headers["Authorization"] = "Bearer k"
        turns = [{"role": "user", "content": "hi"}] * 3
        thread = http.post("/v1/threads", json={"messages": turns}).json()["id"]
        items = {"items": [{"role": "user", "content": "x"}]}
        conversation = http.post("/v1/conversations", json=items).json()["id"]
        routes: dict[str, tuple[str, str, dict[str, Any]]] = {
            "create message": ("POST", f"/v1/threads/{thread}/messages", {"json": turns[0]}),
            "list messages": ("GET", f"/v1/threads/{thread}/messages", {"params": {"limit": 20}}),
            "create item": ("POST", f"/v1/conversations/{conversation}/items", {"json": items}),
            "list items": ("GET", f"/v1/conversations/{conversation}/items", {}),
        }
        sent: dict[str, list[str]] = {}
        for name, (method, url, kwargs) in routes.items():
            assert http.request(method, url, **kwargs).status_code == 200  # warm
            with sent_statements(store) as statements:  # not the run worker's polls
                answer = http.request(method, url, **kwargs)
            assert answer.status_code == 200, answer.text
            sent[name] = statements
    store.close()
    for name in ("list messages", "list items"):
        assert verbs(sent[name]) == ["SELECT"], sent[name]
    for name in ("create message", "create item"):
        if backend == "postgres":
            assert verbs(sent[name]) == ["WITH"], name
        else:
            assert sent[name][0] == "BEGIN IMMEDIATE" and sent[name][-1] == "COMMIT", name
            assert verbs(sent[name]) == ["UPDATE", "SELECT", "INSERT", "SELECT"], name


def _assert_not_found(http: TestClient, cases: list[tuple[str, str]]) -> None:
    """Each URL answers 404 naming its object: ``(url, "thread")`` for "No thread found"."""
    for url, named in cases:
        gone = http.get(url)
        assert gone.status_code == 404, (url, gone.text)
        assert gone.json()["error"]["message"].startswith(f"No {named} found"), (url, gone.text)


async def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"a hop to a worker thread: {args[0]!r}")


@pytest.fixture
def no_worker_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(anyio.to_thread, "run_sync", _refuse)


def test_listing_messages_takes_no_worker_thread(
    http: TestClient, request: pytest.FixtureRequest
) -> None:
    thread = http.post("/v1/threads", json={"messages": [{"role": "user", "content": "hi"}] * 3})
    thread_id = thread.json()["id"]
    items = {"items": [{"role": "user", "content": "x"}]}
    conversation_id = http.post("/v1/conversations", json=items).json()["id"]
    request.getfixturevalue("no_worker_threads")
    page = http.get(f"/v1/threads/{thread_id}/messages", params={"limit": 2, "order": "asc"})
    assert page.status_code == 200, page.text
    assert int(page.headers["x-ratelimit-remaining-requests"]) > 0  # counted, on the loop too
    body = page.json()
    assert [m["content"][0]["text"]["value"] for m in body["data"]] == ["hi", "hi"]
    assert body["has_more"] is True
    after = http.get(f"/v1/threads/{thread_id}/messages", params={"after": body["last_id"]})
    assert after.status_code == 200 and after.json()["has_more"] is False
    for missing in ("thread_missing", conversation_id):  # a conversation with items: no thread
        gone = http.get(f"/v1/threads/{missing}/messages")
        assert gone.status_code == 404 and "thread" in gone.json()["error"]["message"]
    bad = http.get(f"/v1/threads/{thread_id}/messages", params={"after": "msg_nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"


def test_adding_a_message_takes_no_worker_thread(
    http: TestClient, request: pytest.FixtureRequest
) -> None:
    thread_id = http.post("/v1/threads", json={}).json()["id"]
    conversation_id = http.post("/v1/conversations", json={}).json()["id"]
    request.getfixturevalue("no_worker_threads")
    body = {"role": "user", "content": "hello"}
    added = http.post(f"/v1/threads/{thread_id}/messages", json=body)
    assert added.status_code == 200, added.text
    again = http.post(
        f"/v1/threads/{thread_id}/messages", json=body, headers={"Idempotency-Key": "k1"}
    )
    repeat = http.post(
        f"/v1/threads/{thread_id}/messages", json=body, headers={"Idempotency-Key": "k1"}
    )
    assert again.json()["id"] == repeat.json()["id"] != added.json()["id"]
    listed = http.get(f"/v1/threads/{thread_id}/messages", params={"order": "asc"}).json()
    assert [m["id"] for m in listed["data"]] == [added.json()["id"], again.json()["id"]]
    for missing in ("thread_missing", conversation_id):
        gone = http.post(f"/v1/threads/{missing}/messages", json=body)
        assert gone.status_code == 404 and "thread" in gone.json()["error"]["message"]
    bad = http.post(f"/v1/threads/{thread_id}/messages", json={"role": "user", "content": []})
    assert bad.status_code == 400, bad.text


def test_listing_conversation_items_takes_no_worker_thread(
    http: TestClient, request: pytest.FixtureRequest
) -> None:
    items = [{"role": "user", "content": f"m{i}"} for i in range(3)]
    conversation_id = http.post("/v1/conversations", json={"items": items}).json()["id"]
    thread_id = http.post("/v1/threads", json={}).json()["id"]
    request.getfixturevalue("no_worker_threads")
    url = f"/v1/conversations/{conversation_id}/items"
    page = http.get(url, params={"limit": 2})  # newest first by default
    assert page.status_code == 200, page.text
    body = page.json()
    assert [i["content"][0]["text"] for i in body["data"]] == ["m2", "m1"]
    assert body["has_more"] is True
    rest = http.get(url, params={"limit": 2, "after": body["last_id"]}).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["m0"]
    assert rest["has_more"] is False
    oldest = http.get(url, params={"order": "asc", "limit": 1}).json()
    assert oldest["data"][0]["content"][0]["text"] == "m0"
    http.post(f"/v1/threads/{thread_id}/messages", json={"role": "user", "content": "x"})
    for missing in ("conv_missing", thread_id):  # a thread, with a message: not a conversation
        gone = http.get(f"/v1/conversations/{missing}/items")
        assert gone.status_code == 404 and "conversation" in gone.json()["error"]["message"]
    bad = http.get(url, params={"after": "msg_nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"


def test_adding_conversation_items_takes_no_worker_thread(
    http: TestClient, request: pytest.FixtureRequest
) -> None:
    conversation_id = http.post("/v1/conversations", json={}).json()["id"]
    thread_id = http.post("/v1/threads", json={}).json()["id"]
    request.getfixturevalue("no_worker_threads")
    url = f"/v1/conversations/{conversation_id}/items"
    items = [
        {"type": "message", "role": "user", "content": "hello"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]
    added = http.post(url, json={"items": items})
    assert added.status_code == 200, added.text
    body = added.json()
    assert [i["type"] for i in body["data"]] == ["message", "function_call", "function_call_output"]
    assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
    keyed = {"Idempotency-Key": "k1"}
    once = http.post(url, json={"items": items[:1]}, headers=keyed).json()
    again = http.post(url, json={"items": items[:1]}, headers=keyed).json()
    assert once["data"][0]["id"] == again["data"][0]["id"]
    for missing in ("conv_missing", thread_id):
        gone = http.post(f"/v1/conversations/{missing}/items", json={"items": items})
        assert gone.status_code == 404 and "conversation" in gone.json()["error"]["message"]
    bad = http.post(url, json={"items": [items[0], {"role": "robot", "content": "x"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "items[1].role"
    stored = http.get(url, params={"order": "asc", "limit": 100}).json()["data"]
    assert [i["id"] for i in stored] == [i["id"] for i in body["data"]] + [once["data"][0]["id"]]
    assert http.get(f"/v1/threads/{thread_id}/messages").json()["data"] == []


def test_retrieving_assistants_sessions_messages_and_items_takes_no_worker_thread(
    http: TestClient, request: pytest.FixtureRequest
) -> None:
    """An assistant (at a version too, and its versions), a thread, a conversation, a thread's message and
    a conversation's item are each one read on the loop; 404s name the session first,
    then the message or item."""
    thread = http.post("/v1/threads", json={"metadata": {"k": "v"}}).json()
    message = http.post(
        f"/v1/threads/{thread['id']}/messages", json={"role": "user", "content": "hi"}
    ).json()
    conversation = http.post(
        "/v1/conversations", json={"items": [{"role": "user", "content": "yo"}]}
    ).json()
    item = http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"][0]
    other_thread = http.post("/v1/threads", json={}).json()["id"]
    assistant = http.post("/v1/assistants", json={"model": "m", "name": "v1"}).json()
    http.post(f"/v1/assistants/{assistant['id']}", json={"name": "v2"})
    request.getfixturevalue("no_worker_threads")
    got = http.get(f"/v1/assistants/{assistant['id']}", params={"version": 1})
    assert got.status_code == 200 and got.json() == assistant
    got = http.get(f"/v1/assistants/{assistant['id']}")
    assert got.json()["name"] == "v2" and got.headers["etag"] == '"2"'
    versions = http.get(f"/v1/assistants/{assistant['id']}/versions", params={"limit": 1})
    assert [(v["version"], v["name"]) for v in versions.json()["data"]] == [(2, "v2")]
    assert versions.json()["has_more"] is True
    versions = http.get(
        f"/v1/assistants/{assistant['id']}/versions", params={"after": 2, "limit": 1}
    )
    assert [(v["version"], v["name"]) for v in versions.json()["data"]] == [(1, "v1")]
    got = http.get(f"/v1/threads/{thread['id']}")
    assert got.status_code == 200 and got.json() == thread
    assert got.headers["etag"] == '"1"'
    assert http.get(f"/v1/conversations/{conversation['id']}").json() == conversation
    got = http.get(f"/v1/threads/{thread['id']}/messages/{message['id']}")
    assert got.status_code == 200 and got.json() == message
    got = http.get(f"/v1/conversations/{conversation['id']}/items/{item['id']}")
    assert got.status_code == 200 and got.json() == item
    _assert_not_found(
        http,
        [
            ("/v1/assistants/asst_missing", "assistant"),
            ("/v1/assistants/asst_missing/versions", "assistant"),
            (f"/v1/assistants/{assistant['id']}?version=3", "assistant version"),
            (f"/v1/threads/{conversation['id']}", "thread"),
            (f"/v1/conversations/{thread['id']}", "conversation"),
            (f"/v1/threads/thread_missing/messages/{message['id']}", "thread"),
            (f"/v1/threads/{conversation['id']}/messages/{item['id']}", "thread"),
            (f"/v1/threads/{other_thread}/messages/{message['id']}", "message"),
            (f"/v1/threads/{thread['id']}/messages/msg_missing", "message"),
            (f"/v1/conversations/{thread['id']}/items/{message['id']}", "conversation"),
            (f"/v1/conversations/{conversation['id']}/items/{message['id']}", "item"),
        ],
    )


def test_listing_and_retrieving_run_steps_takes_no_worker_thread(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's steps, listed and one by one, are reads on the loop after the run's own
    one-read check; 404s name the thread, the run, then the step."""
    store = agentkeep.connect(db_url, auto_migrate=True)
    acme = store.tenant("acme")
    thread = acme.sessions.create(kind="thread")
    # Ended runs and steps: the service's run worker leaves them as they are.
    run = acme.runs.create("asst_x", session_id=thread.id, status="completed")
    other = acme.runs.create("asst_x", session_id=thread.id, status="completed")
    made = [
        acme.run_steps.create(run.id, "tool_calls", status="completed", details={"i": i})
        for i in range(3)
    ]
    foreign = acme.run_steps.create(other.id, "tool_calls", status="completed")
    with TestClient(create_app(Settings(api_keys="acme:k"), store=store)) as http:
        http.headers["Authorization"] = "Bearer k"
        base = f"/v1/threads/{thread.id}/runs/{run.id}/steps"
        # only around the requests: the service's stop hops to a thread
        with monkeypatch.context() as refusing:
            refusing.setattr(anyio.to_thread, "run_sync", _refuse)
            page = http.get(base, params={"limit": 2, "order": "asc"})
            assert page.status_code == 200, page.text
            body = page.json()
            assert [s["id"] for s in body["data"]] == [made[0].id, made[1].id] and body["has_more"]
            rest = http.get(base, params={"order": "asc", "after": body["last_id"]}).json()
            assert [s["id"] for s in rest["data"]] == [made[2].id] and not rest["has_more"]
            got = http.get(f"{base}/{made[1].id}")
            assert got.status_code == 200 and got.json() == body["data"][1]
            _assert_not_found(
                http,
                [
                    (f"/v1/threads/thread_missing/runs/{run.id}/steps", "thread"),
                    (f"/v1/threads/{thread.id}/runs/run_missing/steps", "run"),
                    (f"{base}/{foreign.id}", "run step"),
                    (f"{base}/step_missing", "run step"),
                ],
            )
    store.close()


def test_listing_a_responses_input_items_takes_no_worker_thread(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /v1/responses/{id}/input_items`` is one read on the loop, in item order; its
    ``DELETE`` is one write on the loop."""
    store = agentkeep.connect(db_url, auto_migrate=True)
    items = [
        {"id": f"msg_{9 - i}", "type": "message", "role": "user", "content": str(i)}
        for i in range(3)
    ]
    response = store.tenant("acme").responses.create(
        model="m", input_items=items, status="completed"
    )
    with TestClient(create_app(Settings(api_keys="acme:k"), store=store)) as http:
        http.headers["Authorization"] = "Bearer k"
        url = f"/v1/responses/{response.id}/input_items"
        with monkeypatch.context() as refusing:
            refusing.setattr(anyio.to_thread, "run_sync", _refuse)
            page = http.get(url, params={"order": "asc", "limit": 2})
            assert page.status_code == 200, page.text
            body = page.json()
            assert [i["id"] for i in body["data"]] == ["msg_9", "msg_8"] and body["has_more"]
            rest = http.get(url, params={"order": "asc", "after": body["last_id"]}).json()
            assert [i["id"] for i in rest["data"]] == ["msg_7"] and not rest["has_more"]
            newest = http.get(url).json()
            assert [i["id"] for i in newest["data"]] == ["msg_7", "msg_8", "msg_9"]
            _assert_not_found(http, [("/v1/responses/resp_missing/input_items", "response")])
            bad = http.get(url, params={"after": "msg_missing"})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"
            gone = http.delete(f"/v1/responses/{response.id}")  # one transaction, on the loop
            assert gone.status_code == 200, gone.text
            assert gone.json() == {"id": response.id, "object": "response", "deleted": True}
            _assert_not_found(
                http, [(f"/v1/responses/{response.id}", "response"), (url, "response")]
            )
            again = http.delete(f"/v1/responses/{response.id}")
            assert again.status_code == 404, again.text
    store.close()


def test_cancelling_a_background_response_takes_no_worker_thread(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``POST /v1/responses/{id}/cancel`` on the loop: a running background response ends
    cancelled with its stream's last event; an ended one is answered unchanged; a
    synchronous one is a 400 naming ``response_id``; an unknown one a 404."""
    store = agentkeep.connect(db_url, auto_migrate=True)
    mine = store.tenant("acme")
    # (in progress, with no worker: the app's own worker would claim a queued one)
    queued = mine.responses.create(model="m", input_items=[], background=True)
    direct = mine.responses.create(model="m", input_items=[], status="completed")
    with TestClient(create_app(Settings(api_keys="acme:k"), store=store)) as http:
        http.headers["Authorization"] = "Bearer k"
        with monkeypatch.context() as refusing:
            refusing.setattr(anyio.to_thread, "run_sync", _refuse)
            cancelled = http.post(f"/v1/responses/{queued.id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            again = http.post(f"/v1/responses/{queued.id}/cancel")
            assert again.status_code == 200 and again.json()["status"] == "cancelled"
            sync = http.post(f"/v1/responses/{direct.id}/cancel")
            assert sync.status_code == 400 and sync.json()["error"]["param"] == "response_id"
            missing = http.post("/v1/responses/resp_missing/cancel")
            assert missing.status_code == 404, missing.text
    assert mine.responses.get(queued.id).status == "cancelled"
    assert mine.responses.get(direct.id).status == "completed"
    last = mine.responses.events(queued.id)[-1]
    assert last.data["response"]["status"] == "cancelled", last  # the stream's end
    store.close()


def test_deleting_threads_conversations_and_assistants_and_listing_assistants(
    http: TestClient, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """No anyio worker thread; on PostgreSQL no worker thread at all (on SQLite a delete
    whose rows cascade runs in one: SQLite's writer does not check foreign keys). A
    thread's id is a 404 at the conversation route and the other way round, and the
    session stays."""
    thread_id = http.post("/v1/threads", json={"messages": [{"role": "user", "content": "a"}]})
    thread = thread_id.json()["id"]
    conversation = http.post("/v1/conversations", json={}).json()["id"]
    assistants = [
        http.post("/v1/assistants", json={"model": "m", "name": f"a{i}"}).json()["id"]
        for i in range(3)
    ]
    request.getfixturevalue("no_worker_threads")
    if backend == "postgres":
        monkeypatch.setattr(asyncio, "to_thread", _refuse)

    listed = http.get("/v1/assistants", params={"limit": 2})
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()["data"]] == assistants[::-1][:2]
    assert listed.json()["has_more"] is True
    gone = http.delete(f"/v1/assistants/{assistants[0]}")
    assert gone.status_code == 200 and gone.json()["deleted"] is True, gone.text
    assert http.delete(f"/v1/assistants/{assistants[0]}").status_code == 404

    wrong = http.delete(f"/v1/conversations/{thread}")
    assert wrong.status_code == 404 and "No conversation found" in wrong.text, wrong.text
    wrong = http.delete(f"/v1/threads/{conversation}")
    assert wrong.status_code == 404 and "No thread found" in wrong.text, wrong.text
    for url in (f"/v1/threads/{thread}", f"/v1/conversations/{conversation}"):
        done = http.delete(url)
        assert done.status_code == 200 and done.json()["deleted"] is True, done.text
        assert http.delete(url).status_code == 404
    _assert_not_found(
        http,
        [
            (f"/v1/threads/{thread}", "thread"),
            (f"/v1/conversations/{conversation}", "conversation"),
        ],
    )


def test_modifying_threads_and_conversations_and_listing_runs_take_no_worker_thread(
    db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """A thread's or a conversation's modify is one statement of that kind on the store's
    async path (a read before it when ``tool_resources`` is merged into the thread's
    extra); a thread's runs are listed there too. No anyio worker thread, and on
    PostgreSQL none at all. A stale ``If-Match`` is a 409 and changes nothing; the other
    kind's id is a 404. (Rate limiting off: the runs are waited for on the store.)"""
    store = agentkeep.connect(db_url, auto_migrate=True)
    mine = store.tenant(DEFAULT_TENANT)
    client = TestClient(create_app(Settings(api_keys="k", rate_limit_enabled=False), store=store))
    with client as http:
        http.headers["Authorization"] = "Bearer k"
        _modify_and_list(http, mine, request, monkeypatch, backend)
        monkeypatch.undo()  # the app's shutdown may use worker threads
    store.close()


def _modify_and_list(
    http: TestClient,
    mine: agentkeep.Store,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    tools = {"code_interpreter": {"file_ids": ["f1"]}}
    thread = http.post("/v1/threads", json={"tool_resources": tools}).json()["id"]
    conversation = http.post("/v1/conversations", json={"metadata": {"a": "1"}}).json()["id"]
    assistant = http.post("/v1/assistants", json={"model": "m"}).json()["id"]
    runs = []
    for _ in range(3):  # one active run per thread: each ends (no upstream: failed) first
        made = http.post(f"/v1/threads/{thread}/runs", json={"assistant_id": assistant})
        assert made.status_code == 200, made.text
        runs.append(made.json()["id"])
        deadline = time.monotonic() + WAIT_S
        while mine.runs.get(runs[-1]).status != "failed":
            assert time.monotonic() < deadline, "the run did not fail"
            time.sleep(0.01)
    request.getfixturevalue("no_worker_threads")
    if backend == "postgres":
        monkeypatch.setattr(asyncio, "to_thread", _refuse)

    changed = http.post(f"/v1/threads/{thread}", json={"metadata": {"k": "v"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["metadata"] == {"k": "v"} and changed.json()["tool_resources"] == tools
    assert changed.headers["etag"] == '"2"'
    merged = http.post(
        f"/v1/threads/{thread}",
        json={"tool_resources": {"file_search": {"vector_store_ids": ["vs1"]}}},
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["tool_resources"] == {"file_search": {"vector_store_ids": ["vs1"]}}
    assert merged.json()["metadata"] == {"k": "v"} and merged.headers["etag"] == '"3"'
    stale = http.post(f"/v1/threads/{thread}", json={"metadata": {}}, headers={"If-Match": '"2"'})
    assert stale.status_code == 409, stale.text
    assert http.get(f"/v1/threads/{thread}").json()["metadata"] == {"k": "v"}

    updated = http.post(f"/v1/conversations/{conversation}", json={"metadata": {"b": "2"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["metadata"] == {"b": "2"} and updated.headers["etag"] == '"2"'
    stale = http.post(
        f"/v1/conversations/{conversation}", json={"metadata": {}}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 409, stale.text

    wrong = http.post(f"/v1/conversations/{thread}", json={"metadata": {"x": "y"}})
    assert wrong.status_code == 404 and "No conversation found" in wrong.text, wrong.text
    wrong = http.post(f"/v1/threads/{conversation}", json={"metadata": {"x": "y"}})
    assert wrong.status_code == 404 and "No thread found" in wrong.text, wrong.text
    wrong = http.post(f"/v1/threads/{conversation}", json={"tool_resources": tools})
    assert wrong.status_code == 404 and "No thread found" in wrong.text, wrong.text
    assert http.get(f"/v1/conversations/{conversation}").json()["metadata"] == {"b": "2"}

    listed = http.get(f"/v1/threads/{thread}/runs", params={"limit": 2})
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["data"]] == runs[::-1][:2]
    assert listed.json()["has_more"] is True
    rest = http.get(f"/v1/threads/{thread}/runs", params={"after": listed.json()["last_id"]})
    assert [r["id"] for r in rest.json()["data"]] == runs[:1]
    for missing in ("thread_missing", conversation):
        gone = http.get(f"/v1/threads/{missing}/runs")
        assert gone.status_code == 404 and "No thread found" in gone.text, gone.text

    run = runs[-1]  # a run's modify, and the replay of its events, on the loop too
    changed = http.post(f"/v1/threads/{thread}/runs/{run}", json={"metadata": {"r": "1"}})
    assert changed.status_code == 200 and changed.json()["metadata"] == {"r": "1"}, changed.text
    assert mine.runs.get(run).metadata == {"r": "1"}
    version = changed.headers["etag"]
    stale = http.post(
        f"/v1/threads/{thread}/runs/{run}", json={"metadata": {}}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 409 and mine.runs.get(run).metadata == {"r": "1"}, stale.text
    same = http.post(f"/v1/threads/{thread}/runs/{run}", json={})
    assert same.status_code == 200 and same.headers["etag"] == version, same.text
    wrong = http.post(f"/v1/threads/{other_thread(http)}/runs/{run}", json={"metadata": {}})
    assert wrong.status_code == 404 and "No run found" in wrong.text, wrong.text
    replay = http.get(f"/v1/threads/{thread}/runs/{run}/events")
    assert replay.status_code == 200, replay.text
    names = [
        line[len("event: ") :] for line in replay.text.splitlines() if line.startswith("event: ")
    ]
    assert names[0] == "thread.run.created" and names[-2:] == ["thread.run.failed", "done"], names
    bad = http.get(f"/v1/threads/{thread}/runs/{run}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400, bad.text
    gone = http.get(f"/v1/threads/{thread}/runs/run_missing/events")
    assert gone.status_code == 404, gone.text


def other_thread(http: TestClient) -> str:
    """A new thread's id."""
    made = http.post("/v1/threads", json={})
    assert made.status_code == 200, made.text
    thread: str = made.json()["id"]
    return thread


def test_modifying_and_deleting_messages_and_items_take_no_worker_thread(
    http: TestClient, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread's message is modified and deleted, a conversation's item deleted, on the
    store's async path: no worker thread at all. A message of another thread, or a
    conversation's item at the thread route, is a 404 and stays."""
    turns = {"messages": [{"role": "user", "content": f"m{i}"} for i in range(2)]}
    thread = http.post("/v1/threads", json=turns).json()["id"]
    other = http.post("/v1/threads", json=turns).json()["id"]
    conversation = http.post(
        "/v1/conversations", json={"items": [{"role": "user", "content": "x"}] * 2}
    ).json()["id"]
    messages = http.get(f"/v1/threads/{thread}/messages", params={"order": "asc"}).json()["data"]
    items = http.get(f"/v1/conversations/{conversation}/items", params={"order": "asc"}).json()
    request.getfixturevalue("no_worker_threads")
    monkeypatch.setattr(asyncio, "to_thread", _refuse)

    first = messages[0]["id"]
    changed = http.post(f"/v1/threads/{thread}/messages/{first}", json={"metadata": {"k": "v"}})
    assert changed.status_code == 200 and changed.json()["metadata"] == {"k": "v"}, changed.text
    wrong = http.post(f"/v1/threads/{other}/messages/{first}", json={"metadata": {}})
    assert wrong.status_code == 404, wrong.text
    gone = http.delete(f"/v1/threads/{other}/messages/{first}")
    assert gone.status_code == 404, gone.text
    gone = http.delete(f"/v1/threads/{conversation}/messages/{items['data'][0]['id']}")
    assert gone.status_code == 404, gone.text
    done = http.delete(f"/v1/threads/{thread}/messages/{first}")
    assert done.status_code == 200 and done.json()["deleted"] is True, done.text
    assert http.delete(f"/v1/threads/{thread}/messages/{first}").status_code == 404
    left = http.get(f"/v1/threads/{thread}/messages").json()["data"]
    assert [m["id"] for m in left] == [messages[1]["id"]]

    item = items["data"][0]["id"]
    removed = http.delete(f"/v1/conversations/{conversation}/items/{item}")
    assert removed.status_code == 200 and removed.json()["id"] == conversation, removed.text
    assert http.delete(f"/v1/conversations/{conversation}/items/{item}").status_code == 404
    kept = http.get(f"/v1/conversations/{conversation}/items").json()["data"]
    assert [i["id"] for i in kept] == [items["data"][1]["id"]]
