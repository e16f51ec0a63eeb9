"""curio-agent-sdk 0.6's audit log over the store: ``curio.audit`` events (monitor channel), hash-chained.

Like the SDK's SQLite backend, each audit event carries ``prev_hash`` (the hash
of the previous event of the same run and agent) and ``hash`` (SHA-256 over the
event's fields and ``prev_hash``), so an event changed or removed later breaks
the chain: :func:`chain_ok` checks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from agentkeep.models import Event
from agentkeep.store import Store

__all__ = ["AUDIT_CHANNEL", "AUDIT_TYPE", "audit_events", "chain_ok", "log_audit_event"]

AUDIT_CHANNEL = "monitor"
AUDIT_TYPE = "curio.audit"
_FIELDS = (
    "agent_id",
    "run_id",
    "actor_type",
    "actor_id",
    "action",
    "resource",
    "resource_type",
    "metadata",
    "timestamp",
)
_PAGE = 1000


def _hash(payload: Mapping[str, Any], prev_hash: str | None) -> str:
    data = {**payload, "prev_hash": prev_hash or ""}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _payload(event: Mapping[str, Any]) -> dict[str, Any]:
    when = event.get("timestamp")
    stamp = (when or datetime.now()).isoformat() if not isinstance(when, str) else when
    metadata = json.loads(json.dumps(dict(event.get("metadata") or {}), default=str))
    return {
        "agent_id": event.get("agent_id"),
        "run_id": event.get("run_id"),
        "actor_type": event.get("actor_type") or "agent",
        "actor_id": event.get("actor_id"),
        "action": event.get("action") or "",
        "resource": event.get("resource"),
        "resource_type": event.get("resource_type"),
        "metadata": metadata,
        "timestamp": stamp,
    }


def _stored(store: Store, agent_id: str | None) -> Iterator[Event]:
    after = 0
    while True:
        batch = store.events.list(
            channel=AUDIT_CHANNEL,
            types=AUDIT_TYPE,
            agent_id=agent_id or None,
            after_bookmark=after,
            limit=_PAGE,
        )
        yield from batch
        if len(batch) < _PAGE:
            return
        after = batch[-1].bookmark


def _as_dict(event: Event) -> dict[str, Any]:
    data = dict(event.data)
    return {
        "id": event.bookmark,
        **{name: data.get(name) for name in _FIELDS},
        "prev_hash": data.get("prev_hash"),
        "hash": data.get("hash"),
        "created_at": event.created_at.isoformat(),
    }


def log_audit_event(store: Store, event: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``event`` to the audit log, chained to the last one of its run and agent."""
    payload = _payload(dict(event))
    core = store._core
    with core.write("logging an audit event") as conn:
        # One writer per chain from reading its head to appending after it: two writers
        # that both read the same head would fork the chain. On PostgreSQL an advisory
        # transaction lock on the chain; on SQLite the write transaction is the only writer.
        chain = json.dumps([payload["agent_id"], payload["run_id"]], default=str)
        core.dialect.serialize_appends(conn, store.tenant_id, f"curio.audit {chain}")
        prev_hash = None
        for stored in _stored(store, payload["agent_id"]):
            if stored.data.get("run_id") == payload["run_id"] and (
                stored.data.get("agent_id") == payload["agent_id"]
            ):
                prev_hash = stored.data.get("hash")
        written = store.events.append(
            AUDIT_TYPE,
            channel=AUDIT_CHANNEL,
            agent_id=payload["agent_id"] or None,
            data={**payload, "prev_hash": prev_hash, "hash": _hash(payload, prev_hash)},
        )
    return _as_dict(written)


def audit_events(
    store: Store, run_id: str | None, agent_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Audit events, newest first, optionally of one run and/or agent."""
    out = [
        _as_dict(e)
        for e in _stored(store, agent_id)
        if run_id is None or e.data.get("run_id") == run_id
    ]
    out.reverse()
    return out[: max(limit, 0)]


def chain_ok(events: list[dict[str, Any]]) -> bool:
    """Whether each event's hash matches its fields and its predecessor (oldest first)."""
    last: dict[tuple[Any, Any], str | None] = {}
    for event in events:
        key = (event["run_id"], event["agent_id"])
        payload = {name: event[name] for name in _FIELDS}
        if event["prev_hash"] != last.get(key) or event["hash"] != _hash(payload, last.get(key)):
            return False
        last[key] = event["hash"]
    return True
