"""Which run workers are alive: heartbeats in state documents, and reaping the dead.

Every worker writes ``{host, pid, beat}`` under tenant ``_agentkeep``,
namespace ``runner.workers``, key = its worker id, before it claims anything
and then every few seconds. A worker is dead when it stopped (``stopped``),
when its heartbeat is older than ``stale_after`` seconds, or — at once, on the
same host — when its process is gone or its pid is ours under another id (a
restart). Reaping a dead worker fails its runs left ``in_progress`` or
``cancelling`` (``last_error.code`` ``server_error``), closes their open steps
and messages, and announces ``thread.run.failed`` so streams end; it happens
once per worker (the document is then marked ``reaped``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any

from agentkeep.errors import NotFound
from agentkeep.models import Run, StateDoc
from agentkeep.runner import ops
from agentkeep.store import Store

__all__ = [
    "NAMESPACE",
    "SYSTEM_TENANT",
    "beat",
    "dead_workers",
    "is_alive",
    "reap",
    "worker_alive",
]

log = logging.getLogger("agentkeep.runner")

SYSTEM_TENANT = "_agentkeep"
NAMESPACE = "runner.workers"
PRUNE_AFTER = 86_400.0
HOST = socket.gethostname()[:64]


def _docs(root: Store) -> Any:
    return root.tenant(SYSTEM_TENANT).state


def beat(root: Store, worker_id: str, *, stopped: bool = False) -> None:
    _docs(root).put(
        NAMESPACE,
        worker_id,
        {"host": HOST, "pid": os.getpid(), "beat": time.time(), "stopped": stopped},
    )


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_alive(doc: StateDoc, *, me: str, stale_after: float) -> bool:
    value = doc.value if isinstance(doc.value, dict) else {}
    if doc.key == me:
        return True
    if value.get("stopped") or value.get("reaped"):
        return False
    pid = value.get("pid")
    if (
        value.get("host") == HOST
        and isinstance(pid, int)
        and (pid == os.getpid() or not _pid_running(pid))
    ):
        return False
    beat_at = value.get("beat")
    return isinstance(beat_at, (int, float)) and time.time() - beat_at <= stale_after


def worker_alive(root: Store, worker_id: str | None, *, me: str, stale_after: float) -> bool:
    """Whether ``worker_id`` is alive (unknown workers are not)."""
    if not worker_id:
        return False
    try:
        doc = _docs(root).get(NAMESPACE, worker_id)
    except NotFound:
        return False
    return is_alive(doc, me=me, stale_after=stale_after)


def dead_workers(root: Store, *, me: str, stale_after: float) -> list[str]:
    """Dead workers not reaped yet (and prunes reaped ones older than a day)."""
    state = _docs(root)
    out: list[str] = []
    after: str | None = None
    while True:
        docs = state.list(NAMESPACE, limit=100, after_key=after)
        for doc in docs:
            value = doc.value if isinstance(doc.value, dict) else {}
            if value.get("reaped"):
                if time.time() - float(value.get("beat") or 0) > PRUNE_AFTER:
                    with contextlib.suppress(NotFound):
                        state.delete(NAMESPACE, doc.key)
                continue
            if not is_alive(doc, me=me, stale_after=stale_after):
                out.append(doc.key)
        if len(docs) < 100:
            return out
        after = docs[-1].key


def reap(root: Store, worker_id: str, message: str) -> list[Run]:
    """Fail the interrupted runs of a dead worker and announce them; marks it reaped."""
    runs = root.runs.fail_interrupted(worker_id=worker_id, message=message, all_tenants=True)
    for run in runs:
        try:
            ops.settle_interrupted(root.tenant(run.tenant_id), run)
        except Exception as exc:  # one broken run must not stop recovery of the others
            log.error("could not settle interrupted run %s: %r", run.id, exc)
    state = _docs(root)
    try:
        doc = state.get(NAMESPACE, worker_id)
        value = doc.value if isinstance(doc.value, dict) else {}
        state.put(NAMESPACE, worker_id, {**value, "reaped": True, "beat": time.time()})
    except NotFound:
        pass
    if runs:
        log.warning(
            "failed %d run(s) interrupted on worker %s: %s",
            len(runs),
            worker_id,
            ", ".join(r.id for r in runs),
        )
    return runs
