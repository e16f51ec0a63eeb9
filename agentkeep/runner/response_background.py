"""Background responses in the run worker: claimed from the queue, run, stored as they go.

``POST /v1/responses`` with ``background: true`` stores the response
``queued`` with its input items and its first two events
(``response.created``, ``response.queued``) and wakes the worker. The run
worker claims it (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any process
may), rebuilds its upstream request from the stored rows and runs it as a
:class:`ResponseRun` that stores every event: readers poll ``GET`` or
follow ``GET ?stream=true``. A cancel (``status: cancelled``) is noticed
within half a second and the upstream call dropped. Responses left
``in_progress`` by a worker that died are failed by the worker's sweep.

A response ended outside its run (cancelled, failed by a sweep) gets its
last stream event from :func:`end_events`, stored with its new status.
OpenAI's stream has no ``response.cancelled`` event: a cancelled response's
stream ends with ``response.incomplete`` (it ended unfinished) whose
``response`` says ``status: cancelled``.
"""

from __future__ import annotations

import logging

from agentkeep.errors import NotFound
from agentkeep.models.responses import StoredResponse
from agentkeep.runner import notify
from agentkeep.runner.response_run import Db, ResponseRun, ResponseWrites, internal_error
from agentkeep.runner.responses import aprepare_stored
from agentkeep.runner.upstream import ChatClient
from agentkeep.store import Store
from agentkeep.wire.responses import end_events

__all__ = ["run_background"]

log = logging.getLogger("agentkeep.runner")

ANNOUNCED = 2  # response.created and response.queued, stored with the queued response


async def run_background(
    root: Store,
    client: ChatClient | None,
    db: Db,
    response: StoredResponse,
    writes: ResponseWrites | None = None,
    *,
    stopped: str,
) -> None:
    """Run one claimed background response to its end (failing it on an internal error).

    Its task is cancelled only when the worker stops: the response then ends
    ``failed`` with ``stopped`` as its error (and its usage row's), the reason
    the worker gives the runs and responses it leaves.
    """
    store = root.tenant(response.tenant_id)
    try:
        if client is None:
            await _fail(db, store, response.id, "no upstream LLM is configured")
            return
        prepared = await aprepare_stored(store, response)
        run = ResponseRun(
            store,
            client,
            prepared,
            db,
            persist=True,
            announced=ANNOUNCED,
            writes=writes,
            abandoned=stopped,
        )
        async for _event in run.events():
            pass
    except NotFound as exc:  # deleted meanwhile
        log.info("response %s: %s; dropped", response.id, exc)
    except Exception as exc:
        log.exception("response %s failed in the worker", response.id)
        try:
            await _fail(db, store, response.id, internal_error(exc))
        except NotFound:  # deleted meanwhile: nothing to fail
            log.info("response %s: deleted before it could be failed", response.id)
    finally:
        notify.notify()


async def _fail(db: Db, store: Store, response_id: str, message: str) -> None:
    """End the response failed, its stream's last event stored with it."""
    error = {"code": "server_error", "message": message}
    await db(
        store.responses.finish, response_id, status="failed", error=error, end_events=end_events
    )
