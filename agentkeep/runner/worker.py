"""The run worker: claims queued runs and executes them against the upstream LLM.

One ``RunWorker`` runs in each service process (started and stopped by the
app's lifespan). Its loop claims the oldest queued runs of any tenant
(``store.runs.claim_many``: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several processes share the queue), up to ``concurrency`` at
a time, and executes each in a task:

1. ``thread.run.in_progress``, committed with the claim (runs are claimed
   as many at once as there are free places, in one transaction);
2. the request is built from the instructions, the thread and the run's own
   steps (:mod:`agentkeep.runner.prompt`) and streamed from the upstream;
3. the deltas are committed in batches (:mod:`agentkeep.runner.answer`:
   at most ``DELTA_BATCH_MAX`` deltas or ``DELTA_BATCH_S`` seconds, one
   ``thread.message.delta`` event per batch; the batches of all runs in
   flight are committed together); the first batch, at the first
   content delta, also creates a message_creation step and an empty
   assistant message (``thread.run.step.created``,
   ``thread.run.step.in_progress``, ``thread.message.created``,
   ``thread.message.in_progress``);
4. in one transaction: the call is recorded as one LLM usage row (tokens,
   latency, cost from the price table) and added to the run's counters;
5. the message and step are completed
   (``thread.message.completed``, ``thread.run.step.completed``); then either
   the model called functions —
   a tool_calls step (``thread.run.step.created``, ``.in_progress``,
   ``.delta``) and ``thread.run.requires_action`` — or the run is
   ``thread.run.completed`` (``incomplete`` when the upstream stopped for
   length). A prompt that cannot fit the run's ``max_prompt_tokens`` ends the
   run ``incomplete`` before any call (:mod:`agentkeep.runner.prompt`).

Every state change is committed together with its event before anything
reads it; the run's readers are woken by an after-commit hook of that
transaction (:func:`agentkeep.runner.ops.emit`). Runs beyond ``concurrency``
(``AGENTKEEP_RUN_CONCURRENCY``) stay queued in the database until a place
frees up. A run in ``requires_action`` waits in the database; when its tool
outputs are submitted it goes back to ``queued`` and whichever worker claims
it continues it, with the outputs in its prompt. Cancelling is noticed within
half a second while the upstream streams: the call is dropped and the run,
its step and its message are cancelled. Upstream errors fail the run with
``last_error`` (``server_error`` or ``rate_limit_exceeded``).

A run waits in ``requires_action`` for ``AGENTKEEP_REQUIRED_ACTION_TTL_SECONDS``
(10 minutes, as on OpenAI; its ``expires_at``); past it the run is ``expired``
by whichever reads it first (the routes check on read) or by this worker's
periodic sweep, in any process (:func:`agentkeep.runner.ops.expire_run`).

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
import dataclasses
import functools
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, ParamSpec, TypeVar

from agentkeep.config import Settings
from agentkeep.errors import NotFound, StoreUnavailable
from agentkeep.models import Message, Run, RunStep
from agentkeep.runner import liveness, notify, ops
from agentkeep.runner.answer import Answer, DeltaBuffer, record_call
from agentkeep.runner.group_commit import GroupCommit, one_transaction
from agentkeep.runner.prompt import PromptTooLong, build_request
from agentkeep.runner.response_background import run_background
from agentkeep.runner.response_run import ResponseWrites
from agentkeep.runner.upstream import ChatClient, UpstreamError
from agentkeep.store import Store
from agentkeep.wire.responses import end_events

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
CANCEL_CHECK_S = 0.5  # how often a streaming run looks whether it was cancelled


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
        # The runs in flight share their writes' transactions (see group_commit): the
        # first delta batch with the message it opens, the later batches, the settle.
        # A round's runs are written in the order of their threads, as the rounds that
        # create runs lock threads (``server.routes.runs``): no two rounds deadlock.
        self._starts: GroupCommit[ops.Starting, tuple[RunStep, Message]] = GroupCommit(
            self._db, one_transaction(ops.start_message, order=_by_thread)
        )
        self._deltas: GroupCommit[ops.DeltaBatch, None] = GroupCommit(
            self._db, ops.record_deltas_of_runs
        )
        self._settles: GroupCommit[Settling, None] = GroupCommit(
            self._db, one_transaction(_settle, order=_by_thread)
        )
        self._responses = ResponseWrites.through(self._db)

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
            self.client = ChatClient(
                self.settings.llm_base_url,
                self.settings.llm_api_key,
                max_retries=self.settings.llm_max_retries,
            )
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
            await self._db(
                self.store.responses.fail_abandoned, [self.id], STOPPED_MESSAGE, events=end_events
            )
            notify.notify()  # background responses' readers
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
            free = self.concurrency - len(self._tasks)
            runs = await self._db(ops.claim_runs, self.store, self.id, free)
            for run in runs:
                self._spawn(run)
            if len(runs) < free:
                break
        while not self._stopping and len(self._tasks) < self.concurrency:
            response = await self._db(self.store.responses.claim_next_any_tenant, self.id)
            if response is None:
                return
            self._track(
                (response.tenant_id, response.id),
                run_background(
                    self.store,
                    self.client,
                    self._db,
                    response,
                    self._responses,
                    stopped=STOPPED_MESSAGE,
                ),
            )

    async def _sweep(self) -> None:
        dead = await self._db(
            liveness.dead_workers, self.store, me=self.id, stale_after=self.stale_after
        )
        for worker_id in dead:
            await self._db(liveness.reap, self.store, worker_id, CRASHED_MESSAGE)
        responses = self.store.responses
        if dead:
            failed = await self._db(
                responses.fail_abandoned, dead, CRASHED_MESSAGE, events=end_events
            )
            if failed:
                notify.notify()  # background responses' readers
        await self._db(responses.purge_expired, all_tenants=True)
        await self._db(self.store.graph_items.purge_expired, all_tenants=True)
        await self._db(ops.expire_due_runs, self.store)

    def _spawn(self, run: Run) -> None:
        self._track((run.tenant_id, run.id), self._execute(run))

    def _track(self, key: tuple[str, str], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"{key[1]}")
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._done(key))

    def _done(self, key: tuple[str, str]) -> None:
        """A run ended: its place goes to the next queued run at once."""
        self._tasks.pop(key, None)
        if not self._stopping:
            self.wake()

    # -- one run --------------------------------------------------------------------------

    async def _execute(self, run: Run) -> None:
        store = self.store.tenant(run.tenant_id)
        try:
            if self.client is None:
                await self._db(ops.fail_run, store, run.id, "server_error", NO_UPSTREAM)
                return
            try:
                body = await self._db(build_request, store, run)
            except PromptTooLong as exc:  # as OpenAI: the run ends incomplete, no call made
                log.info("run %s: %s; incomplete", run.id, exc)
                details = {"reason": "max_prompt_tokens"}
                await self._db(
                    ops.finish_run, store, run.id, "incomplete", incomplete_details=details
                )
                return
            await self._call(store, run, body, self.client)
        except asyncio.CancelledError:
            raise  # stop(): the run is failed by the reaping of this worker
        except NotFound as exc:  # the run or its thread was deleted meanwhile
            log.info("run %s: %s; dropped", run.id, exc)
        except Exception as exc:
            log.exception("run %s failed in the worker", run.id)
            try:
                await self._db(
                    ops.fail_run, store, run.id, "server_error", f"internal error: {exc!r}"
                )
            except Exception:  # the database is gone, say: the run stays as it was, in the
                # log too; this worker's stop (or, after a crash, the next one's sweep) ends it
                log.exception("run %s: its failure could not be stored", run.id)

    async def _call(self, store: Store, run: Run, body: dict[str, Any], client: ChatClient) -> None:
        """One upstream call: stream it into the run's message, record it, conclude the run."""
        answer = Answer()
        try:
            await self._stream(store, run, body, client, answer)
            ttl = self.settings.required_action_ttl_seconds
            await self._settles.write((store, run, body, client, answer, ttl))
        except NotFound:
            await self._record_deleted(store, run, body, client, answer)
            raise

    async def _record_deleted(
        self, store: Store, run: Run, body: dict[str, Any], client: ChatClient, answer: Answer
    ) -> None:
        """The run (or its thread) was deleted during its call: the call, paid for, is still
        a usage row, with the tokens the upstream reported if it finished, else as cut off."""
        if answer.completion is None and answer.error is None:
            answer.stopped_status = "deleted"
        try:
            await self._db(record_call, store, run, body, client, answer, run_exists=False)
        except Exception:  # the store failed twice: the first error is the one raised
            log.warning("could not record the upstream call of run %s", run.id, exc_info=True)

    async def _stream(
        self, store: Store, run: Run, body: dict[str, Any], client: ChatClient, answer: Answer
    ) -> None:
        """Stream the upstream's answer into ``answer``, committing its deltas in batches as
        they come."""
        buffer = DeltaBuffer()
        started = time.perf_counter()
        call = asyncio.create_task(client.complete(body, buffer.add))
        next_check = time.monotonic() + CANCEL_CHECK_S
        try:
            while not call.done():
                await buffer.wait(call, max(0.0, next_check - time.monotonic()))
                if buffer.due():
                    await self._flush(store, run, buffer, answer)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + CANCEL_CHECK_S
                    try:
                        current = await self._db(store.runs.get, run.id)
                    except StoreUnavailable:  # an outage: looked at again at the next check
                        continue
                    if current.status != "in_progress":
                        answer.stopped_status = current.status
                        break
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
            answer.latency_ms = int((time.perf_counter() - started) * 1000)
        if answer.stopped_status is None:
            try:
                answer.completion = call.result()
            except UpstreamError as exc:
                answer.error = exc
            while buffer.pending:
                await self._flush(store, run, buffer, answer, last=True)

    async def _flush(
        self, store: Store, run: Run, buffer: DeltaBuffer, answer: Answer, *, last: bool = False
    ) -> None:
        """Commit the pending deltas (the first batch opens the message and its step).

        A batch that fails to commit while the answer streams because the database could
        not be reached (``StoreUnavailable``) goes back to the buffer and is tried again,
        with the deltas that came since, after a pause that doubles up to
        ``RETRY_MAX_S`` (of ``runner.answer``); the run goes on. A failure of the ``last`` batches (the
        answer has ended), or any other error (the run was deleted: ``NotFound``), is
        raised.
        """
        batch = buffer.take()
        if not batch:
            return
        try:
            if answer.message is None:
                opened = await self._starts.write((store, run, batch))
                assert opened is not None
                answer.step, answer.message = opened
            else:
                await self._deltas.write((store, run, answer.message.id, batch))
        except Exception as exc:
            # Only an outage is worth another try: the same batch would meet a missing run
            # (NotFound), a conflict, bad input or a bug of ours again.
            if last or not isinstance(exc, StoreUnavailable):
                raise
            first = not buffer.pause  # warned once for a row of failures, not at every try
            pause = buffer.put_back(batch)
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "run %s: its deltas are not committed yet; tried again in %.1f s",
                run.id,
                pause,
                exc_info=True,
            )
            return
        buffer.committed()
        answer.text += "".join(batch)


def _by_thread(item: tuple[Any, ...]) -> tuple[str, str, str]:
    """The order of a round's writes of runs: ``(store, run, ...)`` by tenant, thread, run."""
    store, run = item[0], item[1]
    return (store.tenant_id, run.session_id or "", run.id)


Settling = tuple[Store, Run, dict[str, Any], ChatClient, Answer, float]
"""A run to settle: the arguments of :func:`_settle`."""


def _settle(
    store: Store,
    run: Run,
    body: dict[str, Any],
    client: ChatClient,
    answer: Answer,
    ttl_seconds: float = ops.REQUIRED_ACTION_TTL_S,
) -> None:
    """The call's usage row and the run's outcome, in one transaction."""
    # A copy: what this write adds to it (the message it opens) must not outlive a
    # rollback (a round that fails is written again item by item).
    answer = dataclasses.replace(answer)
    with store.transaction(savepoints=False):
        record_call(store, run, body, client, answer)
        if answer.stopped_status is not None:
            # cancelled (or failed by someone else): close what is open and announce it
            ops.fail_run(store, run.id, "server_error", "cancelled")
        elif answer.error is not None:
            ops.fail_run(store, run.id, answer.error.code, answer.error.message)
        else:
            _conclude(store, run, answer, ttl_seconds)


def _conclude(
    store: Store, run: Run, answer: Answer, ttl_seconds: float = ops.REQUIRED_ACTION_TTL_S
) -> None:
    """After a successful call: complete the message, then require action or finish the run.

    One transaction: the message, its step and the run's new status commit together.
    """
    completion = answer.completion
    assert completion is not None
    calls = completion.tool_calls
    with store.transaction(savepoints=False):
        if answer.message is None and not calls:
            answer.step, answer.message = ops.start_message(store, run)
        if answer.message is not None and answer.step is not None:
            tokens = (0, 0) if calls else (completion.input_tokens, completion.output_tokens)
            ops.finish_message(
                store,
                run,
                answer.step,
                answer.message,
                answer.text,
                input_tokens=tokens[0],
                output_tokens=tokens[1],
            )
        if calls:
            ops.require_action(
                store,
                run,
                [(c.id, c.name, c.arguments) for c in calls],
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                ttl_seconds=ttl_seconds,
            )
        elif completion.finish_reason == "length" and (run.extra or {}).get(
            "max_completion_tokens"
        ):
            ops.finish_run(
                store, run.id, "incomplete", incomplete_details={"reason": "max_completion_tokens"}
            )
        else:
            ops.finish_run(store, run.id, "completed")
