"""A tenant never sees another tenant's objects: 404 on every route, absent from lists."""

from __future__ import annotations

import openai
import pytest
from live import LiveService

pytestmark = pytest.mark.slow


def test_tenant_isolation(service: LiveService) -> None:
    a_tenant, b_tenant = service.new_tenant(), service.new_tenant()
    a, b = a_tenant.client(), b_tenant.client()

    assistant = a.beta.assistants.create(model="m", name="mine")
    thread = a.beta.threads.create(messages=[{"role": "user", "content": "secret"}])
    message = a.beta.threads.messages.list(thread.id).data[0]
    conversation = a.conversations.create(items=[{"role": "user", "content": "secret"}])
    item = a.conversations.items.list(conversation.id).data[0]

    calls = [
        lambda: b.beta.assistants.retrieve(assistant.id),
        lambda: b.beta.assistants.update(assistant.id, name="stolen"),
        lambda: b.beta.assistants.delete(assistant.id),
        lambda: b.beta.threads.retrieve(thread.id),
        lambda: b.beta.threads.update(thread.id, metadata={"x": "y"}),
        lambda: b.beta.threads.delete(thread.id),
        lambda: b.beta.threads.messages.list(thread.id),
        lambda: b.beta.threads.messages.create(thread.id, role="user", content="x"),
        lambda: b.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        lambda: b.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={}),
        lambda: b.beta.threads.messages.delete(message.id, thread_id=thread.id),
        lambda: b.conversations.retrieve(conversation.id),
        lambda: b.conversations.update(conversation.id, metadata={"x": "y"}),
        lambda: b.conversations.delete(conversation.id),
        lambda: b.conversations.items.list(conversation.id),
        lambda: b.conversations.items.create(
            conversation.id, items=[{"role": "user", "content": "x"}]
        ),
        lambda: b.conversations.items.retrieve(item.id, conversation_id=conversation.id),  # type: ignore[union-attr]
        lambda: b.conversations.items.delete(item.id, conversation_id=conversation.id),  # type: ignore[union-attr]
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()
    assert b.beta.assistants.list().data == []

    # nothing of A's changed
    assert a.beta.assistants.retrieve(assistant.id).name == "mine"
    assert a.beta.threads.retrieve(thread.id).metadata == {}
    assert [m.id for m in a.beta.threads.messages.list(thread.id)] == [message.id]
    assert [i.id for i in a.conversations.items.list(conversation.id)] == [item.id]  # type: ignore[union-attr]
    assert [x.id for x in a.beta.assistants.list()] == [assistant.id]
