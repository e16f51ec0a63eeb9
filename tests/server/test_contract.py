"""The live service against OpenAI's published document (Assistants v2 + Conversations).

Every operation of ``openai-openapi.subset.yaml`` (a copy of the shared cut,
see ``openai-openapi.SOURCE.md``) gets bounded positive and negative examples
(schemathesis, derandomized: the same cases every run) against a real
``agentkeep serve`` on SQLite and on PostgreSQL (both ``service`` backends;
PostgreSQL fails, never skips, when it is down) with the scripted upstream; paths point at
real objects of the test's own tenant (an assistant, a thread with a message,
a completed run and its step, a conversation with an item). Expected: no 5xx,
no invalid request accepted, no response that breaks the document, apart
from the deviations listed in ``ASSISTANTS``.
"""

from __future__ import annotations

import time

import pytest
from contract import HERE, Contract, Deviation, discriminator_by_type, nullable, run_operation
from live import LiveService

pytestmark = pytest.mark.slow

EXAMPLES = 4
"""Positive and as many negative examples per operation (CI time is bounded)."""

ASSISTANTS = Contract(
    HERE / "openai-openapi.subset.yaml",
    deviations=[
        Deviation(
            "OpenAI answers an empty list with first_id and last_id null; the document says string",
            lambda d: [
                nullable(name, "first_id", "last_id")(d)
                for name in d["components"]["schemas"]
                if (name.startswith("List") or name.endswith("ItemList"))
                and "first_id" in d["components"]["schemas"][name].get("properties", {})
            ],
        ),
        Deviation(
            "ConversationItem's discriminator has no mapping, so the document expects schema "
            "names ('Message'); OpenAI's items say their type ('message')",
            discriminator_by_type("ConversationItem"),
        ),
    ],
)


def _world(service: LiveService) -> tuple[str, dict[str, str]]:
    """A tenant of its own with one object of each kind; its key and the ids for the paths."""
    tenant = service.new_tenant()
    http = tenant.http()
    assistant = http.post("/v1/assistants", json={"model": "contract-model"}).json()
    thread = http.post(
        "/v1/threads", json={"messages": [{"role": "user", "content": "hello"}]}
    ).json()
    message = http.get(f"/v1/threads/{thread['id']}/messages").json()["data"][0]
    run = http.post(
        f"/v1/threads/{thread['id']}/runs", json={"assistant_id": assistant["id"]}
    ).json()
    deadline = time.monotonic() + 30
    while run["status"] in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.05)
        run = http.get(f"/v1/threads/{thread['id']}/runs/{run['id']}").json()
    assert run["status"] == "completed", run
    step = http.get(f"/v1/threads/{thread['id']}/runs/{run['id']}/steps").json()["data"][0]
    conversation = http.post(
        "/v1/conversations", json={"items": [{"role": "user", "content": "hi"}]}
    ).json()
    item = http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"][0]
    return tenant.key, {
        "assistant_id": assistant["id"],
        "thread_id": thread["id"],
        "message_id": message["id"],
        "run_id": run["id"],
        "step_id": step["id"],
        "conversation_id": conversation["id"],
        "item_id": item["id"],
    }


@pytest.mark.parametrize("operation", ASSISTANTS.operations())
def test_operation_keeps_the_contract(service: LiveService, operation: str) -> None:
    key, ids = _world(service)
    failures = run_operation(
        ASSISTANTS,
        operation,
        base_url=service.base_url + ASSISTANTS.base_path,
        key=key,
        path_parameters=ids,
        examples=EXAMPLES,
    )
    assert failures == [], "\n\n".join(failures)


def test_every_operation_is_covered() -> None:
    assert len(ASSISTANTS.operations()) == 31  # SOURCE.md: 17 paths, 31 operations
    for operation in ASSISTANTS.operations():
        assert ASSISTANTS.operation(operation) is not None
