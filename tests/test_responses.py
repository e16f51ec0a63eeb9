"""Stored responses on every backend: items, chains and forks, events, status, expiry, queue."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from _paging import check_every_page
from _response_items import message_item as _msg
from _statements import sent_statements, work
from _threads import WAIT_S, no_worker_threads, until_it_waits

from agentkeep import AsyncStore, InvalidInput, NotFound, Store
from agentkeep.store.schema import response_events, response_items, responses


def _turn(store: Store, n: int, previous: str | None = None, **kwargs: Any) -> str:
    response = store.responses.create(
        model="m",
        input_items=[_msg(f"msg_in{n}", f"q{n}")],
        output_items=[_msg(f"msg_out{n}", f"a{n}", "assistant")],
        status="completed",
        previous_response_id=previous,
        **kwargs,
    )
    return response.id


def _texts(items: list[dict[str, Any]]) -> list[str]:
    return [i["content"][0]["text"] for i in items]


def test_create_get_items_and_delete(store: Store) -> None:
    created = store.responses.create(
        model="m",
        input_items=[_msg("msg_a", "hi")],
        instructions="rules",
        params={"metadata": {"k": "v"}},
        usage={"input_tokens": 1},
    )
    assert created.status == "in_progress"
    assert store.responses.get(created.id) == created
    ended = store.responses.finish(
        created.id, status="completed", output_items=[_msg("msg_b", "yo", "assistant")]
    )
    assert ended is not None and ended.status == "completed" and ended.completed_at is not None
    assert store.responses.finish(created.id, status="failed") is None  # already ended
    assert _texts(store.responses.items(created.id)) == ["hi", "yo"]
    assert _texts(store.responses.items(created.id, kind="output")) == ["yo"]
    store.responses.delete(created.id)
    with pytest.raises(NotFound):
        store.responses.get(created.id)
    with pytest.raises(NotFound):
        store.responses.items(created.id)


def test_a_response_ended_at_once_stores_its_input_and_output_in_one_insert(
    store: Store, backend: str
) -> None:
    """A non-streamed answer is stored ended (the settle's ``_store_new``): its input and
    output items are one statement (one ``executemany``: PostgreSQL's driver sends it as
    one call, SQLite's trace shows it once per row), numbered in order across both."""
    with sent_statements(store) as statements:
        ident = _turn(store, 1)
    inserts = [s for s in statements if s.upper().startswith("INSERT INTO RESPONSE_ITEMS")]
    assert len({s.split(" VALUES ")[0] for s in inserts}) == 1  # (SQLite's shows the values)
    assert len(inserts) == (1 if backend == "postgres" else 2)
    rows = store.responses.items(ident)
    assert [(i["id"], _texts([i])) for i in rows] == [("msg_in1", ["q1"]), ("msg_out1", ["a1"])]
    assert _texts(store.responses.items(ident, kind="output")) == ["a1"]
    assert _texts(store.responses.items(ident, kind="input")) == ["q1"]
    with sent_statements(store) as statements:
        bare = store.responses.create(model="m", input_items=[])
    assert not [s for s in statements if "response_items" in s.lower().split("(")[0]]
    assert store.responses.items(bare.id) == []


@pytest.mark.parametrize(
    "instructions",
    [
        "be brief",
        "42",  # a string that is JSON text itself stays a string, on every driver
        "null",
        '"quoted"',
        "{}",
        None,
        [{"type": "message", "role": "developer", "content": "x"}],
    ],
)
async def test_a_response_is_read_in_one_look_with_every_field(
    store: Store, instructions: Any
) -> None:
    """``get`` and ``retrieve`` (the response and its output items, what the service's
    retrieve answers) read through the statements of the async path: every field as the
    write returned it, sync and async; NotFound for a missing, expired or other tenant's
    response."""
    created = store.responses.create(
        model="m",
        input_items=[_msg("msg_a", "hi")],
        instructions=instructions,
        background=True,
        params={"metadata": {"k": "v"}, "temperature": 0.5},
    )
    assert store.responses.get(created.id) == created
    ended = store.responses.finish(
        created.id,
        status="completed",
        output_items=[_msg("msg_b", "yo", "assistant"), _msg("msg_c", "!", "assistant")],
        usage={"input_tokens": 1, "output_tokens": 2},
        cost_usd=Decimal("0.0012"),
    )
    assert ended is not None
    want = (ended, store.responses.items(created.id, kind="output"))
    assert _texts(want[1]) == ["yo", "!"]
    astore = AsyncStore(store)
    for got in (
        store.responses.retrieve(created.id),
        await astore.responses.retrieve(created.id),
        (await astore.responses.get(created.id), want[1]),
    ):
        assert got == want
        assert got[0].instructions == instructions and type(got[0].instructions) is type(
            instructions
        )
        assert got[0].background is True  # a bool, not SQLite's 1
    gone = store.responses.create(model="m", input_items=[], ttl_seconds=1e-6)
    mine = _turn(store, 1)
    for call, ident in [
        (lambda: store.responses.retrieve("resp_missing"), "resp_missing"),
        (lambda: store.responses.retrieve(gone.id), gone.id),
        (lambda: store.responses.get(gone.id), gone.id),
        (lambda: store.tenant("other").responses.retrieve(mine), mine),
    ]:
        with pytest.raises(NotFound) as caught:
            call()
        assert (caught.value.kind, caught.value.ident) == ("response", ident)
    with pytest.raises(InvalidInput) as bad:
        store.responses.retrieve("")
    assert bad.value.field == "response_id"


def test_context_follows_the_chain_and_forks(store: Store) -> None:
    first = _turn(store, 1)
    second = _turn(store, 2, first)
    third = _turn(store, 3, second)
    fork = _turn(store, 4, first)
    assert _texts(store.responses.context(third)) == ["q1", "a1", "q2", "a2", "q3", "a3"]
    assert _texts(store.responses.context(fork)) == ["q1", "a1", "q4", "a4"]
    store.responses.delete(first)  # an earlier link gone: the chain ends there
    assert _texts(store.responses.context(third)) == ["q2", "a2", "q3", "a3"]
    assert set(store.responses.find_items(["msg_in2", "msg_out3", "msg_in1"])) == {
        "msg_in2",
        "msg_out3",
    }


def test_input_items_page_in_order(store: Store) -> None:
    items = [_msg(f"msg_{i:02d}", str(i)) for i in range(5)]
    response = store.responses.create(model="m", input_items=items)
    page = store.responses.list_items(response.id, limit=2, order="asc")
    assert [i["id"] for i in page] == ["msg_00", "msg_01"] and page.has_more
    page = store.responses.list_items(response.id, limit=2, order="asc", after=page.last_id)
    assert [i["id"] for i in page] == ["msg_02", "msg_03"]
    newest = store.responses.list_items(response.id, limit=10)
    assert [i["id"] for i in newest] == [f"msg_{i:02d}" for i in range(4, -1, -1)]


def test_events_resume_after_a_sequence_number(store: Store) -> None:
    response = store.responses.create(model="m", input_items=[])
    events = [{"type": f"response.e{i}", "sequence_number": i} for i in range(4)]
    store.responses.append_events(response.id, events[:2])
    store.responses.append_events(response.id, events[2:])
    assert [e.data for e in store.responses.events(response.id)] == events
    assert [e.sequence_number for e in store.responses.events(response.id, after=1)] == [2, 3]
    with pytest.raises(InvalidInput) as bad:
        store.responses.append_events(response.id, [{"type": "x"}])
    assert bad.value.field == "events[0].sequence_number"


async def test_events_read_back_as_written_sync_and_async(store: Store) -> None:
    """``events`` reads through the statements of the async path: each event's data as it
    was written (nested, unicode, numbers), in order, after ``after``, at most ``limit``;
    NotFound for a missing, expired or other tenant's response; bad arguments name their
    field."""
    response = store.responses.create(model="m", input_items=[])
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {"id": response.id}},
        {"type": "response.output_text.delta", "sequence_number": 1, "delta": 'é\n"x" 1'},
        {"type": "response.done", "sequence_number": 2, "n": [1, 2.5, None, True, {"k": {}}]},
    ]
    store.responses.append_events(response.id, events)
    astore = AsyncStore(store)
    for read in (
        store.responses.events(response.id),
        await astore.responses.events(response.id),
    ):
        assert [e.data for e in read] == events
        assert [(e.response_id, e.sequence_number, e.type) for e in read] == [
            (response.id, i, event["type"]) for i, event in enumerate(events)
        ]
        assert all(e.created_at.tzinfo is not None for e in read)
    assert [e.sequence_number for e in store.responses.events(response.id, after=0, limit=1)] == [1]
    assert await astore.responses.events(response.id, after=2) == []
    gone = store.responses.create(model="m", input_items=[], ttl_seconds=1e-6)
    for call, ident in [
        (lambda: store.responses.events("resp_missing"), "resp_missing"),
        (lambda: store.responses.events(gone.id), gone.id),
        (lambda: store.tenant("other").responses.events(response.id), response.id),
    ]:
        with pytest.raises(NotFound) as caught:
            call()
        assert (caught.value.kind, caught.value.ident) == ("response", ident)
    for kwargs, field in [({"after": "1"}, "starting_after"), ({"limit": -1}, "limit")]:
        with pytest.raises(InvalidInput) as bad:
            store.responses.events(response.id, **kwargs)
        assert bad.value.field == field


def test_create_and_finish_store_their_events_in_the_same_write(store: Store) -> None:
    first = [{"type": "response.created", "sequence_number": 0}]
    response = store.responses.create(model="m", input_items=[], events=first)
    assert [e.data for e in store.responses.events(response.id)] == first

    seen: list[Any] = []

    def last(ended: Any) -> list[dict[str, Any]]:
        seen.append(ended)
        return [{"type": "response.completed", "sequence_number": 1, "response": ended.id}]

    ended = store.responses.finish(response.id, status="completed", events=last)
    assert ended is not None and seen == [ended] and ended.status == "completed"
    assert [e.type for e in store.responses.events(response.id)] == [
        "response.created",
        "response.completed",
    ]
    # Ended already: nothing written, and the events are not asked for.
    assert store.responses.finish(response.id, status="failed", events=last) is None
    assert len(seen) == 1 and len(store.responses.events(response.id)) == 2


def test_bad_events_leave_nothing_of_the_response(store: Store) -> None:
    with pytest.raises(InvalidInput) as bad:
        store.responses.create(model="m", input_items=[], id="resp_bad", events=[{"type": "x"}])
    assert bad.value.field == "events[0].sequence_number"
    with pytest.raises(NotFound):
        store.responses.get("resp_bad")
    response = store.responses.create(model="m", input_items=[])
    with pytest.raises(InvalidInput):
        store.responses.finish(response.id, status="completed", events=lambda _: [{"x": 1}])
    assert store.responses.get(response.id).status == "in_progress"  # the finish rolled back


def test_events_of_several_responses_in_one_write(store: Store) -> None:
    a = store.responses.create(model="m", input_items=[])
    b = store.responses.create(model="m", input_items=[])
    event = {"type": "response.e0", "sequence_number": 0}
    store.responses.append_events_many(
        {a.id: [event], b.id: [event, {**event, "sequence_number": 1}]}
    )
    assert len(store.responses.events(a.id)) == 1 and len(store.responses.events(b.id)) == 2
    store.responses.delete(a.id)
    c = store.responses.create(model="m", input_items=[])
    with pytest.raises(NotFound) as gone:  # all or nothing: c gets nothing either
        store.responses.append_events_many({c.id: [event], a.id: [event]})
    assert a.id in str(gone.value)
    assert store.responses.events(c.id) == []


def test_a_response_created_by_a_worker_is_failed_with_it(store: Store) -> None:
    """A foreground response stored as it runs names its process's worker: failed when
    that worker is gone, left alone for another's; a bad worker id names the field."""
    mine = store.responses.create(model="m", input_items=[], worker_id="w1")
    theirs = store.responses.create(model="m", input_items=[], worker_id="w2")
    assert mine.worker_id == "w1" and store.responses.get(mine.id).worker_id == "w1"
    assert store.responses.fail_abandoned(["w1"], "worker gone") == 1
    assert store.responses.get(mine.id).status == "failed"
    assert store.responses.get(theirs.id).status == "in_progress"
    with pytest.raises(InvalidInput) as bad:
        store.responses.create(model="m", input_items=[], worker_id="w" * 129)
    assert bad.value.field == "worker_id"


def test_status_queue_and_abandoned(store: Store) -> None:
    queued = store.responses.create(model="m", input_items=[], status="queued", background=True)
    claimed = store.tenant("other").responses.claim_next_any_tenant("w1")
    assert claimed is not None and claimed.id == queued.id and claimed.status == "in_progress"
    assert store.responses.claim_next_any_tenant("w2") is None
    assert store.responses.fail_abandoned(["w1"], "worker gone") == 1
    failed = store.responses.get(queued.id)
    assert failed.status == "failed" and failed.error == {
        "code": "server_error",
        "message": "worker gone",
    }
    assert store.responses.set_status(queued.id, "cancelled").status == "failed"  # ended: unchanged
    other = store.responses.create(model="m", input_items=[], status="queued", background=True)
    assert store.responses.set_status(other.id, "cancelled").status == "cancelled"


def _ends(ended: Any, output: list[dict[str, Any]], number: int) -> list[dict[str, Any]]:
    return [
        {
            "type": f"end.{ended.status}",
            "sequence_number": number,
            "tenant": ended.tenant_id,
            "output": [i["id"] for i in output],
            "error": ended.error,
        }
    ]


def test_an_end_outside_the_run_stores_its_last_event_and_drops_later_ones(store: Store) -> None:
    """A cancel or a sweep stores the response's last event numbered after its last one, in
    the same write; events its run stores later (a batch in flight) are dropped, not a
    Conflict on the numbers they share."""
    worker = f"w-{uuid.uuid4().hex}"
    other = store.tenant(store.tenant_id + "_b")
    started = [{"type": "e", "sequence_number": n} for n in range(2)]
    a = store.responses.create(
        model="m",
        input_items=[],
        output_items=[_msg("msg_part", "half", "assistant")],
        status="queued",
        background=True,
        events=started,
    )
    b = other.responses.create(model="m", input_items=[], status="queued", background=True)
    mine = {a.id, b.id}
    for _ in range(100):  # the queue is every tenant's: claim until both of these are running
        claimed = store.responses.claim_next_any_tenant(worker)
        mine.discard(claimed.id if claimed is not None else "")
        if not mine:
            break
    assert not mine
    assert store.responses.fail_abandoned([worker], "worker gone", events=_ends) >= 2
    [ended_a] = [e.data for e in store.responses.events(a.id, after=1)]
    assert ended_a == {
        "type": "end.failed",
        "sequence_number": 2,
        "tenant": store.tenant_id,
        "output": ["msg_part"],
        "error": {"code": "server_error", "message": "worker gone"},
    }
    assert [(e.sequence_number, e.data["tenant"]) for e in other.responses.events(b.id)] == [
        (0, other.tenant_id)
    ]
    late = [{"type": "late", "sequence_number": n} for n in (2, 3)]
    store.responses.append_events(a.id, late)  # the dead run's batch: dropped
    assert [e.type for e in store.responses.events(a.id)] == ["e", "e", "end.failed"]

    c = store.responses.create(
        model="m", input_items=[], status="queued", background=True, events=started[:1]
    )
    cancelled = store.responses.set_status(c.id, "cancelled", events=_ends)
    assert cancelled.status == "cancelled"
    d = store.responses.create(model="m", input_items=[], status="queued", background=True)
    store.responses.append_events_many({c.id: late[:1], d.id: late})  # c's dropped, not d's
    assert [e.type for e in store.responses.events(d.id)] == ["late", "late"]
    other.responses.append_events(b.id, late)  # failed by the sweep: dropped
    assert [(e.sequence_number, e.type) for e in store.responses.events(c.id)] == [
        (0, "e"),
        (1, "end.cancelled"),
    ]
    assert len(other.responses.events(b.id)) == 1
    # Already ended: unchanged, and no second last event.
    assert store.responses.set_status(c.id, "failed", events=_ends).status == "cancelled"
    assert len(store.responses.events(c.id)) == 2


def test_expired_responses_vanish_and_are_purged(store: Store) -> None:
    gone = store.responses.create(
        model="m", input_items=[_msg("msg_x", "x")], status="in_progress", ttl_seconds=1e-6
    )
    kept = _turn(store, 1)
    with pytest.raises(NotFound):
        store.responses.get(gone.id)
    with pytest.raises(NotFound):  # nor can it be ended: nothing of it is written
        store.responses.finish(
            gone.id,
            status="completed",
            output_items=[_msg("msg_y", "y")],
            events=lambda ended: [{"type": "response.completed", "sequence_number": 0}],
        )
    with store._core.engine.connect() as conn:
        of_gone = (responses.c.tenant_id == store.tenant_id, responses.c.id == gone.id)
        assert conn.execute(sa.select(responses.c.status).where(*of_gone)).scalar_one() == (
            "in_progress"
        )
        for table in (response_items, response_events):
            mine = (table.c.tenant_id == store.tenant_id, table.c.response_id == gone.id)
            count = sa.select(sa.func.count()).select_from(table).where(*mine)
            assert conn.execute(count).scalar_one() == (1 if table is response_items else 0)
    assert store.responses.purge_expired() == 1
    assert store.responses.get(kept).id == kept
    later = datetime.now(UTC) + timedelta(days=31)
    assert store.tenant("other").responses.purge_expired(all_tenants=True, now=later) >= 1
    with pytest.raises(NotFound):
        store.responses.get(kept)


def test_bad_input_names_the_field(store: Store) -> None:
    with pytest.raises(InvalidInput) as bad:
        store.responses.create(model="m", input_items=[{"type": "message"}])
    assert bad.value.field == "input_items[0].id"
    with pytest.raises(InvalidInput) as status:
        store.responses.create(model="m", input_items=[], status="done")
    assert status.value.field == "status"
    for ttl in (0, -1, float("nan"), float("inf"), 1e300, True, "60"):
        with pytest.raises(InvalidInput) as bad_ttl:
            store.responses.create(model="m", input_items=[], ttl_seconds=ttl)  # type: ignore[arg-type]
        assert bad_ttl.value.field == "ttl_seconds", ttl
    with pytest.raises(NotFound):
        store.responses.context("resp_missing")


def test_tenants_are_apart(store: Store) -> None:
    mine = _turn(store, 1)
    with pytest.raises(NotFound):
        store.tenant("other").responses.get(mine)
    assert store.tenant("other").responses.find_items(["msg_in1"]) == {}


def test_events_of_a_deleted_or_unknown_response_are_not_found(store: Store) -> None:
    """A writer still streaming a response someone deleted gets NotFound, nothing stored."""
    response = _turn(store, 1)
    event = {"type": "response.e0", "sequence_number": 0}
    store.responses.delete(response)
    for ident in (response, "resp_never"):
        with pytest.raises(NotFound):
            store.responses.append_events(ident, [event])
    mine = _turn(store, 2)
    with pytest.raises(NotFound):  # another tenant's response is not there either
        store.tenant("other").responses.append_events(mine, [event])
    assert store.responses.events(mine) == []


async def test_async_twin(astore: AsyncStore) -> None:
    response = await astore.responses.create(model="m", input_items=[_msg("msg_a", "hi")])
    assert (await astore.responses.get(response.id)).id == response.id
    assert _texts(await astore.responses.context(response.id)) == ["hi"]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_every_page_of_a_responses_items_is_its_slice_sync_and_async(
    store: Store, order: str
) -> None:
    """``list_items`` is one compiled read on the driver (the async API's without a
    thread), in item order, not id order: every page past ``after``, before ``before`` and
    between both is the right slice of the input items (the output ones apart)."""
    ids = [f"msg_{9 - i}" for i in range(6)]  # ids that sort against the items' order
    items = [_msg(ident, f'say "{i}"\n é') for i, ident in enumerate(ids)]
    response = store.responses.create(
        model="m", input_items=items, output_items=[_msg("msg_out", "a", "assistant")]
    )
    other = store.responses.create(model="m", input_items=[_msg("msg_other", "x")])
    listing = ids if order == "asc" else ids[::-1]
    astore = AsyncStore(store)
    for page in (
        store.responses.list_items(response.id, order=order),
        await astore.responses.list_items(response.id, order=order),
    ):
        assert [i["id"] for i in page] == listing and not page.has_more
        assert page.items[0] == items[ids.index(listing[0])]
    assert [i["id"] for i in store.responses.list_items(response.id, kind="output")] == ["msg_out"]
    check_every_page(
        listing,
        2,
        lambda a, b: store.responses.list_items(
            response.id, order=order, limit=2, after=a, before=b
        ),
    )
    # A cursor of another response's item stands at that item's (position, id): msg_other
    # is at position 0, where msg_9 (a smaller id) is this response's first item.
    past = store.responses.list_items(response.id, order=order, after="msg_other")
    assert [i["id"] for i in past] == (ids[1:] if order == "asc" else ["msg_9"])
    for field in ("after", "before"):
        with pytest.raises(InvalidInput) as bad:
            await astore.responses.list_items(response.id, **{field: "msg_missing"})
        assert bad.value.field == field
    with pytest.raises(InvalidInput) as bad:
        store.responses.list_items(response.id, kind="both")
    assert bad.value.field == "kind"
    store.responses.delete(other.id)
    for missing in ("resp_missing", other.id):
        with pytest.raises(NotFound):
            await astore.responses.list_items(missing)


async def test_a_chains_items_are_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Responses request with ``previous_response_id`` reads: the chain's items
    and a response's own, each one read (the response's expiry, then one statement), the
    sync API's answers, no worker thread; an expired link ends the chain."""
    first = _turn(store, 1)
    second = _turn(store, 2, first)
    third = _turn(store, 3, second)
    no_worker_threads(monkeypatch, "responses.context")
    with sent_statements(store) as sent:
        chain = await astore.responses.context(third)
    assert len(work(sent)) == 2, work(sent)
    assert (
        _texts(chain)
        == ["q1", "a1", "q2", "a2", "q3", "a3"]
        == _texts(store.responses.context(third))
    )
    assert _texts(await astore.responses.items(second)) == ["q2", "a2"]
    assert _texts(await astore.responses.items(second, kind="output")) == ["a2"]
    with store._core.write() as conn:  # the first link expires
        conn.execute(
            sa.update(responses)
            .where(responses.c.tenant_id == store.tenant_id, responses.c.id == first)
            .values(expires_at=1)
        )
    assert _texts(await astore.responses.context(third)) == ["q2", "a2", "q3", "a3"]
    with pytest.raises(NotFound):
        await astore.responses.context(first)
    with pytest.raises(NotFound):
        await astore.responses.items(first)
    with pytest.raises(InvalidInput) as bad:
        await astore.responses.items(second, kind="both")
    assert bad.value.field == "kind"


async def test_a_response_is_deleted_in_one_transaction_on_the_async_connections(
    store: Store, astore: AsyncStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``responses.delete``: the row taken, then its events, items and row deleted, in one
    transaction (BEGIN ... COMMIT on PostgreSQL's autocommit connections), no worker
    thread; a later response of the chain keeps its own items; gone or expired: NotFound."""
    first = _turn(store, 1)
    second = _turn(store, 2, first)
    store.responses.append_events(first, [{"type": "response.created", "sequence_number": 0}])
    no_worker_threads(monkeypatch, "responses.delete")
    with sent_statements(store) as sent:
        await astore.responses.delete(first)
    verbs = [v for s in sent if (v := s.split(None, 1)[0].upper()) != "SET"]
    # (SQLite's trace may report a statement again as it runs its foreign keys' actions)
    deletes = [s.split()[2] for s in sent if s.upper().startswith("DELETE")]
    assert sorted(set(deletes)) == ["response_events", "response_items", "responses"], sent
    if backend == "postgres":
        assert (verbs[0], verbs[-1]) == ("BEGIN", "COMMIT") and "FOR UPDATE" in sent[-5], sent
    with store._core.engine.connect() as conn:
        for table in (responses, response_items, response_events):
            column = table.c.id if table is responses else table.c.response_id
            left = conn.execute(sa.select(sa.func.count()).where(column == first)).scalar()
            assert left == 0, table.name
    assert _texts(await astore.responses.items(second)) == ["q2", "a2"]
    with pytest.raises(NotFound):
        await astore.responses.delete(first)
    with store._core.write() as conn:  # the second expires
        conn.execute(
            sa.update(responses)
            .where(responses.c.tenant_id == store.tenant_id, responses.c.id == second)
            .values(expires_at=1)
        )
    with pytest.raises(NotFound):
        await astore.responses.delete(second)
    with pytest.raises(InvalidInput) as bad:
        await astore.responses.delete("")
    assert bad.value.field == "response_id"


async def test_a_responses_writes_run_on_the_async_connections(
    store: Store, astore: AsyncStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Responses API writes, awaited with no worker thread: a response stored with
    its first events, events of one and of several responses, its end with its last events,
    a cancel, the sweeps of abandoned and expired responses; each one transaction, read
    back as the sync API reads it. On PostgreSQL the notice of the events rides in a
    statement the write sends anyway: no ``pg_notify`` round trip of its own."""
    worker = f"w-{uuid.uuid4().hex}"
    no_worker_threads(monkeypatch, "the responses' writes")
    first = [{"type": "response.created", "sequence_number": 0}]
    with sent_statements(store) as sent:
        created = await astore.responses.create(
            model="m", input_items=[_msg("msg_q", "q")], events=first, worker_id=worker
        )
    if backend == "postgres":
        sent = [s for s in sent if not s.upper().startswith("SET ")]  # a new connection's
        assert [s.split(None, 1)[0].upper() for s in sent] == [
            "BEGIN",
            "INSERT",
            "INSERT",
            "INSERT",
            "COMMIT",
        ], sent
        assert "pg_notify" in sent[1] and not any("pg_notify" in s for s in sent[2:]), sent
    assert store.responses.get(created.id) == created
    other = await astore.responses.create(model="m", input_items=[], worker_id=worker)
    await astore.responses.append_events(created.id, [{"type": "delta", "sequence_number": 1}])
    with sent_statements(store) as sent:
        await astore.responses.append_events_many(
            {
                created.id: [{"type": "delta", "sequence_number": 2}],
                other.id: [{"type": "response.created", "sequence_number": 0}],
            }
        )
    if backend == "postgres":
        sent = [s for s in sent if not s.upper().startswith("SET ")]
        assert [s.split(None, 1)[0].upper() for s in sent] == [
            "BEGIN",
            "SELECT",
            "INSERT",
            "COMMIT",
        ], sent
        assert "FOR KEY SHARE" in sent[1] and "pg_notify" in sent[1], sent
    with pytest.raises(NotFound):  # all or nothing
        await astore.responses.append_events_many(
            {
                created.id: [{"type": "delta", "sequence_number": 3}],
                "resp_missing": [{"type": "delta", "sequence_number": 0}],
            }
        )

    def last(ended: Any) -> list[dict[str, Any]]:
        return [{"type": "response.completed", "sequence_number": 3, "status": ended.status}]

    ended = await astore.responses.finish(
        created.id,
        status="completed",
        output_items=[_msg("msg_a", "a", "assistant")],
        usage={"input_tokens": 2},
        cost_usd=Decimal("0.5"),
        events=last,
        end_events=_ends,
    )
    assert ended is not None and ended == store.responses.get(created.id)
    assert ended.usage == {"input_tokens": 2} and ended.cost_usd == Decimal("0.5")
    assert ended.error is None and ended.completed_at is not None
    assert _texts(store.responses.items(created.id)) == ["q", "a"]
    events = store.responses.events(created.id)
    assert [(e.sequence_number, e.type) for e in events] == [
        (0, "response.created"),
        (1, "delta"),
        (2, "delta"),
        (3, "response.completed"),
        (4, "end.completed"),
    ]
    assert events[3].data["status"] == "completed" and events[4].data["output"] == ["msg_a"]
    assert await astore.responses.finish(created.id, status="failed") is None  # ended already
    assert (await astore.responses.set_status(created.id, "cancelled")).status == "completed"
    cancelled = await astore.responses.set_status(other.id, "cancelled", events=_ends)
    assert cancelled.status == "cancelled" == store.responses.get(other.id).status
    assert [e.type for e in store.responses.events(other.id)] == [
        "response.created",
        "end.cancelled",
    ]
    abandoned = await astore.responses.create(model="m", input_items=[], worker_id=worker)
    assert await astore.responses.fail_abandoned([worker], "gone", events=_ends) == 1
    failed = store.responses.get(abandoned.id)
    assert failed.status == "failed" and failed.error == {"code": "server_error", "message": "gone"}
    assert [e.data["error"] for e in store.responses.events(abandoned.id)] == [failed.error]
    assert await astore.responses.fail_abandoned([worker], "gone") == 0
    with pytest.raises(NotFound):
        await astore.responses.finish("resp_missing", status="completed")
    later = datetime.now(UTC) + timedelta(days=31)
    assert await astore.responses.purge_expired(now=later) == 3
    for gone in (created, other, abandoned):
        with pytest.raises(NotFound):
            store.responses.get(gone.id)
    with store._core.engine.connect() as conn:
        for table in (responses, response_items, response_events):
            column = table.c.id if table is responses else table.c.response_id
            ids = [created.id, other.id, abandoned.id]
            assert conn.execute(sa.select(sa.func.count()).where(column.in_(ids))).scalar() == 0
    assert await astore.responses.purge_expired(now=later) == 0


async def test_a_queued_response_is_claimed_on_the_async_connections(
    own_db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background worker's claim, awaited with no worker thread: the oldest queued
    response of any tenant, then none."""
    store = own_db.tenant(f"t_{uuid.uuid4().hex[:8]}")
    astore = AsyncStore(store)
    queued = store.responses.create(model="m", input_items=[], status="queued", background=True)
    no_worker_threads(monkeypatch, "responses.claim_next_any_tenant")
    claimed = await AsyncStore(own_db.tenant("other")).responses.claim_next_any_tenant("w1")
    assert claimed is not None and claimed.id == queued.id and claimed.tenant_id == store.tenant_id
    assert claimed.status == "in_progress" and claimed.worker_id == "w1"
    assert claimed == store.responses.get(queued.id)
    assert await astore.responses.claim_next_any_tenant("w2") is None


def test_a_cancel_racing_a_batch_of_events_numbers_its_end_after_it(store: Store) -> None:
    """A background response is cancelled while its run stores a batch of events (the row
    held FOR KEY SHARE until that commits): the cancel waits for the batch and numbers its
    last event after it. It took the row FOR NO KEY UPDATE, which does not wait for a
    KEY SHARE: both wrote the same sequence number, and the cancel failed on the key."""
    queued = store.responses.create(
        model="m",
        input_items=[],
        status="queued",
        background=True,
        events=[{"type": "e", "sequence_number": n} for n in (0, 1)],
    )
    batch_in = threading.Event()
    release = threading.Event()
    done: list[Any] = []

    def run_batch() -> None:  # the run's flush: stored, held open, then committed
        with store.transaction():
            store.responses.append_events(queued.id, [{"type": "delta", "sequence_number": 2}])
            batch_in.set()
            release.wait(WAIT_S)

    def cancel() -> None:
        try:
            done.append(store.responses.set_status(queued.id, "cancelled", events=_ends))
        except Exception as exc:
            done.append(exc)

    batch = threading.Thread(target=run_batch)
    batch.start()
    assert batch_in.wait(WAIT_S)
    canceller = threading.Thread(target=cancel)
    canceller.start()
    until_it_waits(store, canceller, lambda: bool(done), "the cancel")
    release.set()
    batch.join(WAIT_S)
    canceller.join(WAIT_S)
    assert len(done) == 1 and not isinstance(done[0], Exception), done
    assert done[0].status == "cancelled"
    assert [(e.sequence_number, e.type) for e in store.responses.events(queued.id)] == [
        (0, "e"),
        (1, "e"),
        (2, "delta"),
        (3, "end.cancelled"),
    ]
