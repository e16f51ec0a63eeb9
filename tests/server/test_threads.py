"""Threads and their messages over HTTP with the official client."""

from __future__ import annotations

import httpx
import openai
import pytest
from _threads import in_threads
from live import LiveService, Tenant

pytestmark = pytest.mark.slow


def test_thread_crud_with_initial_messages(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "Hello", "metadata": {"n": "1"}},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
        ],
        metadata={"user": "u1"},
    )
    assert thread.id.startswith("thread_")
    assert thread.object == "thread"
    assert thread.metadata == {"user": "u1"}

    messages = client.beta.threads.messages.list(thread.id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant"]
    first, second = messages.data
    assert first.content[0].type == "text"
    assert first.content[0].text.value == "Hello"  # type: ignore[union-attr]
    assert first.content[0].text.annotations == []  # type: ignore[union-attr]
    assert first.metadata == {"n": "1"}
    assert first.thread_id == thread.id
    assert first.status == "completed"
    assert first.run_id is None and first.assistant_id is None
    assert first.attachments == []
    assert second.content[1].type == "image_url"

    assert client.beta.threads.retrieve(thread.id).metadata == {"user": "u1"}
    modified = client.beta.threads.update(thread.id, metadata={"user": "u2"})
    assert modified.metadata == {"user": "u2"}
    assert client.beta.threads.retrieve(thread.id).metadata == {"user": "u2"}

    deleted = client.beta.threads.delete(thread.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (thread.id, True, "thread.deleted")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(first.id, thread_id=thread.id)


def test_empty_thread(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    assert thread.metadata == {}
    page = client.beta.threads.messages.list(thread.id)
    assert page.data == [] and page.has_more is False


def test_message_crud(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(
        thread.id, role="user", content="What is 2+2?", metadata={"k": "v"}
    )
    assert message.id.startswith("msg_")
    assert message.object == "thread.message"
    assert message.content[0].text.value == "What is 2+2?"  # type: ignore[union-attr]

    got = client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert got.model_dump() == message.model_dump()

    updated = client.beta.threads.messages.update(
        message.id, thread_id=thread.id, metadata={"k": "w"}
    )
    assert updated.metadata == {"k": "w"}
    assert updated.content[0].text.value == "What is 2+2?"  # type: ignore[union-attr]

    deleted = client.beta.threads.messages.delete(message.id, thread_id=thread.id)
    assert deleted.deleted is True and deleted.object == "thread.message.deleted"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)


def test_message_of_another_thread_is_404(client: openai.OpenAI) -> None:
    a = client.beta.threads.create(messages=[{"role": "user", "content": "in a"}])
    b = client.beta.threads.create()
    message = client.beta.threads.messages.list(a.id).data[0]
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=b.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.delete(message.id, thread_id=b.id)


def test_message_pagination(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    ids = [
        client.beta.threads.messages.create(thread.id, role="user", content=f"m{i}").id
        for i in range(9)
    ]
    page = client.beta.threads.messages.list(thread.id, limit=4)
    assert [m.id for m in page.data] == ids[::-1][:4]  # newest first by default
    assert page.has_more is True
    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=2)] == ids[::-1]
    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=4, order="asc")] == ids
    after = client.beta.threads.messages.list(thread.id, order="asc", after=ids[3], limit=3)
    assert [m.id for m in after.data] == ids[4:7]
    before = client.beta.threads.messages.list(thread.id, order="asc", before=ids[3], limit=2)
    assert [m.id for m in before.data] == ids[1:3]


def test_list_filters_by_run_id(service: LiveService, tenant: Tenant) -> None:
    client = tenant.client()
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread.id, role="user", content="q")
    scoped = service.store.tenant(tenant.id)
    run = scoped.runs.create("asst_x", session_id=thread.id, status="queued")
    scoped.runs.transition(run.id, "cancelled")
    answer = scoped.messages.append(thread.id, "assistant", "a", run_id=run.id, agent_id="asst_x")
    page = client.beta.threads.messages.list(thread.id, run_id=run.id)
    assert [m.id for m in page.data] == [answer.id]
    assert page.data[0].run_id == run.id
    assert page.data[0].assistant_id == "asst_x"


def test_new_message_rejected_while_a_run_is_active(service: LiveService, tenant: Tenant) -> None:
    client = tenant.client()
    thread = client.beta.threads.create()
    scoped = service.store.tenant(tenant.id)
    # requires_action: active, and the run worker leaves it alone
    run = scoped.runs.create("asst_x", session_id=thread.id, status="queued")
    scoped.runs.transition(run.id, "in_progress")
    scoped.runs.transition(run.id, "requires_action", required_action={"type": "x"})
    with pytest.raises(openai.BadRequestError) as info:
        client.beta.threads.messages.create(thread.id, role="user", content="more")
    assert run.id in info.value.message
    assert client.beta.threads.messages.list(thread.id).data == []

    scoped.runs.transition(run.id, "cancelled")
    client.beta.threads.messages.create(thread.id, role="user", content="more")
    assert len(client.beta.threads.messages.list(thread.id).data) == 1


def test_conversation_is_not_a_thread(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.create(conversation.id, role="user", content="x")


def test_invalid_message_bodies(tenant: Tenant) -> None:
    http: httpx.Client = tenant.http()
    thread = http.post("/v1/threads", json={}).json()
    url = f"/v1/threads/{thread['id']}/messages"
    cases = [
        ({"role": "system", "content": "x"}, "role"),
        ({"role": "user"}, "content"),
        ({"role": "user", "content": []}, "content"),
        ({"role": "user", "content": 5}, "content"),
        ({"role": "user", "content": [5]}, "content[0]"),
        ({"role": "user", "content": [{"type": "video"}]}, "content[0].type"),
        ({"role": "user", "content": "x", "metadata": {"k": 1}}, "metadata.k"),
        ({"role": "user", "content": "x", "metadata": {"k" * 65: "v"}}, None),
        ({"role": "user", "content": "x", "color": "red"}, "color"),
    ]
    for body, param in cases:
        response = http.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        if param is not None:
            assert error["param"] == param, (body, error)
        else:
            assert error["param"].startswith("metadata."), error
    assert http.get(url).json()["data"] == []


def test_idempotency_key_makes_a_retried_create_safe(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    headers = {"Idempotency-Key": "retry-1"}
    first = client.beta.threads.messages.create(
        thread.id, role="user", content="once", extra_headers=headers
    )
    again = client.beta.threads.messages.create(
        thread.id, role="user", content="once", extra_headers=headers
    )
    assert again.id == first.id
    other = client.beta.threads.messages.create(thread.id, role="user", content="twice")
    assert [m.id for m in client.beta.threads.messages.list(thread.id, order="asc")] == [
        first.id,
        other.id,
    ]


def test_concurrent_tool_resources_modifies_all_land(tenant: Tenant) -> None:
    """A thread's ``tool_resources`` is merged into its extra by a read and a write at the
    version read: writers racing on one thread each land (a lost race reads again), and
    every change is one version."""
    thread = tenant.client().beta.threads.create(metadata={"kept": "yes"})
    writers, each = 6, 4

    def modify(n: int) -> None:
        client = tenant.client()
        for i in range(each):
            client.beta.threads.update(
                thread.id, tool_resources={"code_interpreter": {"file_ids": [f"file-{n}-{i}"]}}
            )

    in_threads(writers, modify)
    final = tenant.client().with_raw_response.beta.threads.retrieve(thread.id)
    assert final.headers["etag"] == f'"{1 + writers * each}"'
    parsed = final.parse()
    assert parsed.metadata == {"kept": "yes"}
    assert parsed.tool_resources is not None and parsed.tool_resources.code_interpreter is not None
