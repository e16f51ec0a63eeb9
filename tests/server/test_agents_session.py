"""``agents.memory.OpenAIConversationsSession`` (openai-agents) against the service."""

from __future__ import annotations

import pytest
from agents.memory import OpenAIConversationsSession
from live import Tenant

pytestmark = pytest.mark.slow


async def test_openai_conversations_session(tenant: Tenant) -> None:
    client = tenant.async_client()
    session = OpenAIConversationsSession(openai_client=client)
    assert await session.get_items() == []  # creates the conversation lazily
    conversation_id = session.session_id
    assert conversation_id.startswith("conv_")

    await session.add_items(
        [
            {"role": "user", "content": "What's the weather in Oslo?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "3 degrees"},
            {"role": "assistant", "content": "It is 3 degrees in Oslo."},
        ]
    )
    items = await session.get_items()
    assert [i.get("type") for i in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert items[0]["content"][0]["text"] == "What's the weather in Oslo?"  # type: ignore[index,typeddict-item]
    assert items[1]["name"] == "get_weather"  # type: ignore[typeddict-item]

    latest = await session.get_items(limit=2)
    assert [i.get("type") for i in latest] == ["function_call_output", "message"]

    popped = await session.pop_item()
    assert popped is not None
    assert popped["content"][0]["text"] == "It is 3 degrees in Oslo."  # type: ignore[index,typeddict-item]
    assert len(await session.get_items()) == 3

    # more than 20 items go in several requests, in order
    await session.add_items([{"role": "user", "content": f"m{i}"} for i in range(45)])
    items = await session.get_items()
    assert len(items) == 48
    assert [i["content"][0]["text"] for i in items[3:]] == [f"m{i}" for i in range(45)]  # type: ignore[index,typeddict-item]

    # a second session object on the same conversation sees the same history
    other = OpenAIConversationsSession(conversation_id=conversation_id, openai_client=client)
    assert len(await other.get_items()) == 48

    await session.clear_session()
    http = tenant.http()
    assert http.get(f"/v1/conversations/{conversation_id}").status_code == 404
    await client.close()
