"""Conversations and their items over HTTP with the official client."""

from __future__ import annotations

import openai
import pytest
from live import Tenant

pytestmark = pytest.mark.slow


def test_conversation_crud_with_initial_items(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        metadata={"topic": "demo"},
        items=[
            {"type": "message", "role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there"},  # no type: a message
        ],
    )
    assert conversation.id.startswith("conv_")
    assert conversation.object == "conversation"
    assert conversation.metadata == {"topic": "demo"}
    assert isinstance(conversation.created_at, int)

    items = client.conversations.items.list(conversation.id, order="asc")
    assert [i.type for i in items.data] == ["message", "message"]
    user, assistant = items.data
    assert user.role == "user"  # type: ignore[union-attr]
    assert user.content[0].type == "input_text"  # type: ignore[union-attr]
    assert user.content[0].text == "Hello"  # type: ignore[union-attr]
    assert assistant.content[0].type == "output_text"  # type: ignore[union-attr]
    assert assistant.status == "completed"  # type: ignore[union-attr]

    fetched = client.conversations.retrieve(conversation.id)
    assert fetched.model_dump() == conversation.model_dump()
    updated = client.conversations.update(conversation.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"}

    deleted = client.conversations.delete(conversation.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        conversation.id,
        True,
        "conversation.deleted",
    )
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conversation.id)


def test_item_types_round_trip(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    created = client.conversations.items.create(
        conversation.id,
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Weather in Oslo?"}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 3}'},
            {"role": "developer", "content": "Be brief."},
        ],
    )
    assert created.object == "list"
    assert [i.type for i in created.data] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    call = created.data[1]
    assert call.call_id == "call_1"  # type: ignore[union-attr]
    assert call.name == "get_weather"  # type: ignore[union-attr]
    assert call.arguments == '{"city": "Oslo"}'  # type: ignore[union-attr]
    assert call.status == "completed"  # type: ignore[union-attr]
    output = created.data[2]
    assert output.output == '{"temp": 3}'  # type: ignore[union-attr]
    assert created.first_id == created.data[0].id  # type: ignore[union-attr]
    assert created.last_id == created.data[3].id  # type: ignore[union-attr]

    for item in created.data:
        got = client.conversations.items.retrieve(item.id, conversation_id=conversation.id)  # type: ignore[union-attr]
        assert got.model_dump() == item.model_dump()


def test_items_list_newest_first_and_pagination(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    ids = []
    for i in range(5):
        page = client.conversations.items.create(
            conversation.id,
            items=[
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ],
        )
        ids += [item.id for item in page.data]  # type: ignore[union-attr]

    newest = client.conversations.items.list(conversation.id, limit=3)
    assert [i.id for i in newest.data] == ids[::-1][:3]  # type: ignore[union-attr]
    assert newest.has_more is True
    assert [i.id for i in client.conversations.items.list(conversation.id, limit=4)] == ids[::-1]  # type: ignore[union-attr]
    assert [
        i.id  # type: ignore[union-attr]
        for i in client.conversations.items.list(conversation.id, limit=4, order="asc")
    ] == ids
    after = client.conversations.items.list(conversation.id, order="asc", after=ids[4], limit=2)
    assert [i.id for i in after.data] == ids[5:7]  # type: ignore[union-attr]


def test_delete_item_returns_the_conversation(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        items=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    )
    first, second = client.conversations.items.list(conversation.id, order="asc").data
    result = client.conversations.items.delete(first.id, conversation_id=conversation.id)  # type: ignore[union-attr]
    assert result.id == conversation.id and result.object == "conversation"
    remaining = client.conversations.items.list(conversation.id).data
    assert [i.id for i in remaining] == [second.id]  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(first.id, conversation_id=conversation.id)  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(first.id, conversation_id=conversation.id)  # type: ignore[union-attr]


def test_item_of_another_conversation_is_404(client: openai.OpenAI) -> None:
    a = client.conversations.create(items=[{"role": "user", "content": "x"}])
    b = client.conversations.create()
    item = client.conversations.items.list(a.id).data[0]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(item.id, conversation_id=b.id)  # type: ignore[union-attr]
    thread = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(thread.id)


def test_invalid_items(tenant: Tenant) -> None:
    http = tenant.http()
    conversation = http.post("/v1/conversations", json={}).json()
    url = f"/v1/conversations/{conversation['id']}/items"
    cases = [
        ({}, "items"),
        ({"items": "x"}, "items"),
        ({"items": [1]}, "items[0]"),
        ({"items": [{"role": "robot", "content": "x"}]}, "items[0].role"),
        ({"items": [{"role": "user", "content": 3}]}, "items[0].content"),
        ({"items": [{"role": "user", "content": [{"type": "nope"}]}]}, "items[0].content[0].type"),
        ({"items": [{"role": "user", "content": ["x"]}]}, "items[0].content[0]"),
        (
            {"items": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "items[0].content[0].text",
        ),
        (
            {
                "items": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "file_id": "f", "detail": []}],
                    }
                ]
            },
            "items[0].content[0].detail",
        ),
        (
            {"items": [{"role": "user", "content": [{"type": "input_image", "detail": "low"}]}]},
            "items[0].content[0]",
        ),
        (
            {"items": [{"role": "user", "content": [{"type": "input_text", "text": "x", "": {}}]}]},
            "items[0].content[0].",
        ),
        (
            {
                "items": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "x", "prompt_cache_breakpoint": None}
                        ],
                    }
                ]
            },
            "items[0].content[0].prompt_cache_breakpoint",
        ),
        ({"items": [{"type": "web_search_call"}]}, "items[0].type"),
        (
            {"items": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "items[0].call_id",
        ),
        ({"items": [{"type": "function_call_output", "call_id": "c"}]}, "items[0].output"),
        ({"items": [{"role": "user", "content": "x"}] * 21}, "items"),
    ]
    for body, param in cases:
        response = http.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["param"] == param, (body, response.json())
    assert http.get(url).json()["data"] == []
    response = http.post("/v1/conversations", json={"items": [{"role": "x", "content": "y"}]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "items[0].role"


def test_image_and_file_parts_are_kept_as_the_document_shapes_them(
    client: openai.OpenAI,
) -> None:
    conversation = client.conversations.create()
    image = "data:image/png;base64,iVBORw0KGgo="
    client.conversations.items.create(
        conversation.id,
        items=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": image},  # type: ignore[typeddict-item]
                    {"type": "input_file", "file_id": "file_1", "filename": "a.pdf"},
                ],
            }
        ],
    )
    [item] = client.conversations.items.list(conversation.id).data
    parts = [p.model_dump(exclude_none=True) for p in item.content]  # type: ignore[union-attr]
    assert parts == [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": image, "detail": "auto"},
        {"type": "input_file", "file_id": "file_1", "filename": "a.pdf"},
    ]


def test_idempotency_key_makes_a_retried_items_create_safe(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    items = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    headers = {"Idempotency-Key": "batch-1"}
    first = client.conversations.items.create(
        conversation.id,
        items=items,  # type: ignore[arg-type]
        extra_headers=headers,
    )
    again = client.conversations.items.create(
        conversation.id,
        items=items,  # type: ignore[arg-type]
        extra_headers=headers,
    )
    assert [i.id for i in again.data] == [i.id for i in first.data]  # type: ignore[union-attr]
    assert len(client.conversations.items.list(conversation.id).data) == 2
