"""Acknowledged writes survive ``kill -9`` of the service: there once, in order."""

from __future__ import annotations

import threading
import time

import openai
import pytest
from live import SERVICE_BACKENDS, StartService

pytestmark = pytest.mark.slow

WRITERS = 3


@pytest.mark.parametrize("backend", SERVICE_BACKENDS)
def test_acknowledged_writes_survive_kill_9(start_service: StartService, backend: str) -> None:
    service = start_service(backend)
    client = service.client()
    assistant = client.beta.assistants.create(model="m", name="survivor")
    thread = client.beta.threads.create(metadata={"k": "v"})
    conversation = client.conversations.create(items=[{"role": "user", "content": "first"}])

    acked: list[list[tuple[str, str]]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []
    killed = threading.Event()

    def write(n: int) -> None:
        writer = service.client()
        i = 0
        while True:
            text = f"w{n}-{i}"
            try:
                message = writer.beta.threads.messages.create(thread.id, role="user", content=text)
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                # The service died under us: this one was not acknowledged. An error
                # answered before the kill was sent is the service failing under
                # concurrent writes, and counts.
                if not killed.is_set():
                    errors.append(exc)
                return
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return
            acked[n].append((message.id, text))
            i += 1

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while sum(map(len, acked)) < 60 and time.monotonic() < deadline and not errors:
        time.sleep(0.01)
    killed.set()
    service.kill()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert all(acked), "every writer got acknowledgements before the kill"

    service.start()
    fresh = service.client()
    stored = [
        (m.id, m.content[0].text.value)  # type: ignore[union-attr]
        for m in fresh.beta.threads.messages.list(thread.id, order="asc", limit=100)
    ]
    ids = [ident for ident, _ in stored]
    assert len(ids) == len(set(ids)), "no message is stored twice"
    by_id = dict(stored)
    for writer_acks in acked:
        for ident, text in writer_acks:
            assert by_id.get(ident) == text, f"acknowledged {ident} ({text}) is missing"
        positions = [ids.index(ident) for ident, _ in writer_acks]
        assert positions == sorted(positions), "each writer's messages keep their order"
    unacknowledged = len(ids) - sum(map(len, acked))
    assert 0 <= unacknowledged <= WRITERS  # at most the requests in flight at the kill

    # everything else acknowledged before the kill is there too
    assert fresh.beta.assistants.retrieve(assistant.id).name == "survivor"
    assert fresh.beta.threads.retrieve(thread.id).metadata == {"k": "v"}
    items = fresh.conversations.items.list(conversation.id).data
    assert [i.content[0].text for i in items] == ["first"]  # type: ignore[union-attr]

    # and the restarted service keeps working
    fresh.beta.threads.messages.create(thread.id, role="user", content="after")
    assert fresh.beta.threads.messages.list(thread.id, limit=1).data[0].content[0].text.value == (  # type: ignore[union-attr]
        "after"
    )
