"""``max_prompt_tokens`` and ``truncation_strategy`` applied when a run's prompt is built.

On every backend, through ``build_request`` on a stored thread; the service's
behaviour (the run ending ``incomplete``) is in ``tests/server/test_runs_truncation.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentkeep import Store
from agentkeep.runner import ops
from agentkeep.runner.prompt import PromptTooLong, build_request
from agentkeep.runner.tokens import estimate_message, estimate_prompt, estimate_text

WORDS = "x" * 400  # 100 tokens by the estimate, 103 as a message


def _run(store: Store, texts: list[str], **extra: Any) -> Any:
    thread = store.sessions.create(kind="thread")
    for text in texts:
        store.messages.append(thread.id, "user", text)
    return store.runs.create(
        "asst_1", session_id=thread.id, status="in_progress", model="m", extra=extra
    )


def _texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def test_the_estimate() -> None:
    assert estimate_text("") == 0
    assert estimate_text("abcd") == 1
    assert estimate_text("abcde") == 2
    assert estimate_message({"role": "user", "content": WORDS}) == 103
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
    assert estimate_message(image) == 3 + 85
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"function": {"name": "abcd", "arguments": "abcdabcd"}}],
    }
    assert estimate_message(call) == 3 + 1 + 2
    assert estimate_prompt([{"role": "user", "content": WORDS}]) == 106
    assert estimate_prompt([], [{"type": "function"}]) > estimate_prompt([])


def test_without_a_budget_every_message_is_sent(store: Store) -> None:
    texts = [f"{i}{WORDS}" for i in range(6)]
    assert _texts(build_request(store, _run(store, texts))) == texts


@pytest.mark.parametrize("count", [999, 1000, 1001, 2000, 2345])
def test_every_message_of_a_long_thread_is_read_in_order(store: Store, count: int) -> None:
    """A thread of up to a page of messages is one read; the older messages of a longer one
    are read page by page, up to the last page's first (at a page's start, for 2,000)."""
    thread = store.sessions.create(kind="thread")
    texts = [f"m{i}" for i in range(count)]
    store.messages.append_many(thread.id, [{"role": "user", "content": t} for t in texts])
    run = store.runs.create("asst_1", session_id=thread.id, status="in_progress", model="m")
    assert _texts(build_request(store, run)) == texts


def test_a_long_thread_whose_message_is_deleted_between_its_reads(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages then read the whole thread as it is now."""
    thread = store.sessions.create(kind="thread")
    texts = [f"m{i}" for i in range(1500)]
    store.messages.append_many(thread.id, [{"role": "user", "content": t} for t in texts])
    run = store.runs.create("asst_1", session_id=thread.id, status="in_progress", model="m")
    recent = store.messages.recent

    def then_deleted(session_id: str, n: int = 20) -> Any:
        found = recent(session_id, n)
        store.messages.delete(found[0].id)
        return found

    monkeypatch.setattr(store.messages, "recent", then_deleted)
    assert _texts(build_request(store, run)) == texts[:500] + texts[501:]


def test_auto_drops_the_oldest_messages_to_fit(store: Store) -> None:
    texts = [f"{i}{WORDS}" for i in range(6)]
    # 3 (reply) + 2 x 104 ("0xxx..." is 401 characters: 101 + 3) fits 256; a third does not.
    body = build_request(store, _run(store, texts, max_prompt_tokens=256))
    assert _texts(body) == texts[-2:]
    assert estimate_prompt(body["messages"]) <= 256
    auto = {"type": "auto", "last_messages": None}
    body = build_request(store, _run(store, texts, max_prompt_tokens=400, truncation_strategy=auto))
    assert _texts(body) == texts[-3:]


def test_the_budget_is_for_the_whole_run(store: Store) -> None:
    texts = [f"{i}{WORDS}" for i in range(6)]
    run = _run(store, texts, max_prompt_tokens=500)
    assert len(_texts(build_request(store, run))) == 4
    run = store.runs.add_usage(run.id, input_tokens=280)  # an earlier call of the run
    assert _texts(build_request(store, run)) == texts[-2:]
    run = store.runs.add_usage(run.id, input_tokens=200)
    with pytest.raises(PromptTooLong) as caught:
        build_request(store, run)
    assert caught.value.budget == 20


def test_auto_keeps_at_least_the_newest_message(store: Store) -> None:
    run = _run(store, ["hello", "y" * 2000], max_prompt_tokens=256)
    with pytest.raises(PromptTooLong) as caught:
        build_request(store, run)
    assert caught.value.needed > 256 == caught.value.budget


def test_instructions_count_and_are_always_sent(store: Store) -> None:
    texts = [f"{i}{WORDS}" for i in range(3)]
    run = _run(store, texts, max_prompt_tokens=256)
    run = store.runs.update(run.id, instructions="i" * 400)
    body = build_request(store, run)
    assert body["messages"][0] == {"role": "system", "content": "i" * 400}
    assert _texts(body) == texts[-1:]
    store.runs.update(run.id, instructions="i" * 1200)
    with pytest.raises(PromptTooLong):
        build_request(store, store.runs.get(run.id))


def test_last_messages_cuts_then_must_fit(store: Store) -> None:
    texts = [f"{i}{WORDS}" for i in range(6)]
    strategy = {"type": "last_messages", "last_messages": 2}
    body = build_request(store, _run(store, texts, truncation_strategy=strategy))
    assert _texts(body) == texts[-2:]
    body = build_request(
        store, _run(store, texts, truncation_strategy=strategy, max_prompt_tokens=256)
    )
    assert _texts(body) == texts[-2:]
    strategy = {"type": "last_messages", "last_messages": 3}
    with pytest.raises(PromptTooLong):
        build_request(
            store, _run(store, texts, truncation_strategy=strategy, max_prompt_tokens=256)
        )


def test_a_run_never_called_has_no_steps_to_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first call's prompt is built without reading its steps; a later call reads them."""
    run = _run(store, ["hi"])

    def unread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the steps of a run never called were read")

    with monkeypatch.context() as patch:
        patch.setattr(store.run_steps, "list", unread)
        assert _texts(build_request(store, run)) == ["hi"]
    step, message = ops.start_message(store, run)
    ops.finish_message(store, run, step, message, "Hello")
    called = store.runs.add_usage(run.id, iterations=1)
    body = build_request(store, called)
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello"}
