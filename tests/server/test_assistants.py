"""Assistants over HTTP with the official client: CRUD, modify semantics, pagination."""

from __future__ import annotations

import threading

import openai
import pytest
from live import Tenant

pytestmark = pytest.mark.slow


def test_create_retrieve_modify_delete(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    created = client.beta.assistants.create(
        model="gpt-4o",
        name="Math Tutor",
        instructions="You are a tutor.",
        tools=tools,  # type: ignore[arg-type]
        metadata={"team": "a"},
        temperature=0.3,
        response_format={"type": "json_object"},
    )
    assert created.id.startswith("asst_")
    assert created.object == "assistant"
    assert created.model == "gpt-4o"
    assert created.name == "Math Tutor"
    assert created.description is None
    assert created.instructions == "You are a tutor."
    assert created.tools[0].type == "function"
    assert created.metadata == {"team": "a"}
    assert created.temperature == 0.3
    assert created.top_p == 1.0
    assert isinstance(created.created_at, int)

    fetched = client.beta.assistants.retrieve(created.id)
    assert fetched.model_dump() == created.model_dump()

    modified = client.beta.assistants.update(
        created.id, name="Renamed", metadata={"team": "b"}, top_p=0.5
    )
    assert modified.name == "Renamed"
    assert modified.metadata == {"team": "b"}
    assert modified.top_p == 0.5
    assert modified.temperature == 0.3  # untouched fields stay
    assert modified.instructions == "You are a tutor."
    assert len(modified.tools) == 1

    cleared = client.beta.assistants.update(created.id, tools=[], description="d")
    assert cleared.tools == []
    assert cleared.description == "d"

    deleted = client.beta.assistants.delete(created.id)
    assert deleted.id == created.id
    assert deleted.deleted is True
    assert deleted.object == "assistant.deleted"
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.delete(created.id)


def test_list_pagination(client: openai.OpenAI) -> None:
    ids = [client.beta.assistants.create(model="m", name=f"a{i}").id for i in range(7)]

    page = client.beta.assistants.list(limit=3)
    assert [a.id for a in page.data] == ids[::-1][:3]  # newest first by default
    assert page.has_more is True
    assert page.first_id == ids[6] and page.last_id == ids[4]

    # the client follows ``after`` by itself
    assert [a.id for a in client.beta.assistants.list(limit=2)] == ids[::-1]
    assert [a.id for a in client.beta.assistants.list(limit=3, order="asc")] == ids

    after = client.beta.assistants.list(limit=3, order="asc", after=ids[2])
    assert [a.id for a in after.data] == ids[3:6]
    before = client.beta.assistants.list(limit=2, order="asc", before=ids[5])
    assert [a.id for a in before.data] == ids[3:5]
    last = client.beta.assistants.list(limit=100, order="asc", after=ids[5])
    assert [a.id for a in last.data] == ids[6:]
    assert last.has_more is False


def test_modify_unknown_assistant_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.beta.assistants.update("asst_missing", name="x")
    assert info.value.body["message"] == "No assistant found with id 'asst_missing'."  # type: ignore[index]


def test_concurrent_modifies_all_succeed(tenant: Tenant) -> None:
    assistant = tenant.client().beta.assistants.create(model="m", temperature=0.1)
    failures: list[BaseException] = []

    def modify(n: int) -> None:
        client = tenant.client()
        try:
            for i in range(5):
                client.beta.assistants.update(
                    assistant.id, top_p=(n * 5 + i) / 100, metadata={"writer": str(n)}
                )
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=modify, args=(n,)) for n in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not failures, failures
    final = tenant.client().beta.assistants.retrieve(assistant.id)
    assert final.temperature == 0.1  # no writer lost a field it did not touch
    assert final.metadata is not None and final.metadata["writer"] in {str(n) for n in range(8)}
