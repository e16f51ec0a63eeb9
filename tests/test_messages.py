"""Messages: gapless seq, idempotency, content blocks, filters, recent."""

from __future__ import annotations

from typing import Any

import pytest
from _errors import check_in_session_not_found, check_not_found
from _statements import sent_statements, verbs, work
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, NewMessage, NotFound, Store


def test_append_assigns_gapless_seq(store: Store) -> None:
    s = store.sessions.create()
    seqs = [
        store.messages.append(s.id, "user" if i % 2 else "assistant", f"m{i}").seq
        for i in range(10)
    ]
    assert seqs == list(range(1, 11))
    sess = store.sessions.get(s.id)
    assert (sess.message_count, sess.last_seq) == (10, 10)


def test_idempotency_key_returns_stored_message(store: Store) -> None:
    s = store.sessions.create()
    first = store.messages.append(s.id, "user", "once", idempotency_key="abc")
    again = store.messages.append(s.id, "user", "twice?", idempotency_key="abc")
    assert again == first
    assert store.sessions.get(s.id).message_count == 1


def test_content_blocks_are_checked_before_writing(store: Store) -> None:
    s = store.sessions.create()
    with pytest.raises(InvalidInput) as err:
        store.messages.append(s.id, "user", [{"type": "text", "text": "ok"}, {"type": "nope"}])
    assert err.value.field == "content[1].type"
    with pytest.raises(InvalidInput) as err:
        store.messages.append(s.id, "wizard", "hi")
    assert err.value.field == "role"
    with pytest.raises(InvalidInput) as err:
        store.messages.append_many(
            s.id, [NewMessage(role="user", content="a"), {"role": "user", "content": 5}]
        )
    assert err.value.field == "messages[1].content"
    assert store.sessions.get(s.id).message_count == 0


def test_values_that_are_not_json_are_refused_naming_their_field(store: Store) -> None:
    s = store.sessions.create()
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    cases: list[tuple[dict[str, object], str]] = [
        ({"extra": {"at": {1, 2}}}, "extra"),
        ({"extra": {"score": float("nan")}}, "extra"),
        ({"extra": cyclic}, "extra"),
        ({"extra": {"note": "a\x00b"}}, "extra"),  # PostgreSQL's jsonb refuses NUL
        ({"content": [{"type": "text", "text": "x", "tags": {"a"}}]}, "content"),
        # The encoder writes 1 as "1": it would read back as another object.
        ({"extra": {"by_turn": {1: "a"}}}, "extra"),
        ({"content": [{"type": "text", "text": "x", 2: "y"}]}, "content"),
    ]
    for given, field in cases:
        item = {"role": "user", "content": "x", **given}
        with pytest.raises(InvalidInput) as err:
            store.messages.append(s.id, **item)  # type: ignore[arg-type]
        assert err.value.field == field, given
        with pytest.raises(InvalidInput) as err:
            store.messages.append_many(s.id, [{"role": "user", "content": "ok"}, item])
        assert err.value.field == f"messages[1].{field}", given
        with pytest.raises(InvalidInput) as err:
            store.messages.extend(s.id, [{"role": "user", "content": "ok"}, item])
        assert err.value.field == f"messages[1].{field}", given
    assert store.sessions.get(s.id).message_count == 0


def test_append_to_missing_session_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.messages.append("sess_missing", "user", "hi")


def test_filters_by_role_content_type_and_run(store: Store) -> None:
    s = store.sessions.create()
    store.messages.append(s.id, "user", "question")
    call = store.messages.append(
        s.id,
        "assistant",
        [{"type": "tool_use", "id": "c1", "name": "search", "input": {}}],
        run_id="run_1",
    )
    store.messages.append(
        s.id, "tool", [{"type": "tool_result", "tool_use_id": "c1", "content": "r"}]
    )
    assert [m.id for m in store.messages.list(s.id, role="assistant")] == [call.id]
    assert [m.id for m in store.messages.list(s.id, content_type="tool_use")] == [call.id]
    assert [m.id for m in store.messages.list(s.id, run_id="run_1")] == [call.id]
    assert [m.id for m in store.messages.list(role="assistant")] == [call.id]


def test_recent_returns_last_n_in_order(store: Store) -> None:
    s = store.sessions.create()
    store.messages.append_many(s.id, [NewMessage(role="user", content=f"m{i}") for i in range(30)])
    recent = store.messages.recent(s.id, 5)
    assert [m.seq for m in recent] == [26, 27, 28, 29, 30]
    assert store.messages.recent(store.sessions.create().id, 5) == []
    with pytest.raises(NotFound):
        store.messages.recent("sess_missing", 5)


def test_history_gives_the_last_n_as_chat_messages(store: Store) -> None:
    s = store.sessions.create()
    texts = ["hi", 'say "hi"', "back\\slash", "ünï 🚀\nline", '"}, {"type": "text", "text": "']
    store.messages.append_many(
        s.id,
        [{"role": "user" if i % 2 else "assistant", "content": t} for i, t in enumerate(texts)],
    )
    two = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    annotated = [{"type": "text", "text": "c", "annotations": []}]
    image = [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    store.messages.append(s.id, "assistant", two)
    store.messages.append(s.id, "assistant", annotated)
    store.messages.append(s.id, "user", image)
    store.messages.append(s.id, "tool", [{"type": "text", "text": "42"}])

    expected = [
        *({"role": "user" if i % 2 else "assistant", "content": t} for i, t in enumerate(texts)),
        {"role": "assistant", "content": two},
        {"role": "assistant", "content": annotated},
        {"role": "user", "content": image},
        {"role": "tool", "content": "42"},
    ]
    assert store.messages.history(s.id, 100) == expected
    assert store.messages.history(s.id, 3) == expected[-3:]
    assert store.messages.history(s.id) == expected  # n defaults to 20
    # The same through the transaction path (SQLAlchemy), and as recent() sees it.
    with store.transaction():
        assert store.messages.history(s.id, 100) == expected
    assert [m.role for m in store.messages.recent(s.id, 100)] == [m["role"] for m in expected]


def test_history_of_empty_missing_and_other_tenants_sessions(store: Store) -> None:
    s = store.sessions.create()
    assert store.messages.history(s.id) == []
    with pytest.raises(NotFound):
        store.messages.history("sess_missing")
    store.messages.append(s.id, "user", "mine")
    with pytest.raises(NotFound):
        store.tenant("someone_else").messages.history(s.id)
    for bad in (0, -1, 1001, "5", True):
        with pytest.raises(InvalidInput) as err:
            store.messages.history(s.id, bad)  # type: ignore[arg-type]
        assert err.value.field == "n"


def test_pagination_in_seq_order(store: Store) -> None:
    s = store.sessions.create()
    made = store.messages.append_many(s.id, [{"role": "user", "content": str(i)} for i in range(9)])
    page = store.messages.list(s.id, limit=4)
    got = [m.id for m in page]
    while page.has_more:
        page = store.messages.list(s.id, limit=4, after=page.last_id)
        got += [m.id for m in page]
    assert got == [m.id for m in made]
    desc = store.messages.list(s.id, limit=3, order="desc")
    assert [m.seq for m in desc] == [9, 8, 7]


def test_delete_and_update(store: Store) -> None:
    s = store.sessions.create()
    a = store.messages.append(s.id, "user", "a")
    b = store.messages.append(s.id, "user", "b")
    store.messages.update(a.id, metadata={"x": "1"})
    assert store.messages.get(a.id).metadata == {"x": "1"}
    store.messages.delete(a.id)
    assert [m.id for m in store.messages.list(s.id)] == [b.id]
    c = store.messages.append(s.id, "user", "c")
    assert c.seq == 3
    assert store.sessions.get(s.id).message_count == 2


def test_update_answers_with_the_message_as_stored(store: Store) -> None:
    s = store.sessions.create()
    a = store.messages.append(s.id, "assistant", [], extra={"status": "in_progress"})
    done = store.messages.update(a.id, content="all done", extra={"status": "completed"})
    assert done == store.messages.get(a.id)
    assert (done.seq, done.session_id, done.created_at) == (a.seq, s.id, a.created_at)
    assert store.messages.update(a.id) == done  # no change: the message as it is
    for changes in ({"content": "x"}, {}):
        with pytest.raises(NotFound):
            store.messages.update("msg_missing", **changes)


async def test_async_api_appends_and_reads(astore: AsyncStore) -> None:
    s = await astore.sessions.create()
    m = await astore.messages.append(s.id, "user", "hello")
    assert (await astore.messages.recent(s.id, 1))[0].id == m.id
    assert await astore.messages.history(s.id) == [{"role": "user", "content": "hello"}]
    with pytest.raises(NotFound):
        await astore.messages.get("msg_missing")


def _stored(store: Store, session_id: str) -> list[tuple[object, ...]]:
    found = store.messages.list(session_id=session_id, limit=500).items
    return [
        (m.seq, m.role, m.content, m.run_id, m.agent_id, m.idempotency_key, m.metadata, m.extra)
        for m in found
    ]


def test_extend_writes_what_append_many_writes(store: Store) -> None:
    """Every shape of message, in batches over the largest multi-row INSERT (128 rows)."""
    shapes = [
        {"role": "user", "content": "plain"},
        {"role": "assistant", "content": 'é \u2603 "quoted" \\ back', "extra": {"a": [1, 2.5]}},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "refusal", "refusal": "no"}],
        },
        {"role": "tool", "content": "out", "agent_id": "ag", "metadata": {"k": "v"}},
        {"role": "user", "content": "run", "run_id": "run_x", "extra": {"n": None}},
    ]
    batch = [
        {**shapes[i % len(shapes)], "idempotency_key": f"k{i}"}
        if i % 7 == 0
        else shapes[i % len(shapes)]
        for i in range(300)
    ]
    a, b = store.sessions.create(), store.sessions.create()
    store.messages.append_many(a.id, batch)
    assert store.messages.extend(b.id, batch) is None
    assert _stored(store, b.id) == _stored(store, a.id)
    store.messages.extend(b.id, [shapes[0]])  # one row, plain
    store.messages.extend(b.id, batch[7:8])  # its key is stored: nothing written
    assert store.sessions.get(b.id).message_count == 301
    assert _stored(store, b.id)[-1][:3] == (301, "user", [{"type": "text", "text": "plain"}])


def test_extend_checks_like_append_many(store: Store) -> None:
    s = store.sessions.create()
    with pytest.raises(InvalidInput) as err:
        store.messages.extend(
            s.id, [{"role": "user", "content": "a"}, {"role": "x", "content": "b"}]
        )
    assert err.value.field == "messages[1].role"
    with pytest.raises(InvalidInput) as err:
        store.messages.extend(s.id, [{"role": "user", "content": "a", "extra": [1]}])
    assert err.value.field == "messages[0].extra"
    with pytest.raises(NotFound):
        store.messages.extend("missing", [{"role": "user", "content": "a"}])
    store.messages.extend(s.id, [])
    assert store.sessions.get(s.id).message_count == 0


async def test_extend_async(store: Store) -> None:
    astore = AsyncStore(store)
    s = store.sessions.create()
    await astore.messages.extend(s.id, [{"role": "user", "content": str(i)} for i in range(3)])
    assert [m.seq for m in store.messages.recent(s.id, 5)] == [1, 2, 3]


async def test_a_message_of_a_session_is_read_in_one_look_with_every_field(store: Store) -> None:
    """``messages.get`` and ``messages.in_session`` read a message as its append returned it,
    every field (blocks, metadata, extra, run, agent, key) and the type of each kept, sync
    and async; ``in_session``'s NotFound names the session, then the message."""
    thread = store.sessions.create(kind="thread")
    other = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id)
    plain = store.messages.append(thread.id, "user", 'say "hi"\n é')
    rich = store.messages.append(
        thread.id,
        "assistant",
        [
            {"type": "text", "text": "42"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": [1, None, 1.5]}},
        ],
        run_id=run.id,
        agent_id="asst_x",
        idempotency_key="key-1",
        metadata={"k": "v"},
        extra={"nested": {"x": "null"}},
    )
    astore = AsyncStore(store)
    for message in (plain, rich):
        for got in (
            store.messages.get(message.id),
            store.messages.get(message.id, session_id=thread.id),
            await astore.messages.get(message.id),
            store.messages.in_session(message.id, thread.id),
            store.messages.in_session(message.id, thread.id, kind="thread"),
            await astore.messages.in_session(message.id, thread.id, kind="thread"),
        ):
            assert got == message
            assert got.model_dump() == message.model_dump()
            assert type(got.seq) is int and got.created_at.tzinfo is not None
    with pytest.raises(NotFound):
        store.messages.get(rich.id, session_id=other.id)
    check_in_session_not_found(store, "messages", "message", rich.id, thread.id, other.id)
    check_not_found(
        [
            (lambda: store.messages.get("msg_missing"), "message", "msg_missing"),
            (lambda: store.tenant("t_other").messages.get(rich.id), "message", rich.id),
        ]
    )
    with pytest.raises(InvalidInput) as bad:
        store.messages.in_session("", thread.id)
    assert bad.value.field == "message_id"


async def test_an_update_is_one_write_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread: the copies for the snapshots that cover the message and its
    UPDATE are one write (one statement on PostgreSQL, two on SQLite); the snapshot keeps
    the message as it was, the session its place."""
    s = store.sessions.create()
    made = store.messages.append_many(
        s.id, [{"role": "user", "content": f"m{i}"} for i in range(3)]
    )
    snapshot = store.snapshots.create(s.id)
    no_worker_threads(monkeypatch, "messages.update")
    with sent_statements(store) as sent:
        changed = await astore.messages.update(
            made[1].id, content="edited", metadata={"k": "v"}, extra={"x": [1]}
        )
    pg = store.url.startswith("postgresql")
    assert verbs(work(sent)) == (["WITH"] if pg else ["INSERT", "UPDATE"]), work(sent)
    assert (changed.text, changed.metadata, changed.extra, changed.seq) == (
        "edited",
        {"k": "v"},
        {"x": [1]},
        2,
    )
    assert await astore.messages.get(made[1].id) == changed
    assert [m.text for m in store.snapshots.messages(snapshot.id)] == ["m0", "m1", "m2"]
    again = await astore.messages.update(made[1].id, metadata={})
    assert (again.text, again.metadata) == ("edited", {})
    assert [m.text for m in store.snapshots.messages(snapshot.id)] == ["m0", "m1", "m2"]
    assert await astore.messages.update(made[0].id) == made[0]  # nothing to change: a read
    with pytest.raises(NotFound):
        await astore.messages.update("msg_missing", metadata={})
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    with pytest.raises(NotFound):
        await other.messages.update(made[1].id, content="theirs")
    assert store.messages.get(made[1].id) == again


async def test_a_filtered_listing_is_one_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``messages.list`` with filters: the sync API's pages, one statement each (and one
    that the session exists under an empty first page), no worker thread; a content type is matched as text (``%`` and ``_`` are no wildcards); a
    session that does not exist is NotFound."""
    s = store.sessions.create()
    other = store.sessions.create()
    run = store.runs.create("a", session_id=s.id)
    store.messages.append_many(
        s.id,
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
            {"role": "assistant", "content": "ok", "run_id": run.id, "agent_id": "a1"},
            {"role": "user", "content": "more"},
        ],
    )
    store.messages.append(other.id, "user", "elsewhere")
    no_worker_threads(monkeypatch, "messages.list")
    queries: list[dict[str, Any]] = [
        {"session_id": s.id, "role": "user"},
        {"session_id": s.id, "role": "assistant", "order": "desc", "limit": 1},
        {"session_id": s.id, "content_type": "image_url"},
        {"session_id": s.id, "content_type": "image%"},
        {"session_id": s.id, "content_type": "image_ur_"},
        {"role": "user"},
        {"agent_id": "a1"},
        {"session_id": s.id, "after_seq": 2},
        {"session_id": s.id, "role": "user", "limit": 1},
    ]
    for query in queries:
        with sent_statements(store) as sent:
            page = await astore.messages.list(**query)
        checked = not page.items and "session_id" in query  # an empty page: is there one
        assert len(work(sent)) == (2 if checked else 1), (query, work(sent))
        expected = store.messages.list(**query)
        assert (page.items, page.has_more) == (expected.items, expected.has_more), query
    assert [m.text for m in (await astore.messages.list(s.id, role="user")).items] == ["hi", "more"]
    assert (await astore.messages.list(s.id, content_type="image%")).items == []
    first = await astore.messages.list(s.id, role="user", limit=1)
    rest = await astore.messages.list(s.id, role="user", after=first.last_id)
    assert [m.text for m in rest.items] == ["more"] and not rest.has_more
    with pytest.raises(NotFound):
        await astore.messages.list("sess_missing", role="user")
