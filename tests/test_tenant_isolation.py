"""A tenant's store never reads, changes or deletes another tenant's objects (every backend).

Each call by the other tenant raises ``NotFound`` (or sees nothing), and afterwards
the owner's objects are exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentkeep import NotFound, Store


def _owned(store: Store) -> dict[str, Any]:
    agent = store.agents.create(model="m", name="mine", instructions="secret")
    session = store.sessions.create(agent_id=agent.id, title="mine", metadata={"k": "v"})
    message = store.messages.append(session.id, "user", "secret")
    store.messages.append(session.id, "assistant", "reply")
    return {"agent": agent, "session": session, "message": message}


def _snapshot(store: Store, ids: dict[str, Any]) -> tuple[Any, ...]:
    session_id = ids["session"].id
    return (
        store.agents.get(ids["agent"].id),
        store.sessions.get(session_id),
        list(store.messages.list(session_id).items),
        store.sessions.list().items,
    )


def test_another_tenant_cannot_touch_sessions_messages_or_agents(store: Store) -> None:
    ids = _owned(store)
    before = _snapshot(store, ids)
    other = store.tenant(store.tenant_id + "_intruder")
    agent_id, session_id, message_id = ids["agent"].id, ids["session"].id, ids["message"].id
    calls: dict[str, Callable[[], object]] = {
        "sessions.get": lambda: other.sessions.get(session_id),
        "sessions.update": lambda: other.sessions.update(session_id, title="stolen"),
        "sessions.delete": lambda: other.sessions.delete(session_id),
        "sessions.fork": lambda: other.sessions.fork(session_id),
        "sessions.fork at_seq": lambda: other.sessions.fork(session_id, at_seq=1),
        "messages.get": lambda: other.messages.get(message_id),
        "messages.get in session": lambda: other.messages.get(message_id, session_id=session_id),
        "messages.update": lambda: other.messages.update(message_id, metadata={"x": "y"}),
        "messages.update content": lambda: other.messages.update(message_id, content="stolen"),
        "messages.delete": lambda: other.messages.delete(message_id),
        "messages.list": lambda: other.messages.list(session_id),
        "messages.append": lambda: other.messages.append(session_id, "user", "in"),
        "messages.recent": lambda: other.messages.recent(session_id),
        "agents.get": lambda: other.agents.get(agent_id),
        "agents.update": lambda: other.agents.update(agent_id, name="stolen"),
        "agents.delete": lambda: other.agents.delete(agent_id),
    }
    for name, call in calls.items():
        with pytest.raises(NotFound):
            call()
            pytest.fail(f"{name} reached another tenant's object")
    # Listings across the store see nothing of the owner's.
    assert other.sessions.list().items == []
    assert other.agents.list().items == []
    assert other.messages.list().items == []
    # And nothing of the owner's changed.
    assert _snapshot(store, ids) == before
