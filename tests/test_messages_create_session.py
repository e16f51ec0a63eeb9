"""``append_many`` / ``extend`` with ``create``: the session made by the first write, on
every backend, sync and async; what the framework integrations do on a conversation's
first turn."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _statements import sent_statements, verbs
from _threads import WAIT_S, in_threads, until_it_waits

from agentkeep import AsyncStore, Store
from agentkeep.errors import InvalidInput, NotFound

ROWS = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]


def test_a_missing_session_is_created_with_the_fields_given_and_appended_to(
    store: Store,
) -> None:
    fields = {"agent_id": "ag_1", "user_id": "u_1", "title": "T", "metadata": {"k": "v"}}
    written = store.messages.append_many("conv_new", ROWS, create=fields)
    assert [(m.seq, m.text) for m in written] == [(1, "hello"), (2, "hi")]
    session = store.sessions.get("conv_new")
    assert (session.kind, session.agent_id, session.user_id, session.title) == (
        "session",
        "ag_1",
        "u_1",
        "T",
    )
    assert session.metadata == {"k": "v"}
    assert (session.message_count, session.last_seq) == (2, 2)
    assert store.messages.recent("conv_new", 5) == written
    store.messages.extend("other_new", ROWS, create={"kind": "conversation"})
    assert store.sessions.get("other_new").kind == "conversation"
    assert [m.text for m in store.messages.recent("other_new", 5)] == ["hello", "hi"]


def test_an_existing_session_is_appended_to_and_left_as_it_is(store: Store) -> None:
    s = store.sessions.create(id="kept", agent_id="ag_old", title="old")
    store.messages.append(s.id, "user", "first")
    store.messages.extend(s.id, ROWS, create={"agent_id": "ag_new", "title": "new"})
    after = store.sessions.get(s.id)
    assert (after.agent_id, after.title, after.version, after.created_at) == (
        "ag_old",
        "old",
        s.version,
        s.created_at,
    )
    assert [m.seq for m in store.messages.recent(s.id, 5)] == [1, 2, 3]


def test_without_create_a_missing_session_is_still_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.messages.extend("nowhere", ROWS)
    with pytest.raises(NotFound):
        store.sessions.get("nowhere")


@pytest.mark.parametrize(
    ("session_id", "create", "field"),
    [
        ("ok_id", {"colour": "red"}, "create.colour"),
        ("ok_id", {"kind": "chat"}, "create.kind"),
        ("ok_id", {"kind": ["session"]}, "create.kind"),
        ("ok_id", {"metadata": {"k": 1}}, "create.metadata.k"),
        ("ok_id", {"agent_id": 7}, "create.agent_id"),
        ("ok_id", ["agent_id"], "create"),
        ("x" * 65, {}, "session_id"),
    ],
)
def test_bad_create_fields_are_named_and_nothing_is_written(
    store: Store, session_id: str, create: Any, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        store.messages.append_many(session_id, ROWS, create=create)
    assert raised.value.field == field
    with pytest.raises(NotFound):
        store.sessions.get("ok_id")


def test_with_no_messages_create_is_checked_and_nothing_is_written(store: Store) -> None:
    assert store.messages.append_many("empty_new", [], create={"user_id": "u"}) == []
    store.messages.extend("empty_new", [], create={})
    with pytest.raises(NotFound):
        store.sessions.get("empty_new")
    with pytest.raises(InvalidInput) as raised:
        store.messages.extend("empty_new", [], create={"title": 5})
    assert raised.value.field == "create.title"


def test_create_and_kind_are_not_given_together(store: Store) -> None:
    with pytest.raises(InvalidInput) as raised:
        store.messages.append_many("both", ROWS, kind="thread", create={})
    assert raised.value.field == "create"
    with pytest.raises(NotFound):
        store.sessions.get("both")


def test_the_first_write_of_a_session_is_one_write(store: Store, backend: str) -> None:
    """SQLite: the failed bump, the session's INSERT and the append in one
    ``BEGIN IMMEDIATE``. PostgreSQL (autocommit): the append that finds no session, the
    session's INSERT, the append again; no BEGIN. A session that exists: the plain
    append."""
    with sent_statements(store) as first:
        store.messages.extend("first_write", ROWS, create={})
    with sent_statements(store) as later:
        store.messages.extend("first_write", ROWS, create={})
    if backend == "postgres":
        assert verbs(first) == ["WITH", "INSERT", "WITH"]
        assert "INSERT INTO sessions" in first[1] and "ON CONFLICT DO NOTHING" in first[1]
        assert verbs(later) == ["WITH"]
    else:
        assert [s for s in first if s.startswith(("BEGIN", "COMMIT"))] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]
        assert verbs(first) == ["UPDATE", "INSERT", "UPDATE", "SELECT", "INSERT"]
        assert verbs(later) == ["UPDATE", "SELECT", "INSERT"]
    assert [m.seq for m in store.messages.recent("first_write", 10)] == [1, 2, 3, 4]


def test_inside_a_transaction_the_created_session_rolls_back_with_it(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.messages.extend("rolled_back", ROWS, create={})
        assert store.sessions.get("rolled_back").message_count == 2
        raise RuntimeError("undo")
    with pytest.raises(NotFound):
        store.sessions.get("rolled_back")


def test_concurrent_first_writes_make_one_session_with_every_message(store: Store) -> None:
    writers, each = 6, 5

    def write(w: int) -> None:
        for k in range(each):
            rows = [{"role": "user", "content": f"{w}-{k}"}]
            store.messages.extend("raced", rows, create={"user_id": f"u{w}"})

    in_threads(writers, write)
    messages = store.messages.recent("raced", 100)
    assert [m.seq for m in messages] == list(range(1, writers * each + 1))
    assert sorted(m.text for m in messages) == sorted(
        f"{w}-{k}" for w in range(writers) for k in range(each)
    )
    session = store.sessions.get("raced")
    assert session.message_count == writers * each
    assert session.user_id in {f"u{w}" for w in range(writers)}


async def test_the_async_api_creates_the_session_too(astore: AsyncStore) -> None:
    written = await astore.messages.append_many("async_new", ROWS, create={"user_id": "u"})
    assert [m.seq for m in written] == [1, 2]
    await astore.messages.extend("async_new", ROWS, create={"user_id": "other"})
    session = await astore.sessions.get("async_new")
    assert (session.user_id, session.message_count) == ("u", 4)
    with pytest.raises(InvalidInput) as raised:
        await astore.messages.extend("async_bad", ROWS, create={"kind": "nope"})
    assert raised.value.field == "create.kind"


def test_a_first_write_that_waits_for_another_creating_the_session_appends_to_it(
    store: Store,
) -> None:
    """A transaction creates the session and holds it; another first write finds no
    session (not committed yet), waits for the row (PostgreSQL) or the write lock
    (SQLite), then appends to the session the transaction committed, whose fields
    it keeps."""
    outcome: list[object] = []

    def second() -> None:
        try:
            rows = [{"role": "user", "content": "second"}]
            store.messages.extend("contended", rows, create={"user_id": "second"})
            outcome.append("appended")
        except BaseException as exc:
            outcome.append(exc)

    other = threading.Thread(target=second)
    with store.transaction():
        store.messages.extend("contended", [{"role": "user", "content": "first"}], create={})
        other.start()
        until_it_waits(store, other, lambda: bool(outcome), "the second write")
        assert not outcome, "the second write did not wait for the first"
    other.join(WAIT_S)
    assert outcome == ["appended"]
    assert [m.text for m in store.messages.recent("contended", 5)] == ["first", "second"]
    assert store.sessions.get("contended").user_id is None
