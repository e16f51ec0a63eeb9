"""When a run's upstream deltas are due to be committed (``DeltaBuffer``), without a clock.

The first delta of an answer is due at once (it opens the message, so the first
words reach a stream without waiting for a batch); later ones when the batch is
full or its oldest delta has waited ``max_wait``.
"""

from __future__ import annotations

import asyncio

from agentkeep.runner.answer import DeltaBuffer


def test_the_first_delta_is_due_at_once_and_later_ones_wait_for_their_batch() -> None:
    async def scenario() -> None:
        buffer = DeltaBuffer(max_size=3, max_wait=3600.0)  # a window no test outlives
        assert not buffer.due()  # nothing pending
        await buffer.add("The")
        assert buffer.due()  # the first delta: at once
        assert buffer.take() == ["The"]
        await buffer.add(" quick")
        assert not buffer.due()  # later ones wait for the window
        await buffer.add(" brown")
        assert not buffer.due()
        await buffer.add(" fox")
        assert buffer.due()  # ... or a full batch
        assert buffer.take() == [" quick", " brown", " fox"]
        assert buffer.take() == []

    asyncio.run(scenario())


def test_a_batch_is_due_once_its_oldest_delta_waited_the_window() -> None:
    async def scenario() -> None:
        buffer = DeltaBuffer(max_size=100, max_wait=0.0)
        await buffer.add("a")
        buffer.take()  # the message is open
        await buffer.add("b")
        assert buffer.due()  # a window of 0 s has passed as soon as it is looked at
        assert buffer.take() == ["b"]

    asyncio.run(scenario())


def test_a_wait_ends_when_a_delta_makes_a_batch_due_or_the_call_ends() -> None:
    async def scenario() -> None:
        buffer = DeltaBuffer(max_size=100, max_wait=3600.0)
        ends = asyncio.Event()
        call = asyncio.ensure_future(ends.wait())
        waiting = asyncio.ensure_future(buffer.wait(call, 3600.0))
        await asyncio.sleep(0)  # the wait has started
        await buffer.add("The")  # the first delta is due at once: the wait returns
        await asyncio.wait_for(waiting, 10)
        buffer.take()
        waiting = asyncio.ensure_future(buffer.wait(call, 3600.0))
        await asyncio.sleep(0)
        await buffer.add(" quick")  # not due yet: the wait goes on
        await asyncio.sleep(0)
        assert not waiting.done()
        ends.set()  # the call ends: the wait returns (its deltas are flushed after it)
        await asyncio.wait_for(waiting, 10)
        assert buffer.pending == [" quick"]

    asyncio.run(scenario())


def test_a_wait_ends_at_its_timeout_with_nothing_due() -> None:
    async def scenario() -> None:
        buffer = DeltaBuffer(max_size=100, max_wait=3600.0)
        call = asyncio.ensure_future(asyncio.Event().wait())
        await asyncio.wait_for(buffer.wait(call, 0.01), 10)
        assert not call.done()
        call.cancel()

    asyncio.run(scenario())


def test_a_batch_put_back_waits_its_pause_and_goes_first_even_when_full() -> None:
    async def scenario() -> None:
        buffer = DeltaBuffer(max_size=3, max_wait=0.0, retry_first=3600.0, retry_max=3600.0)
        await buffer.add("a")
        buffer.put_back(buffer.take())  # the first batch: it failed to commit
        assert not buffer.started  # it opens the message still
        await buffer.add("b")
        await buffer.add("c")
        assert not buffer.due()  # the pause holds even a first batch, even a full one

        buffer = DeltaBuffer(max_size=3, max_wait=0.0, retry_first=0.0, retry_max=0.0)
        await buffer.add("a")
        batch = buffer.take()
        await buffer.add("b")
        buffer.put_back(batch)  # no pause
        await buffer.add("c")
        assert buffer.due()
        assert buffer.take() == ["a", "b", "c"]  # in order, the failed ones first
        assert buffer.started
        await buffer.add("d")
        assert buffer.due()  # a window of 0 s: the pause is gone with the batch taken

    asyncio.run(scenario())


def test_the_pause_doubles_while_batches_fail_and_starts_over_once_one_commits() -> None:
    async def scenario() -> None:
        buffer = DeltaBuffer(retry_first=1.0, retry_max=3.0)
        await buffer.add("a")
        assert [buffer.put_back(buffer.take()) for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
        assert buffer.pending == ["a"]
        buffer.take()
        buffer.committed()
        await buffer.add("b")
        assert buffer.put_back(buffer.take()) == 1.0

    asyncio.run(scenario())
