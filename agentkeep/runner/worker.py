"""The run worker: claims queued runs and executes them against the upstream LLM.

One ``RunWorker`` runs in each service process (started and stopped by the
app's lifespan). Its loop claims the oldest queued run of any tenant
(``store.runs.claim_next_any_tenant``: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several processes share the queue), up to ``concurrency`` at
a time, and executes each in a task:

1. ``thread.run.in_progress`` (the claim is already committed);
2. the request is built from the instructions, the thread and the run's own
   steps (:mod:`agentkeep.runner.prompt`) and streamed from the upstream;
3. on the first content delta, a message_creation step and an empty
   assistant message are created (``thread.run.step.created``,
   ``thread.run.step.in_progress``, ``thread.message.created``,
   ``thread.message.in_progress``); deltas are persisted as
   ``thread.message.delta`` events, batched while a write is under way;
4. the call is recorded as one LLM usage row (tokens, latency, cost from
   the price table) and added to the run's counters;
5. the message and step are completed (``thread.message.completed``,
   ``thread.run.step.completed``); then either the model called functions —
   a tool_calls step (``thread.run.step.created``, ``.in_progress``,
   ``.delta``) and ``thread.run.requires_action`` — or the run is
   ``thread.run.completed`` (``incomplete`` when the upstream stopped for
   length).

Every state change is committed together with its event before anything
reads it. A run in ``requires_action`` waits in the database; when its tool
outputs are submitted it goes back to ``queued`` and whichever worker claims
it continues it, with the outputs in its prompt. Cancelling is noticed within half a second while the
upstream streams: the call is dropped and the run, its step and its message
are cancelled. Upstream errors fail the run with ``last_error``
(``server_error`` or ``rate_limit_exceeded``).

Recovery (see :mod:`agentkeep.runner.liveness`): at start-up and every few
seconds the worker fails the runs left ``in_progress``/``cancelling`` by
workers that are gone (crashed or killed), explicitly, with
``last_error.code = "server_error"``; runs are never resumed after a crash,
since the upstream call they were making is lost. Stopping the worker fails
its own unfinished runs the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, ParamSpec, TypeVar

from agentkeep.config import Settings
from agentkeep.errors import NotFound
from agentkeep.models import Message, Run, RunStep
from agentkeep.runner import liveness, notify, ops
from agentkeep.runner.prompt import build_request
from agentkeep.runner.response_background import run_background
from agentkeep.runner.upstream import ChatClient, Completion, UpstreamError
from agentkeep.store import Store
from agentkeep.wire.runs import run_object

__all__ = ["RunWorker"]

log = logging.getLogger("agentkeep.runner")

P = ParamSpec("P")
R = TypeVar("R")

STOPPED_MESSAGE = "the service stopped while the run was in progress; start the run again"
CRASHED_MESSAGE = (
    "the service process running this run stopped before it finished "
    "(crash or kill); the run was failed on recovery, start it again"
)
STOP_WAIT_S = 10.0
MAX_BACKOFF_S = 15.0  # longest pause between attempts while the database is unreachable
NO_UPSTREAM = "no upstream LLM is configured: set AGENTKEEP_LLM_BASE_URL"


class RunWorker:
    """Executes the runs of every tenant of ``store``'s database."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        concurrency: int | None = None,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        stale_after: float = 30.0,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        if concurrency is None:
            concurrency = settings.run_concurrency
        self.concurrency = max(1, concurrency)
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.id = worker_id or f"{liveness.HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        self.client: ChatClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._stopping = False
        self._next_beat = 0.0
        # The worker's own threads for store calls: they never wait behind request
        # threads, and stop() can wait for the calls still running.
        self._executor = ThreadPoolExecutor(
            max_workers=self.concurrency + 4, thread_name_prefix="agentkeep-run"
        )
        self._inflight: set[Future[Any]] = set()

    async def _db(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a (blocking) store call on the worker's threads."""
        future = self._executor.submit(functools.partial(fn, *args, **kwargs))
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        return await asyncio.wrap_future(future)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Register, fail the runs of dead workers, then start claiming."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.settings.llm_base_url:
            self.client = ChatClient(self.settings.llm_base_url, self.settings.llm_api_key)
        await self._db(liveness.beat, self.store, self.id)
        await self._sweep()
        self._next_beat = time.monotonic() + self.heartbeat_interval
        self._task = asyncio.create_task(self._main(), name=f"run-worker {self.id}")
        log.info("run worker %s started", self.id)

    async def stop(self) -> None:
        """Stop claiming, drop the runs in flight (failing them) and deregister."""
        self._stopping = True
        self.wake()
        tasks = list(self._tasks.values())
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Store calls of the cancelled runs may still be running: let them land first.
        pending = list(self._inflight)
        if pending:
            await asyncio.to_thread(wait_futures, pending, timeout=STOP_WAIT_S)
        try:
            await self._db(liveness.reap, self.store, self.id, STOPPED_MESSAGE)
            await self._db(self.store.responses.fail_abandoned, [self.id], STOPPED_MESSAGE)
            notify.notify()
        except Exception as exc:
            log.error("run worker %s could not deregister: %r", self.id, exc)
        if self.client is not None:
            await self.client.aclose()
        self._executor.shutdown(wait=False)
        log.info("run worker %s stopped", self.id)

    def wake(self) -> None:
        """Look for work now (a run was queued); callable from any thread."""
        loop, event = self._loop, self._wake
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)

    # -- the loop -------------------------------------------------------------------------

    async def _main(self) -> None:
        assert self._wake is not None
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                await self._claim()
                if time.monotonic() >= self._next_beat:
                    self._next_beat = time.monotonic() + self.heartbeat_interval
                    await self._db(liveness.beat, self.store, self.id)
                    await self._sweep()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away for a while: keep trying
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    log.error("run worker %s (failure %d): %r", self.id, failures, exc)
            pause = min(self.poll_interval * 2 ** min(failures, 5), MAX_BACKOFF_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _claim(self) -> None:
        while not self._stopping and len(self._tasks) < self.concurrency:
            run = await self._db(self.store.runs.claim_next_any_tenant, self.id)
            if run is None:
                break
            self._spawn(run)
        while not self._stopping and len(self._tasks) < self.concurrency:
            response = await self._db(self.store.responses.claim_next_any_tenant, self.id)
            if response is None:
                return
            self._track(
                (response.tenant_id, response.id),
                run_background(self.store, self.client, self._db, response),
            )

    async def _sweep(self) -> None:
        dead = await self._db(
            liveness.dead_workers, self.store, me=self.id, stale_after=self.stale_after
        )
        for worker_id in dead:
            runs = await self._db(liveness.reap, self.store, worker_id, CRASHED_MESSAGE)
            if runs:
                notify.notify()
        responses = self.store.responses
        if dead:
            failed = await self._db(responses.fail_abandoned, dead, CRASHED_MESSAGE)
            if failed:
                notify.notify()
        await self._db(responses.purge_expired, all_tenants=True)

    def _spawn(self, run: Run) -> None:
        self._track((run.tenant_id, run.id), self._execute(run))

    def _track(self, key: tuple[str, str], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"{key[1]}")
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    # -- one run --------------------------------------------------------------------------

    async def _execute(self, run: Run) -> None:
        store = self.store.tenant(run.tenant_id)
        try:
            if run.status == "cancelling":
                await self._db(ops.fail_run, store, run.id, "server_error", "cancelled")
                return
            await self._db(ops.emit, store, run, ("thread.run.in_progress", run_object(run)))
            notify.notify()
            if self.client is None:
                await self._db(ops.fail_run, store, run.id, "server_error", NO_UPSTREAM)
                return
            body = await self._db(build_request, store, run)
            await self._call(store, run, body, self.client)
        except asyncio.CancelledError:
            raise  # stop(): the run is failed by the reaping of this worker
        except NotFound as exc:  # the run or its thread was deleted meanwhile
            log.info("run %s: %s; dropped", run.id, exc)
        except Exception as exc:
            log.exception("run %s failed in the worker", run.id)
            with contextlib.suppress(Exception):
                await self._db(
                    ops.fail_run, store, run.id, "server_error", f"internal error: {exc!r}"
                )
        finally:
            notify.notify()

    async def _call(self, store: Store, run: Run, body: dict[str, Any], client: ChatClient) -> None:
        pending: list[str] = []
        arrived = asyncio.Event()
        step: RunStep | None = None
        message: Message | None = None
        text = ""

        async def on_delta(delta: str) -> None:
            pending.append(delta)
            arrived.set()

        async def flush() -> None:
            nonlocal step, message, text
            arrived.clear()
            if not pending:
                return
            batch = pending[:]
            pending.clear()
            if message is None:
                step, message = await self._db(ops.start_message, store, run)
            assert message is not None
            await self._db(ops.record_deltas, store, run, message.id, batch)
            text += "".join(batch)
            notify.notify()

        started = time.perf_counter()
        call = asyncio.create_task(client.complete(body, on_delta))
        stopped_status: str | None = None
        next_check = time.monotonic() + 0.5
        try:
            while True:
                waiter = asyncio.create_task(arrived.wait())
                await asyncio.wait({call, waiter}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                await flush()
                if call.done():
                    break
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 0.5
                    current = await self._db(store.runs.get, run.id)
                    if current.status != "in_progress":
                        stopped_status = current.status
                        break
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
        latency_ms = int((time.perf_counter() - started) * 1000)
        completion: Completion | None = None
        error: UpstreamError | None = None
        if stopped_status is None:
            try:
                completion = call.result()
            except UpstreamError as exc:
                error = exc
            await flush()
        await self._db(
            _record_call,
            store,
            run,
            body,
            client,
            completion,
            error,
            latency_ms,
            text,
            stopped_status,
        )
        if stopped_status is not None:
            # cancelled (or failed by someone else): close what is open and announce it
            await self._db(ops.fail_run, store, run.id, "server_error", "cancelled")
            return
        if error is not None:
            await self._db(ops.fail_run, store, run.id, error.code, error.message)
            return
        assert completion is not None
        calls = completion.tool_calls
        if message is None and not calls:
            step, message = await self._db(ops.start_message, store, run)
        if message is not None and step is not None:
            tokens = (0, 0) if calls else (completion.input_tokens, completion.output_tokens)
            await self._db(
                ops.finish_message,
                store,
                run,
                step,
                message,
                text,
                input_tokens=tokens[0],
                output_tokens=tokens[1],
            )
            notify.notify()
        if calls:
            await self._db(
                ops.require_action,
                store,
                run,
                [(c.id, c.name, c.arguments) for c in calls],
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
            )
            return
        if completion.finish_reason == "length" and (run.extra or {}).get("max_completion_tokens"):
            await self._db(
                ops.finish_run,
                store,
                run.id,
                "incomplete",
                incomplete_details={"reason": "max_completion_tokens"},
            )
        else:
            await self._db(ops.finish_run, store, run.id, "completed")


def _record_call(
    store: Store,
    run: Run,
    body: dict[str, Any],
    client: ChatClient,
    completion: Completion | None,
    error: UpstreamError | None,
    latency_ms: int,
    text: str,
    stopped_status: str | None,
) -> None:
    """One LLM usage row for the call, and its tokens and cost added to the run."""
    out = completion or Completion()
    response: str | None = text or out.text or None
    if out.tool_calls:
        response = json.dumps(
            {
                "content": text or out.text or None,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in out.tool_calls
                ],
            }
        )
    if error is not None:
        message: str | None = error.message
    elif stopped_status is not None:
        message = f"the run was {stopped_status} while the upstream answered"
    else:
        message = None
    params = {k: v for k, v in body.items() if k not in ("messages", "model")}
    metadata = {"response_id": out.response_id[:512]} if out.response_id else None
    with store.transaction():
        usage = store.usage.record(
            provider=client.provider,
            model=str(out.model or body.get("model") or "unknown"),
            input_tokens=out.input_tokens,
            output_tokens=out.output_tokens,
            cached_tokens=out.cached_tokens,
            reasoning_tokens=out.reasoning_tokens,
            latency_ms=latency_ms,
            status="success" if message is None else "error",
            error_message=message,
            prompt=json.dumps(body.get("messages", [])),
            response=response,
            input_params=params,
            agent_id=run.agent_id,
            session_id=run.session_id,
            run_id=run.id,
            metadata=metadata,
        )
        store.runs.add_usage(
            run.id,
            input_tokens=out.input_tokens,
            output_tokens=out.output_tokens,
            cached_tokens=out.cached_tokens,
            reasoning_tokens=out.reasoning_tokens,
            cost_usd=usage.cost_usd,
            iterations=1,
        )
