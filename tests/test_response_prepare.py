"""What a Responses request reads before the model is called (``prepare``), sync and on the
store's async connections: the chain, a conversation's items, item references."""

from __future__ import annotations

from typing import Any

import pytest
from _response_items import message_item as _msg
from _statements import sent_statements, work
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, NotFound, Store
from agentkeep.runner.responses import (
    PreviousResponseNotFound,
    aprepare,
    aprepare_stored,
    prepare,
    prepare_stored,
)
from agentkeep.wire.responses import CreateResponse


def _chat_texts(chat: dict[str, Any]) -> list[str]:
    return [
        m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
        for m in chat["messages"]
    ]


def _stored(store: Store, n: int, previous: str | None = None) -> str:
    return store.responses.create(
        model="m",
        input_items=[_msg(f"msg_in{n}", f"q{n}")],
        output_items=[_msg(f"msg_out{n}", f"a{n}", "assistant")],
        status="completed",
        previous_response_id=previous,
    ).id


async def test_find_items_reads_every_id_asked_in_one_statement_per_64(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids go in lists of 1, 2, 4 ... 64 (padded with the last id): every count finds
    exactly the live items asked for, unknown ids left out, on the async connections."""
    items = [_msg(f"msg_{i:03}", f"t{i}") for i in range(150)]
    store.responses.create(model="m", input_items=items, status="completed")
    no_worker_threads(monkeypatch, "responses.find_items")
    for count in (1, 2, 3, 5, 63, 64, 65, 130, 150):
        wanted = [f"msg_{i:03}" for i in range(0, 150, 150 // count or 1)][:count]
        with sent_statements(store) as sent:
            found = await astore.responses.find_items([*wanted, "msg_unknown"])
        assert sorted(found) == sorted(wanted), count
        assert all(found[i]["content"][0]["text"] == f"t{int(i[4:])}" for i in wanted)
        assert found == store.responses.find_items([*wanted, "msg_unknown"])
        assert len(work(sent)) == -(-(count + 1) // 64), (count, work(sent))
    assert await astore.responses.find_items([]) == {}
    with pytest.raises(InvalidInput) as bad:
        await astore.responses.find_items([""])
    assert bad.value.field == "item_id"
    assert await astore.tenant("other").responses.find_items(["msg_001"]) == {}


@pytest.mark.parametrize("context", ["previous_response_id", "conversation", "item_reference"])
async def test_a_request_reads_its_context_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch, context: str
) -> None:
    """``aprepare`` builds the upstream request ``prepare`` builds, with no worker thread:
    from a chain of responses, from a conversation's items (more than one page of them),
    and with item references to a response's item and to a conversation's message."""
    first = _stored(store, 1)
    second = _stored(store, 2, first)
    conversation = store.sessions.create(kind="conversation")
    for i in range(3):
        store.messages.append(conversation.id, "user", f"c{i}")
    message = store.messages.append(conversation.id, "assistant", "c3")
    body: dict[str, Any] = {"model": "m", "input": "now", "instructions": "be brief"}
    expected = ["be brief"]
    if context == "previous_response_id":
        body["previous_response_id"] = second
        expected += ["q1", "a1", "q2", "a2", "now"]
    elif context == "conversation":
        body["conversation"] = conversation.id
        expected += ["c0", "c1", "c2", "c3", "now"]
        monkeypatch.setattr("agentkeep.runner.responses._PAGE", 3)  # two pages
    else:
        body["input"] = [
            {"type": "item_reference", "id": "msg_out2"},
            {"type": "item_reference", "id": message.id},
            _msg("msg_new", "now"),
        ]
        expected += ["a2", "c3", "now"]
    request = CreateResponse(**body)
    sync = prepare(store, request, ttl_seconds=60)
    no_worker_threads(monkeypatch, f"aprepare with {context}")
    prepared = await aprepare(astore.sync, request, ttl_seconds=60)
    assert _chat_texts(prepared.chat) == _chat_texts(sync.chat) == expected
    assert prepared.response.id != sync.response.id
    if context == "item_reference":  # copies, with ids of their own
        ids = [i["id"] for i in prepared.input]
        assert ids[0].startswith("msg_") and ids[0] != "msg_out2" and message.id not in ids


async def test_a_request_whose_context_is_gone_is_refused_naming_the_field(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = store.sessions.create()  # a thread is not a conversation
    no_worker_threads(monkeypatch, "aprepare")
    with pytest.raises(PreviousResponseNotFound) as gone:
        await aprepare(
            astore.sync,
            CreateResponse(model="m", input="x", previous_response_id="resp_missing"),
            ttl_seconds=60,
        )
    assert gone.value.field == "previous_response_id"
    for conversation in ("conv_missing", thread.id):
        with pytest.raises(NotFound):
            await aprepare(
                astore.sync,
                CreateResponse(model="m", input="x", conversation=conversation),
                ttl_seconds=60,
            )
    with pytest.raises(InvalidInput) as unknown:
        await aprepare(
            astore.sync,
            CreateResponse(
                model="m", input=[_msg("msg_a", "x"), {"type": "item_reference", "id": "msg_zz"}]
            ),
            ttl_seconds=60,
        )
    assert unknown.value.field == "input[1].id"


async def test_a_queued_response_is_rebuilt_from_its_rows_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the background worker runs: a queued response's input and its chain, read
    back as ``prepare_stored`` reads them, with no worker thread."""
    first = _stored(store, 1)
    queued = store.responses.create(
        model="m",
        input_items=[_msg("msg_q", "later")],
        status="queued",
        background=True,
        previous_response_id=first,
    )
    try:
        sync = prepare_stored(store, queued)
        no_worker_threads(monkeypatch, "aprepare_stored")
        prepared = await aprepare_stored(astore.sync, queued)
        assert _chat_texts(prepared.chat) == _chat_texts(sync.chat) == ["q1", "a1", "later"]
        assert [i["id"] for i in prepared.input] == ["msg_q"]
    finally:  # not left queued: the queue of every tenant is claimed by later tests
        store.responses.delete(queued.id)
