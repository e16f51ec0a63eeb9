"""A run whose thread is deleted while the upstream answers: the run is gone, and the call it
paid for is still a usage row that names it."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from test_runs_batching import _queued_run, until
from test_runs_stream import new_model
from upstream_llm import Reply, UpstreamLLM

from agentkeep import NotFound
from agentkeep.config import Settings
from agentkeep.runner import RunWorker, worker
from agentkeep.store import Store


def _streamed(store: Store, run_id: str) -> str:
    """The text of the run's delta events stored so far (its message is written at its end)."""
    events = store.events.list(run_id=run_id, limit=100)
    deltas = [e.data["delta"]["content"] for e in events if e.type == "thread.message.delta"]
    return "".join(part["text"]["value"] for content in deltas for part in content)


async def test_a_run_deleted_mid_answer_leaves_its_cut_off_call_as_a_usage_row(
    own_db: Store,
) -> None:
    store = own_db
    hold = threading.Event()
    with UpstreamLLM() as upstream:
        model = new_model()
        # The role chunk and "one " go out, then the upstream holds (never answers more).
        upstream.script(model, Reply(chunks=["one ", "two"], hold=hold, hold_after=2))
        run = _queued_run(store, model)
        thread_id = run.session_id
        assert thread_id is not None
        settings = replace(Settings.from_env(), llm_base_url=upstream.base_url)
        runner = RunWorker(store, settings, concurrency=1, poll_interval=0.05)
        await runner.start()
        try:
            await until(lambda: _streamed(store, run.id) == "one ", "the first delta stored")
            store.sessions.delete(thread_id)  # its runs and messages go with it
            # The worker's next check finds the run gone and stops the call.
            await until(lambda: store.usage.list(run_id=run.id).items != [], "the call recorded")
        finally:
            hold.set()
            await runner.stop()
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
    with UpstreamLLM() as upstream:
        model = new_model()
        # Every delta goes out, then the upstream holds before its finish and usage chunks.
        reply = Reply(chunks=["one ", "two"], hold=hold, hold_after=3)
        upstream.script(model, replace(reply, prompt_tokens=11, completion_tokens=2))
        run = _queued_run(store, model)
        thread_id = run.session_id
        assert thread_id is not None
        settings = replace(Settings.from_env(), llm_base_url=upstream.base_url)
        runner = RunWorker(store, settings, concurrency=1, poll_interval=0.05)
        await runner.start()
        try:
            await until(lambda: _streamed(store, run.id) == "one two", "every delta stored")
            store.sessions.delete(thread_id)
            hold.set()  # the call ends; its settle finds the run gone
            await until(lambda: store.usage.list(run_id=run.id).items != [], "the call recorded")
        finally:
            hold.set()
            await runner.stop()
    [usage] = store.usage.list(run_id=run.id).items
    assert (usage.status, usage.input_tokens, usage.output_tokens) == ("success", 11, 2)
    assert (usage.error_message, usage.response) == (None, "one two")
