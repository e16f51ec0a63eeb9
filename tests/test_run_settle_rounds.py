"""The run worker's settles of concurrent runs share one transaction; a failed round leaves no trace."""

from __future__ import annotations

import asyncio
from typing import Any

from agentkeep import NotFound, Store
from agentkeep.runner.answer import Answer
from agentkeep.runner.group_commit import GroupCommit, one_transaction
from agentkeep.runner.upstream import ChatClient, Completion
from agentkeep.runner.worker import Settling, _settle


async def _db(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def _running(store: Store) -> Any:
    thread = store.sessions.create()
    return store.runs.create("asst_x", session_id=thread.id, status="in_progress")


def _item(store: Store, run: Any, text: str) -> Settling:
    answer = Answer(completion=Completion(text=text, finish_reason="stop", output_tokens=2))
    answer.text = text
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return (store, run, body, ChatClient("http://127.0.0.1:9/v1"), answer, 60.0)


async def test_a_run_written_again_after_its_round_failed_ends_as_if_alone(store: Store) -> None:
    """The round fails on a deleted thread; the other run's settle is retried from scratch.

    Its first attempt opened its message in the round that rolled back: the
    retry must not take that message for one that exists.
    """
    kept, gone = _running(store), _running(store)
    items = [_item(store, kept, "all done"), _item(store, gone, "lost")]
    store.sessions.delete(gone.session_id)
    group: GroupCommit[Settling, None] = GroupCommit(_db, one_transaction(_settle))
    results = await asyncio.gather(*(group.write(i) for i in items), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], NotFound)
    assert store.runs.get(kept.id).status == "completed"
    [message] = store.messages.list(kept.session_id).items
    assert (message.role, message.text) == ("assistant", "all done")
    usage = store.usage.list(limit=10).items
    assert [u.run_id for u in usage] == [kept.id]  # the rolled-back round left no usage row
    assert items[0][4].message is None  # the caller's answer is not changed by the settle


async def test_settles_in_one_round_each_end_their_run(store: Store) -> None:
    runs = [_running(store) for _ in range(4)]
    group: GroupCommit[Settling, None] = GroupCommit(_db, one_transaction(_settle))
    await asyncio.gather(*(group.write(_item(store, r, f"answer {i}")) for i, r in enumerate(runs)))
    for i, run in enumerate(runs):
        assert store.runs.get(run.id).status == "completed"
        assert [m.text for m in store.messages.list(run.session_id).items] == [f"answer {i}"]
    assert store.usage.rollup("model")[0].calls == 4
