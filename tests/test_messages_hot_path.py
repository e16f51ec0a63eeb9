"""The driver-level hot path of messages keeps every guarantee of the SQLAlchemy path."""

from __future__ import annotations

import pickle

import psycopg
import pytest

from agentkeep import Store
from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.models import Message


def test_hot_path_and_transaction_path_agree(store: Store) -> None:
    s = store.sessions.create()
    a = store.messages.append(s.id, "user", "one", metadata={"k": "v"}, extra={"x": [1]})
    with store.transaction():
        b = store.messages.append(s.id, "assistant", [{"type": "text", "text": "two"}])
        many = store.messages.append_many(s.id, [{"role": "user", "content": "three"}])
        inside = store.messages.recent(s.id, 10)
    c = store.messages.append_many(
        s.id, [{"role": "user", "content": "four"}, {"role": "tool", "content": "five"}]
    )
    assert [m.seq for m in (a, b, *many, *c)] == [1, 2, 3, 4, 5]
    recent = store.messages.recent(s.id, 10)
    assert [m.seq for m in inside] == [1, 2, 3]
    assert [m.text for m in recent] == ["one", "two", "three", "four", "five"]
    assert recent[0] == a
    assert recent[0] == store.messages.get(a.id)
    assert recent[0].metadata == {"k": "v"} and recent[0].extra == {"x": [1]}
    assert recent[0].created_at == a.created_at
    assert store.sessions.get(s.id).message_count == 5
    assert store.sessions.get(s.id).last_seq == 5


def test_built_messages_are_ordinary_models(store: Store) -> None:
    s = store.sessions.create()
    m = store.messages.append(s.id, "user", "hi")
    same = Message.model_construct(**m.model_dump())
    assert m == same
    assert m.model_fields_set == same.model_fields_set
    assert pickle.loads(pickle.dumps(m)) == m
    assert Message.model_validate(m.model_dump()) == m
    got = store.messages.recent(s.id)[0]
    assert got.model_dump() == m.model_dump()


def test_tenants_do_not_see_each_other_on_the_hot_path(store: Store) -> None:
    s = store.sessions.create()
    store.messages.append(s.id, "user", "mine")
    other = store.tenant(store.tenant_id + "_other")
    with pytest.raises(NotFound):
        other.messages.append(s.id, "user", "theirs")
    with pytest.raises(NotFound):
        other.messages.append_many(s.id, [{"role": "user", "content": "theirs"}])
    with pytest.raises(NotFound):
        other.messages.recent(s.id)
    assert [m.text for m in store.messages.recent(s.id)] == ["mine"]
    assert store.sessions.get(s.id).last_seq == 1


def test_failed_appends_leave_no_gap(store: Store) -> None:
    s = store.sessions.create()
    first = store.messages.append(s.id, "user", "one", id="msg_fixed_1")
    with pytest.raises(Conflict):
        store.messages.append(s.id, "user", "dup", id="msg_fixed_1")
    with pytest.raises(Conflict):
        store.messages.append_many(
            s.id,
            [
                {"role": "user", "content": "a", "id": "msg_fixed_2"},
                {"role": "user", "content": "b", "id": "msg_fixed_2"},
            ],
        )
    with pytest.raises(InvalidInput):
        store.messages.append_many(s.id, [{"role": "user", "content": "ok"}, {"role": "bad"}])
    nxt = store.messages.append(s.id, "user", "two")
    assert (first.seq, nxt.seq) == (1, 2)
    assert store.sessions.get(s.id).message_count == 2


def test_idempotent_batch_mixes_stored_and_new(store: Store) -> None:
    s = store.sessions.create()
    a = store.messages.append(s.id, "user", "a", idempotency_key="k1")
    out = store.messages.append_many(
        s.id,
        [
            {"role": "user", "content": "a again", "idempotency_key": "k1"},
            {"role": "user", "content": "b", "idempotency_key": "k2"},
            {"role": "user", "content": "c"},
        ],
    )
    assert out[0] == a
    assert [m.seq for m in out] == [1, 2, 3]
    again = store.messages.append_many(
        s.id, [{"role": "user", "content": "x", "idempotency_key": "k2"}]
    )
    assert again == [out[1]]
    assert store.sessions.get(s.id).last_seq == 3


def test_recent_of_an_empty_or_missing_session(store: Store) -> None:
    s = store.sessions.create()
    assert store.messages.recent(s.id) == []
    with pytest.raises(NotFound):
        store.messages.recent("sess_missing")
    with pytest.raises(InvalidInput):
        store.messages.recent(s.id, 0)


def test_postgres_hot_path_survives_lost_connections(postgres_url: str) -> None:
    import agentkeep

    store = agentkeep.connect(postgres_url).tenant("hot_path_reconnect")
    try:
        s = store.sessions.create()
        store.messages.append(s.id, "user", "before")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = 'agentkeep'"
            )
        import time

        time.sleep(0.2)
        store.messages.append(s.id, "user", "after")
        assert [m.text for m in store.messages.recent(s.id)] == ["before", "after"]
    finally:
        store.close()
