"""Strict input, as OpenAI validates it: no string→bool/number coercion; tools, tool resources,
attachments, response formats, truncation and tool choice checked against OpenAI's schemas.

Each bad body is a 400 naming the field, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

import pytest
from live import Tenant

FN = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

BAD_ASSISTANTS: list[tuple[dict[str, Any], str]] = [
    ({"model": "m", "temperature": "1"}, "temperature"),
    ({"model": "m", "top_p": "0.5"}, "top_p"),
    ({"model": "m", "tools": [{"type": "no_such_tool"}]}, "tools[0].type"),
    ({"model": "m", "tools": [{"type": "function"}]}, "tools[0].function"),
    ({"model": "m", "tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"model": "m", "tools": [{"type": "file_search", "file_search": {"max_num_results": 99}}]}, "tools[0].file_search.max_num_results"),
    ({"model": "m", "tools": [{"type": "function", "function": {"name": "f", "strict": "true"}}]}, "tools[0].function.strict"),
    ({"model": "m", "tools": [FN] * 129}, "tools"),
    ({"model": "m", "tool_resources": {"code_interpreter": {"file_ids": "f"}}}, "tool_resources.code_interpreter.file_ids"),
    ({"model": "m", "tool_resources": {"file_search": {"vector_store_ids": ["a", "b"]}}}, "tool_resources.file_search.vector_store_ids"),
    ({"model": "m", "response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"model": "m", "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "response_format.json_schema.name"),
    ({"model": "m", "response_format": "yaml"}, "response_format"),
    ({"model": "m", "response_format": {"type": "xml"}}, "response_format.type"),
    ({"model": "m", "reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"model": "m", "metadata": {"k": 1}}, "metadata.k"),
]  # fmt: skip


def _error(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return dict(response.json()["error"])


@pytest.mark.parametrize(("body", "param"), BAD_ASSISTANTS, ids=[p for _, p in BAD_ASSISTANTS])
def test_bad_assistant_bodies_are_400_naming_the_field(
    tenant: Tenant, body: dict[str, Any], param: str
) -> None:
    http = tenant.http()
    error = _error(http.post("/v1/assistants", json=body))
    assert error["param"] == param
    assert param in error["message"]
    assert http.get("/v1/assistants").json()["data"] == []  # nothing stored


def test_good_bodies_are_kept_as_sent(tenant: Tenant) -> None:
    http = tenant.http()
    body = {
        "model": "m",
        "temperature": 1,  # an integer is a number
        "tools": [FN, {"type": "code_interpreter"}, {"type": "file_search"}],
        "tool_resources": {"code_interpreter": {"file_ids": ["file_1"]}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {}}},
        "reasoning_effort": "low",
    }
    created = http.post("/v1/assistants", json=body)
    assert created.status_code == 200, created.text
    data = created.json()
    assert data["tools"] == body["tools"] and data["response_format"] == body["response_format"]
    assert data["temperature"] == 1


def test_threads_messages_and_runs_are_strict(tenant: Tenant) -> None:
    http = tenant.http()
    assistant = http.post("/v1/assistants", json={"model": "m"}).json()
    thread = http.post("/v1/threads", json={}).json()
    attachment = {"file_id": "f", "tools": [{"type": "function"}]}
    cases: list[tuple[str, dict[str, Any], str]] = [
        (f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "hi", "attachments": [attachment]}, "attachments[0].tools[0].type"),
        ("/v1/threads", {"tool_resources": {"file_search": {"vector_store_ids": "vs"}}}, "tool_resources.file_search.vector_store_ids"),
        ("/v1/threads", {"messages": [{"role": "user", "content": "hi", "attachments": [{"file_id": 7}]}]}, "messages[0].attachments[0].file_id"),
        (f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"], "stream": "yes"}, "stream"),
        (f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"], "max_prompt_tokens": "1000"}, "max_prompt_tokens"),
        (f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"], "parallel_tool_calls": "false"}, "parallel_tool_calls"),
        (f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"], "truncation_strategy": {"type": "middle"}}, "truncation_strategy.type"),
        (f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"], "truncation_strategy": {"type": "last_messages", "last_messages": 0}}, "truncation_strategy.last_messages"),
        (f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"], "tool_choice": "sometimes"}, "tool_choice"),
        (f"/v1/threads/{thread['id']}/runs", {"assistant_id": assistant["id"], "tools": [{"type": "browser"}]}, "tools[0].type"),
        ("/v1/threads/runs", {"assistant_id": assistant["id"], "stream": "true"}, "stream"),
    ]  # fmt: skip
    for path, body, param in cases:
        error = _error(http.post(path, json=body))
        assert error["param"] == param, (path, body, error)
    assert http.get(f"/v1/threads/{thread['id']}/messages").json()["data"] == []
    assert http.get(f"/v1/threads/{thread['id']}/runs").json()["data"] == []
