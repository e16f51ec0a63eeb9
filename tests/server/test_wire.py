"""Stored objects to OpenAI wire shapes and back, without a service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentkeep.errors import InvalidInput
from agentkeep.models import Message
from agentkeep.wire.objects import item_input, item_object, message_object, thread_message_content

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def message(role: str, content: list[dict[str, Any]], **extra: Any) -> Message:
    return Message(
        id="msg_1",
        tenant_id="t",
        session_id="thread_1",
        seq=1,
        role=role,  # type: ignore[arg-type]
        content=content,
        run_id=None,
        agent_id=None,
        idempotency_key=None,
        metadata={},
        extra=extra,
        created_at=NOW,
    )


def test_message_object_maps_every_text_block_to_a_text_part() -> None:
    wire = message_object(
        message(
            "assistant",
            [
                {"type": "text", "text": "a"},
                {"type": "output_text", "text": "b", "annotations": [{"x": 1}]},
                {"type": "refusal", "refusal": "no"},
                {"type": "input_image", "image_url": "https://x/y.png"},
                {"type": "function_call", "name": "f"},
            ],
            status="in_progress",
        )
    )
    assert wire["created_at"] == int(NOW.timestamp())
    assert wire["status"] == "in_progress"
    assert wire["content"] == [
        {"type": "text", "text": {"value": "a", "annotations": []}},
        {"type": "text", "text": {"value": "b", "annotations": []}},
        {"type": "refusal", "refusal": "no"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]


def test_item_object_for_messages_and_calls() -> None:
    assistant = item_object(
        message("assistant", [{"type": "text", "text": "hi"}], phase="final_answer")
    )
    assert assistant["content"] == [
        {"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}
    ]
    assert assistant["phase"] == "final_answer"
    user = item_object(message("user", [{"type": "text", "text": "q"}]))
    assert user["content"] == [{"type": "input_text", "text": "q"}]
    call = item_object(
        message(
            "assistant", [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]
        )
    )
    assert call == {
        "id": "msg_1",
        "type": "function_call",
        "call_id": "c",
        "name": "f",
        "arguments": "{}",
        "status": "completed",
    }


def test_item_input_round_trips_through_item_object() -> None:
    for item in (
        {
            "type": "function_call",
            "call_id": "c",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "c", "output": "3"},
        {"type": "reasoning", "summary": []},
    ):
        row = item_input({**item, "id": "fc_client"}, "items[0]")
        stored = message(row["role"], row["content"])
        assert item_object(stored) == {"status": "completed", **item, "id": "msg_1"}


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ("x", "items[0]"),
        ({"role": "robot", "content": "x"}, "items[0].role"),
        ({"role": "user", "content": 1}, "items[0].content"),
        ({"role": "user", "content": "x", "status": "done"}, "items[0].status"),
        ({"type": "file_search_call"}, "items[0].type"),
        ({"type": "function_call", "call_id": "c", "name": "f"}, "items[0].arguments"),
        (
            {"type": "function_call", "call_id": "c" * 65, "name": "f", "arguments": ""},
            "items[0].call_id",
        ),
    ],
)
def test_item_input_names_the_bad_field(item: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        item_input(item, "items[0]")
    assert info.value.field == field


def test_thread_message_content() -> None:
    assert thread_message_content("hi") == [{"type": "text", "text": "hi"}]
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_file", "image_file": {"file_id": "file_1"}},
    ]
    assert thread_message_content(parts) == parts
    for bad, field in (
        ([], "content"),
        ([{"type": "text"}], "content[0].text"),
        ([{"type": "image_url", "image_url": {}}], "content[0].image_url"),
        ([{"type": "audio"}], "content[0].type"),
    ):
        with pytest.raises(InvalidInput) as info:
            thread_message_content(bad)
        assert info.value.field == field
