"""A run whose thread is deleted while the upstream answers: the run is gone, and the call it
paid for is still a usage row that names it. A run whose database fails for a moment goes on."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from test_runs_batching import _queued_run, until
from test_runs_stream import new_model
from upstream_llm import Reply, UpstreamLLM

from agentkeep import NotFound, StoreUnavailable
from agentkeep.config import Settings
from agentkeep.models import Run
from agentkeep.runner import RunWorker, ops, worker
from agentkeep.store import Store
from agentkeep.store.runs import Runs


def _streamed(store: Store, run_id: str) -> str:
    """The text of the run's delta events stored so far (its message is written at its end)."""
    events = store.events.list(run_id=run_id, limit=100)
    deltas = [e.data["delta"]["content"] for e in events if e.type == "thread.message.delta"]
    return "".join(part["text"]["value"] for content in deltas for part in content)


@contextlib.asynccontextmanager
async def _running(store: Store, reply: Reply) -> AsyncIterator[tuple[Run, str]]:
    """A queued run and a ``RunWorker`` executing it against an upstream scripted with
    ``reply``; the run and its model. On the way out the upstream's hold is released."""
    with UpstreamLLM() as upstream:
        model = new_model()
        upstream.script(model, reply)
        run = _queued_run(store, model)
        settings = replace(Settings.from_env(), llm_base_url=upstream.base_url)
        runner = RunWorker(store, settings, concurrency=1, poll_interval=0.05)
        await runner.start()
        try:
            yield run, model
        finally:
            if reply.hold is not None:
                reply.hold.set()
            await runner.stop()


def _thread(run: Run) -> str:
    assert run.session_id is not None
    return run.session_id


async def test_a_run_deleted_mid_answer_leaves_its_cut_off_call_as_a_usage_row(
    own_db: Store,
) -> None:
    store = own_db
    hold = threading.Event()
    # The role chunk and "one " go out, then the upstream holds (never answers more).
    reply = Reply(chunks=["one ", "two"], hold=hold, hold_after=2)
    async with _running(store, reply) as (run, model):
        await until(lambda: _streamed(store, run.id) == "one ", "the first delta stored")
        store.sessions.delete(_thread(run))  # its runs and messages go with it
        # The worker's next check finds the run gone and stops the call.
        await until(lambda: store.usage.list(run_id=run.id).items != [], "the call recorded")
    [usage] = store.usage.list(run_id=run.id).items
    assert usage.status == "error"
    assert usage.error_message == "the run was deleted while the upstream answered"
    assert (usage.model, usage.session_id, usage.response) == (model, run.session_id, "one ")
    with pytest.raises(NotFound):
        store.runs.get(run.id)


async def test_a_run_deleted_after_its_answer_keeps_the_tokens_its_call_cost(
    own_db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole answer came: the usage row holds the tokens the upstream reported."""
    monkeypatch.setattr(worker, "CANCEL_CHECK_S", 3600.0)  # no check finds it gone first
    store = own_db
    hold = threading.Event()
    # Every delta goes out, then the upstream holds before its finish and usage chunks.
    reply = Reply(
        chunks=["one ", "two"], hold=hold, hold_after=3, prompt_tokens=11, completion_tokens=2
    )
    async with _running(store, reply) as (run, _model):
        await until(lambda: _streamed(store, run.id) == "one two", "every delta stored")
        store.sessions.delete(_thread(run))
        hold.set()  # the call ends; its settle finds the run gone
        await until(lambda: store.usage.list(run_id=run.id).items != [], "the call recorded")
    [usage] = store.usage.list(run_id=run.id).items
    assert (usage.status, usage.input_tokens, usage.output_tokens) == ("success", 11, 2)
    assert (usage.error_message, usage.response) == (None, "one two")


async def test_a_batch_that_fails_to_commit_is_tried_again_and_the_run_goes_on(
    own_db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails once, on the batch that opens the message: the run does not fail;
    the batch is committed on its next try, and the stream replays the whole answer."""
    failed = threading.Event()
    start_message = ops.start_message

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        if not failed.is_set():
            failed.set()
            raise StoreUnavailable("the database went away for a moment")
        return start_message(*args, **kwargs)

    monkeypatch.setattr(ops, "start_message", fails_once)  # before the worker is made
    store = own_db
    hold = threading.Event()
    # "one " and "two " go out, then the upstream holds until the test has seen them stored.
    reply = Reply(chunks=["one ", "two ", "three"], hold=hold, hold_after=3)
    async with _running(store, reply) as (run, _model):
        await until(lambda: _streamed(store, run.id) == "one two ", "the batch committed")
        assert failed.is_set()
        hold.set()
        await until(lambda: store.runs.get(run.id).status != "in_progress", "the run ended")
    assert store.runs.get(run.id).status == "completed"
    assert _streamed(store, run.id) == "one two three"
    [answer] = [m for m in store.messages.list(_thread(run)).items if m.role == "assistant"]
    assert answer.content == [{"type": "text", "text": "one two three"}]


async def test_a_cancel_check_the_database_cannot_answer_is_skipped_not_fatal(
    own_db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = threading.Event()
    get = Runs.get

    def fails_once_in_the_worker(self: Runs, run_id: str) -> Run:
        if threading.current_thread().name.startswith("agentkeep-run") and not failed.is_set():
            failed.set()
            raise StoreUnavailable("the database went away for a moment")
        return get(self, run_id)

    monkeypatch.setattr(Runs, "get", fails_once_in_the_worker)
    store = own_db
    hold = threading.Event()
    reply = Reply(chunks=["one ", "two"], hold=hold, hold_after=2)
    async with _running(store, reply) as (run, _model):
        await until(failed.is_set, "the worker's cancel check met the outage")
        hold.set()
        await until(lambda: store.runs.get(run.id).status != "in_progress", "the run ended")
    assert store.runs.get(run.id).status == "completed"
    assert _streamed(store, run.id) == "one two"
