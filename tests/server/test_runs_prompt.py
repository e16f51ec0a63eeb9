"""What a run sends upstream from what its thread holds: images, refusals, messages the
chat API cannot take, a history longer than one page, the answer format.

Threads are filled over HTTP with the official client where the Assistants API can
write the content, and with the store (the same session, as an agent framework
writing through agentkeep's Python API would) where it cannot (refusals, tool
messages, a long history); the scripted upstream keeps each request it was sent.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from live import Tenant
from upstream_llm import Reply, UpstreamLLM

pytestmark = pytest.mark.slow


def _model() -> str:
    return f"prompt-{secrets.token_hex(4)}"


def _run(tenant: Tenant, thread_id: str, model: str, **options: Any) -> None:
    client = tenant.client()
    assistant = client.beta.assistants.create(model=model, instructions="Be brief.")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant.id, poll_interval_ms=50, **options
    )
    assert run.status == "completed", run.last_error


def test_images_refusals_and_what_the_chat_api_cannot_take(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    store = tenant.service.store.tenant(tenant.id)
    model = _model()
    cat = "https://example.com/cat.png"
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content=[
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": cat, "detail": "low"}},
        ],
    )
    # Nothing in it the chat API can take (a file id): left out, not sent empty.
    client.beta.threads.messages.create(
        thread.id, role="user", content=[{"type": "image_file", "image_file": {"file_id": "f-1"}}]
    )
    # An image in an assistant's message: the chat API takes images from users only.
    client.beta.threads.messages.create(
        thread.id,
        role="assistant",
        content=[{"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}}],
    )
    store.messages.append(thread.id, "assistant", [{"type": "refusal", "refusal": "I can't."}])
    store.messages.append(thread.id, "tool", "an output outside any run")  # no call to answer
    client.beta.threads.messages.create(thread.id, role="user", content="Then describe it.")
    upstream_llm.script(model, Reply(text='{"animal": "cat"}'))

    _run(tenant, thread.id, model, response_format={"type": "json_object"})

    [request] = upstream_llm.requests_for(model)
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": cat}},
            ],
        },
        {"role": "assistant", "content": "I can't."},
        {"role": "user", "content": "Then describe it."},
    ]
    assert request["response_format"] == {"type": "json_object"}


def test_a_history_longer_than_a_page_is_sent_whole_and_in_order(
    tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    store = tenant.service.store.tenant(tenant.id)
    model = _model()
    thread = client.beta.threads.create()
    count = 1205  # the prompt reads the thread 1000 messages at a time
    store.messages.append_many(
        thread.id,
        [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
            for i in range(count)
        ],
    )
    upstream_llm.script(model, Reply(text="done"))
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }

    _run(tenant, thread.id, model, response_format=schema)

    [request] = upstream_llm.requests_for(model)
    sent = request["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for m in sent[1:]] == [f"turn {i}" for i in range(count)]
    assert [m["role"] for m in sent[1:3]] == ["user", "assistant"]
    assert request["response_format"] == schema
