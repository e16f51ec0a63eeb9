"""Helpers of the lifecycle tests: a populated tenant, empty databases, export lines."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentkeep import Store
from agentkeep.lifecycle import ExportFilter, export
from agentkeep.store.checkpoints import Blob, ChannelBlob

__all__ = ["empty_url", "entity_lines", "populate"]


def populate(
    store: Store, *, user: str = "alice", secret: str = "the secret plan"
) -> dict[str, Any]:
    """One of everything, for ``user``: agent, session, messages, run, step, event, tool call,
    usage, snapshot (with a kept message), state, checkpoint, graph store item, history window,
    recovered file, media."""
    agent = store.agents.create(model="gpt-4o-mini", name="helper")
    session = store.sessions.create(agent_id=agent.id, user_id=user, title=f"{user}'s chat")
    said = store.messages.append(session.id, "user", f"{user} says: {secret}")
    store.messages.append(session.id, "assistant", "noted")
    run = store.runs.create(agent.id, session_id=session.id, objective=secret)
    store.run_steps.create(run.id, "message_creation", details={"text": secret})
    store.events.append("custom", run_id=run.id, session_id=session.id, data={"delta": secret})
    store.tool_calls.create("search", {"q": secret}, run_id=run.id)
    store.usage.record(
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=12,
        output_tokens=3,
        prompt=secret,
        response="ok",
        session_id=session.id,
        run_id=run.id,
        user_id=user,
    )
    store.snapshots.create(session.id, label="start")
    # Edited after the snapshot: the snapshot keeps the secret in snapshot_messages.
    store.messages.update(said.id, content=f"{user} says: never mind")
    store.state.put(f"user:{user}", "prefs", {"note": secret})
    store.graph_items.put(("memories", user), "profile", {"note": secret})  # LangGraph's store
    store.checkpoints.put(  # binary columns: bytes that are not UTF-8 round-trip too
        session.id,
        "",
        f"ckpt_{session.id}",
        checkpoint=Blob("msgpack", b"\x00\xff" + secret.encode()),
        metadata=Blob("json", b"{}"),
        channel_versions={"messages": "1"},
        blobs=[ChannelBlob("messages", "1", Blob("bytes", b"\x80" + secret.encode()))],
        run_id=run.id,
    )
    now = datetime.now(UTC)
    store.history.save_window(  # KODE's records of the session, and a media file's bytes
        session.id,
        {
            "id": "win-1",
            "messages": [{"role": "user", "content": secret}],
            "events": [],
            "stats": {"message_count": 1, "token_count": 5, "event_count": 0},
            "timestamp": now,
        },
    )
    store.history.save_recovered_file(
        session.id, {"path": "notes.md", "content": secret, "mtime": now, "timestamp": now}
    )
    store.media.put(
        session.id,
        {
            "key": "img-1",
            "provider": "openai",
            "mime_type": "image/png",
            "data": b"\x89PNG\x00" + secret.encode(),
        },
    )
    return {"agent": agent, "session": session, "run": run}


def entity_lines(store: Store, flt: ExportFilter | None = None) -> list[str]:
    """The entity lines (no header) of an export of ``store``'s tenant."""
    buffer = io.StringIO()
    export(store, buffer, flt or ExportFilter(tenant=store.tenant_id))
    return buffer.getvalue().splitlines()[1:]


def empty_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "empty"
) -> str:
    """A URL of an empty database of ``backend`` (a new PostgreSQL database, a new file)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/{name}.db"
    return str(request.getfixturevalue("postgres_server").new_database())
