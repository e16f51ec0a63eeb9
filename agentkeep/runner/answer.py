"""One upstream answer of a run: its deltas batched for the database, and its usage row.

The upstream's content deltas are kept in a :class:`DeltaBuffer` as they
arrive; the worker commits them in batches, one ``thread.message.delta``
event per batch carrying the text of its deltas in order, so a stream
replays exactly from any bookmark while a run costs a few transactions and
a few events instead of one of each per token (every stored event is read
back, encoded and sent to each reader: per-token events made a streamed run
several times as costly as reading the upstream, see README, "Streamed
runs"). A batch is due
when it holds ``DELTA_BATCH_MAX`` deltas or its oldest delta has waited
``DELTA_BATCH_S`` seconds; the first delta of an answer is due at once (it
opens the message), so the first words reach a stream without waiting.
Reading the upstream never waits for a write: deltas that arrive while a
batch commits join the next one. The batches of all the runs a worker
executes are committed together (:class:`~agentkeep.runner.group_commit.GroupCommit`,
with :func:`~agentkeep.runner.ops.record_deltas_of_runs`): one transaction per
round, whatever the number of runs, so concurrent runs do not queue behind
each other's commits.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass
from typing import Any

from agentkeep import metrics
from agentkeep.models import Message, Run, RunStep
from agentkeep.runner.upstream import ChatClient, Completion, UpstreamError
from agentkeep.runner.wakeup import Wakeup
from agentkeep.store import Store

__all__ = [
    "DELTA_BATCH_MAX",
    "DELTA_BATCH_S",
    "Answer",
    "DeltaBuffer",
    "record_call",
]

DELTA_BATCH_MAX = 128
"""Most deltas committed in one batch."""
DELTA_BATCH_S = 0.05
"""Longest a delta waits for its batch to be committed (plus the commit itself)."""
RETRY_FIRST_S = 0.1
"""The first pause before a batch that failed to commit is tried again."""
RETRY_MAX_S = 2.0
"""The longest pause between two tries (each pause doubles the one before)."""


class DeltaBuffer:
    """The deltas received and not yet committed, and when the next batch is due."""

    def __init__(
        self,
        *,
        max_size: int = DELTA_BATCH_MAX,
        max_wait: float = DELTA_BATCH_S,
        retry_first: float = RETRY_FIRST_S,
        retry_max: float = RETRY_MAX_S,
    ):
        self.max_size = max_size
        self.max_wait = max_wait
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.pending: list[str] = []
        self.started = False  # whether a batch was taken already (the message exists)
        self._started_before = False  # ``started`` before the last batch was taken
        self._first_at = 0.0
        self._retry_at = 0.0  # a batch that failed to commit waits until then
        self.pause = 0.0  # the last pause since a batch was committed (0: none failed)
        self._wakeup = Wakeup()

    async def add(self, delta: str) -> None:
        """``on_delta`` of the upstream call: keep it, wake the waiter if a batch is due."""
        if not self.pending:
            self._first_at = time.monotonic()
        self.pending.append(delta)
        if len(self.pending) == 1 or len(self.pending) >= self.max_size:
            self._wakeup.set()

    def _due_in(self) -> float:
        """Seconds until the pending deltas are due (0: now; inf: nothing pending)."""
        if not self.pending:
            return float("inf")
        if self._retry_at:
            return max(0.0, self._retry_at - time.monotonic())
        if not self.started or len(self.pending) >= self.max_size:
            return 0.0
        return max(0.0, self._first_at + self.max_wait - time.monotonic())

    def due(self) -> bool:
        """Whether the pending deltas should be committed now."""
        return self._due_in() == 0.0

    async def wait(self, call: asyncio.Task[Any], timeout: float) -> None:
        """Until a batch is due, ``call`` is done, or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        wake = self._wakeup.set
        call.add_done_callback(wake)
        try:
            while not call.done():
                left = min(self._due_in(), deadline - time.monotonic())
                if left <= 0:
                    return
                await self._wakeup.wait(left)
        finally:
            call.remove_done_callback(wake)

    def take(self) -> list[str]:
        """The oldest pending deltas, at most ``max_size``, as the next batch (empty if none)."""
        batch = self.pending[: self.max_size]
        del self.pending[: self.max_size]
        if batch:
            self._started_before, self.started = self.started, True
            self._retry_at = 0.0
        return batch

    def put_back(self, batch: list[str]) -> float:
        """The batch last taken was not committed: in front of the deltas that came since,
        as it was, due again after a pause (``retry_first``, then each failure in a row
        doubles it, up to ``retry_max``); that pause."""
        self.pending[:0] = batch
        self.started = self._started_before
        self.pause = min(self.retry_max, max(self.retry_first, self.pause * 2))
        self._first_at = time.monotonic()
        self._retry_at = self._first_at + self.pause
        return self.pause

    def committed(self) -> None:
        """The batch last taken was committed: the next failure pauses ``retry_first``."""
        self.pause = 0.0


@dataclass
class Answer:
    """What one upstream call of a run produced, and what of it is stored."""

    step: RunStep | None = None
    message: Message | None = None
    text: str = ""  # the deltas committed so far
    completion: Completion | None = None
    error: UpstreamError | None = None
    stopped_status: str | None = None  # the run stopped (cancelled, ...) while it streamed
    latency_ms: int = 0


def _response_text(answer: Answer) -> str | None:
    out = answer.completion or Completion()
    response: str | None = answer.text or out.text or None
    if out.tool_calls:
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in out.tool_calls]
        response = json.dumps({"content": answer.text or out.text or None, "tool_calls": calls})
    return response


def record_call(
    store: Store,
    run: Run,
    body: dict[str, Any],
    client: ChatClient,
    answer: Answer,
    *,
    run_exists: bool = True,
) -> None:
    """One LLM usage row for the call, and its tokens and cost added to the run (unless
    ``run_exists`` is false: the run was deleted meanwhile, the row still names it)."""
    out = answer.completion or Completion()
    if answer.error is not None:
        message: str | None = answer.error.message
    elif answer.stopped_status is not None:
        message = f"the run was {answer.stopped_status} while the upstream answered"
    else:
        message = None
    params = {k: v for k, v in body.items() if k not in ("messages", "model")}
    metadata = {"response_id": out.response_id[:512]} if out.response_id else None
    with store.transaction(savepoints=False):
        usage = store.usage.record(
            provider=client.provider,
            model=str(out.model or body.get("model") or "unknown"),
            input_tokens=out.input_tokens,
            output_tokens=out.output_tokens,
            cached_tokens=out.cached_tokens,
            reasoning_tokens=out.reasoning_tokens,
            latency_ms=answer.latency_ms,
            status="success" if message is None else "error",
            error_message=message,
            prompt=json.dumps(body.get("messages", [])),
            response=_response_text(answer),
            input_params=params,
            agent_id=run.agent_id,
            session_id=run.session_id,
            run_id=run.id,
            metadata=metadata,
        )
        if run_exists:
            store.runs.add_usage(
                run.id,
                input_tokens=out.input_tokens,
                output_tokens=out.output_tokens,
                cached_tokens=out.cached_tokens,
                reasoning_tokens=out.reasoning_tokens,
                cost_usd=usage.cost_usd,
                iterations=1,
            )
        store.after_commit(functools.partial(metrics.observe_usage, usage))
