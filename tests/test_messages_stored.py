"""Messages read back exactly as written, inside and outside a transaction, on every backend.

Appends and reads run the same statements (``store/message_sql.py``) on the
store's own connections and on a transaction's connection: each test checks
both where it matters.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from _postgres import terminate_backends
from _statements import sent_statements, verbs, work

from agentkeep import Store
from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.models import ACTIVE_RUN_STATUSES, RUN_TRANSITIONS, Message, NewMessage


def test_appends_and_reads_inside_and_outside_a_transaction_agree(store: Store) -> None:
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


CONTENT_SHAPES: list[str | list[dict[str, object]]] = [
    "plain",
    "",
    [{"type": "text", "text": "one block"}],
    [{"text": "keys the other way", "type": "text"}],
    [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    [{"type": "text", "text": "annotated", "annotations": [{"type": "url"}]}],
    [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
    [{"type": "refusal", "refusal": "no"}],
]


def test_every_content_shape_reads_back_as_get_reads_it(store: Store) -> None:
    """Field for field and key for key (the JSON of each message), plain or not."""
    s = store.sessions.create()
    for i, content in enumerate(CONTENT_SHAPES):
        store.messages.append(s.id, "user", content)
        store.messages.append(s.id, "assistant", content, metadata={"i": str(i)}, run_id=f"r{i}")
    recent = store.messages.recent(s.id, 100)
    assert [m.model_dump_json() for m in recent] == [
        store.messages.get(m.id).model_dump_json() for m in recent
    ]
    history = store.messages.history(s.id, 100)
    with store.transaction():
        assert store.messages.recent(s.id, 100) == recent
        assert store.messages.history(s.id, 100) == history
    assert [h["content"] for h in history[::2]] == [
        "plain",
        "",
        "one block",
        "keys the other way",
        *CONTENT_SHAPES[4:],
    ]


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


def test_read_messages_change_one_at_a_time(store: Store) -> None:
    """Messages read together share nothing a caller can change through one of them."""
    s = store.sessions.create()
    store.messages.append_many(
        s.id, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    )
    first, second = store.messages.recent(s.id)
    assert first.model_fields_set == set(Message.model_fields)
    first.metadata["k"] = "v"
    first.extra["x"] = 1
    first.content[0]["text"] = "changed"
    first.role = "tool"
    assert second.metadata == {} and second.extra == {} and second.text == "b"
    assert second.role == "assistant"
    copy = second.model_copy(update={"role": "user"})
    assert copy.role == "user" and second.role == "assistant"
    assert second.model_fields_set == set(Message.model_fields)
    again = store.messages.recent(s.id)
    assert [m.text for m in again] == ["a", "b"] and again[0].metadata == {}


def test_created_at_is_exact_to_the_microsecond(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from agentkeep.models.common import from_micros, micros_to_datetime, to_micros

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    # Values whose float seconds are not exact in a double (16 significant digits).
    for micros in (1_795_332_977_124_657, 2_099_999_999_999_999, 1_700_000_000_000_001, 0):
        expected = epoch + timedelta(microseconds=micros)
        assert micros_to_datetime(micros) == expected == from_micros(micros)
        assert to_micros(expected) == micros
    s = store.sessions.create()
    m = store.messages.append(s.id, "user", "hi")
    assert store.messages.recent(s.id)[0].created_at == m.created_at
    assert m.created_at.tzinfo is not None and m.created_at.utcoffset() == timedelta(0)


def test_read_times_are_each_message_s_own_when_read_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads keep the datetimes they built (by microsecond) for the next read, bounded."""
    from agentkeep.store import messages

    monkeypatch.setattr(messages, "_TIMES", {})
    monkeypatch.setattr(messages, "_TIMES_MAX", 3)  # emptied while this test reads
    s = store.sessions.create()
    written = [store.messages.append(s.id, "user", str(i)) for i in range(4)]
    written += store.messages.append_many(s.id, [{"role": "user", "content": "a"}] * 2)
    times = [m.created_at for m in written]
    assert len(set(times)) == 5  # four appends, then two messages written together
    for _ in range(3):
        assert [m.created_at for m in store.messages.recent(s.id, 10)] == times
        assert [m.created_at for m in store.messages.recent(s.id, 2)] == times[-2:]
    assert len(messages._TIMES) <= 3


def test_tenants_do_not_see_each_other_s_messages(store: Store) -> None:
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


def test_postgres_kept_connections_survive_being_lost(postgres_url: str) -> None:
    import agentkeep

    store = agentkeep.connect(postgres_url).tenant("kept_reconnect")
    try:
        s = store.sessions.create()
        store.messages.append(s.id, "user", "before")
        # The store's own kept connections (the message fast path), idle now.
        kept = [c.cur.connection.info.backend_pid for c in store._core.own._idle._conns]  # type: ignore[attr-defined]
        assert kept, "the append left no kept connection to lose"
        terminated = terminate_backends(postgres_url, "application_name = 'agentkeep'")
        # The store's connections (its own kept ones among them) really were ended, and
        # are gone before the store is used again.
        assert terminated and all(ok for _, ok in terminated), terminated
        pids = [pid for pid, _ in terminated]
        assert set(kept) <= set(pids), f"kept connections {kept} were not ended: {pids}"
        store.messages.append(s.id, "user", "after")
        assert [m.text for m in store.messages.recent(s.id)] == ["before", "after"]
    finally:
        store.close()


# Texts that look like the JSON around them: the read path takes a text block's
# string as it is only when it has nothing to unescape.
TRICKY_TEXTS = [
    "",
    'say "hi"',
    "back\\slash",
    "tab\tnew\nline\x7fdel",
    "ünïcödé ✓ 🚀",
    '"}, {"type": "text", "text": "',
    '", "type": "text"}, {"text": "',
    "[{}]",
]


def test_texts_that_look_like_json_read_back_exactly(store: Store) -> None:
    s = store.sessions.create()
    one = [store.messages.append(s.id, "user", t) for t in TRICKY_TEXTS]
    many = store.messages.append_many(s.id, [{"role": "user", "content": t} for t in TRICKY_TEXTS])
    blocks = store.messages.append(
        s.id, "assistant", [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    )
    recent = store.messages.recent(s.id, 100)
    assert [m.text for m in recent] == [*TRICKY_TEXTS, *TRICKY_TEXTS, "ab"]
    assert recent == [*one, *many, blocks]
    assert [store.messages.get(m.id) for m in recent] == recent


def test_batches_of_any_size_keep_seq_gapless(store: Store) -> None:
    s = store.sessions.create()
    expected: list[str] = []
    for size in (1, 2, 3, 127, 128, 129, 300):
        batch = [f"{size}:{k}" for k in range(size)]
        out = store.messages.append_many(s.id, [{"role": "user", "content": t} for t in batch])
        assert [m.seq for m in out] == list(range(len(expected) + 1, len(expected) + size + 1))
        expected += batch
    # A batch where one message carries metadata is written row by row.
    mixed = store.messages.append_many(
        s.id,
        [
            {"role": "user", "content": "plain"},
            {"role": "assistant", "content": "tagged", "metadata": {"k": "v"}},
        ],
    )
    expected += ["plain", "tagged"]
    assert [m.seq for m in mixed] == [len(expected) - 1, len(expected)]
    stored = store.messages.list(s.id, limit=1000).items
    assert [m.text for m in stored] == expected
    assert [m.seq for m in stored] == list(range(1, len(expected) + 1))
    assert store.messages.recent(s.id, 1000) == stored
    assert store.sessions.get(s.id).message_count == len(expected)


def test_optional_fields_read_back(store: Store) -> None:
    s = store.sessions.create()
    made = [
        store.messages.append(s.id, "user", "run", run_id="run_x"),
        store.messages.append(s.id, "user", "agent", agent_id="asst_x"),
        store.messages.append(s.id, "user", "key", idempotency_key="k"),
        store.messages.append(s.id, "user", "meta", metadata={"a": "b"}),
        store.messages.append(s.id, "user", "extra", extra={"n": 1.5, "l": [1, None]}),
        store.messages.append(
            s.id,
            "user",
            "all",
            run_id="run_y",
            agent_id="asst_y",
            idempotency_key="k2",
            metadata={"c": "d"},
            extra={"deep": {"x": "y"}},
        ),
    ]
    recent = store.messages.recent(s.id, 10)
    assert recent == made
    assert recent == [store.messages.get(m.id) for m in made]
    assert recent[4].extra == {"n": 1.5, "l": [1, None]}
    assert recent[0].metadata == {} and recent[3].run_id is None


@pytest.mark.parametrize(("durability", "pages"), [("normal", 10_000), ("full", 1_000)])
def test_sqlite_writer_checkpoints_by_durability(
    tmp_path: object, durability: str, pages: int
) -> None:
    """At FULL every commit syncs the WAL: it is kept small (reused, not grown)."""
    import agentkeep

    store = agentkeep.connect(f"sqlite:///{tmp_path}/cp.db", durability=durability)
    try:
        s = store.sessions.create()
        store.messages.append(s.id, "user", "hi")
        fast = store._core.own
        assert fast is not None
        writer = fast.writer()  # type: ignore[attr-defined]
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == pages
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == (
            2 if durability == "full" else 1
        )
    finally:
        store.close()


def test_sqlite_readers_map_the_file_and_the_writer_does_not(tmp_path: object) -> None:
    """Readers read pages through mmap; the writer's pages would count in the RSS."""
    import agentkeep
    from agentkeep.store.dialects.sqlite import READER_MMAP_BYTES

    store = agentkeep.connect(f"sqlite:///{tmp_path}/mm.db")
    try:
        s = store.sessions.create()
        store.messages.append(s.id, "user", "hi")
        fast = store._core.own
        assert fast is not None
        reader = fast._readers.get(None)  # type: ignore[attr-defined]
        try:
            assert reader.execute("PRAGMA mmap_size").fetchone()[0] == READER_MMAP_BYTES
        finally:
            fast._readers.put(reader)  # type: ignore[attr-defined]
        writer = fast.writer()  # type: ignore[attr-defined]
        assert writer.execute("PRAGMA mmap_size").fetchone()[0] == 0
        assert [m.text for m in store.messages.recent(s.id)] == ["hi"]
    finally:
        store.close()


def test_sqlite_stores_text_as_json_with_only_the_escapes_json_needs(tmp_path: object) -> None:
    """Non-ASCII text is stored as UTF-8, so a read takes it as stored (no unescaping)."""
    import sqlite3

    import agentkeep

    store = agentkeep.connect(f"sqlite:///{tmp_path}/text.db")
    try:
        s = store.sessions.create()
        store.messages.append(s.id, "user", 'ünï 🚀 "q"\n')
        store.messages.append_many(s.id, [{"role": "user", "content": "中文"}])
        assert [m.text for m in store.messages.recent(s.id)] == ['ünï 🚀 "q"\n', "中文"]
    finally:
        store.close()
    with sqlite3.connect(f"{tmp_path}/text.db") as conn:
        stored = [r[0] for r in conn.execute("SELECT content FROM messages ORDER BY seq")]
    assert stored == [
        '[{"type": "text", "text": "ünï 🚀 \\"q\\"\\n"}]',
        '[{"type": "text", "text": "中文"}]',
    ]


def test_postgres_connections_keep_working_after_a_failed_statement(postgres_url: str) -> None:
    """One cursor per connection runs all its statements: an error leaves it usable."""
    import agentkeep

    store = agentkeep.connect(postgres_url).tenant("kept_cursor")
    try:
        s = store.sessions.create()
        store.messages.append(s.id, "user", "one", idempotency_key="k")
        for _ in range(3):
            with pytest.raises(InvalidInput):
                store.messages.append(s.id, "user", "bad", extra={"x": "nul\x00"})
            with pytest.raises(NotFound):
                store.messages.recent("no-such-session")
        store.messages.append(s.id, "user", "two")
        assert store.messages.append(s.id, "user", "again", idempotency_key="k").text == "one"
        assert [m.text for m in store.messages.recent(s.id)] == ["one", "two"]
    finally:
        store.close()


def test_nul_in_text_is_refused_on_every_backend(store: Store) -> None:
    s = store.sessions.create()
    with pytest.raises(InvalidInput) as err:
        store.messages.append(s.id, "user", "a\x00b")
    assert err.value.field == "content"
    with pytest.raises(InvalidInput) as err:
        store.messages.append_many(
            s.id,
            [
                {"role": "user", "content": "fine"},
                {"role": "user", "content": [{"type": "text", "text": "\x00"}]},
            ],
        )
    assert err.value.field == "messages[1].content[0].text"
    assert store.messages.recent(s.id) == []
    assert store.sessions.get(s.id).last_seq == 0


def test_lone_surrogates_in_text_are_refused_on_every_backend(store: Store) -> None:
    s = store.sessions.create()
    with pytest.raises(InvalidInput, match="surrogate at position 2") as err:
        store.messages.append(s.id, "user", "ok\ud800")
    assert err.value.field == "content"
    with pytest.raises(InvalidInput) as err:
        store.messages.append_many(
            s.id, [{"role": "user", "content": [{"type": "text", "text": "é\udfff"}]}]
        )
    assert err.value.field == "messages[0].content[0].text"
    assert store.messages.recent(s.id) == []
    # Text outside the BMP is pairs of surrogates in UTF-16, not in Python: stored as is.
    assert store.messages.append(s.id, "user", "😀").text == "😀"


def test_postgres_refuses_nul_anywhere_as_invalid_input(_postgres_store: Store) -> None:
    store = _postgres_store.tenant("nul_in_extra")
    s = store.sessions.create()
    with pytest.raises(InvalidInput, match="NUL"):
        store.messages.append(s.id, "user", "ok", extra={"x": "\x00"})
    assert store.messages.recent(s.id) == []


def test_a_failed_append_inside_a_transaction_leaves_it_usable_and_gapless(store: Store) -> None:
    s = store.sessions.create()
    with store.transaction():
        first = store.messages.append(s.id, "user", "one", id="msg_in_tx_1", idempotency_key="k")
        with pytest.raises(Conflict):
            store.messages.append(s.id, "user", "dup", id="msg_in_tx_1")
        with pytest.raises(NotFound):
            store.messages.append("sess_missing", "user", "nowhere")
        with pytest.raises(NotFound):
            store.tenant(store.tenant_id + "_other").messages.recent(s.id)
        again = store.messages.append(s.id, "user", "one again", idempotency_key="k")
        second = store.messages.append(s.id, "user", "two")
        assert again == first
        assert store.messages.history(s.id) == [
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
        ]
    assert [m.seq for m in store.messages.recent(s.id)] == [first.seq, second.seq] == [1, 2]
    assert store.sessions.get(s.id).message_count == 2


def test_a_sessions_list_pages_as_the_generic_listing_does(store: Store) -> None:
    """``messages.list`` of one session (by run at most) reads with the compiled message
    statements; every page, in both orders and from both cursors, is the one the generic
    listing gives (a filter that keeps every message sends it that way), message for
    message, inside a transaction too."""
    from datetime import UTC, datetime

    s = store.sessions.create(kind="thread")
    other = store.sessions.create()
    store.messages.append(other.id, "user", "elsewhere")
    contents: list[Any] = [
        "plain",
        [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        'quote " and \\ backslash',
        [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
    ]
    for i in range(11):
        store.messages.append(
            s.id,
            "user" if i % 2 else "assistant",
            contents[i % len(contents)],
            run_id="run_a" if i % 3 == 0 else None,
            agent_id="asst_x" if i == 4 else None,
            idempotency_key=f"k{i}" if i == 5 else None,
            metadata={"i": str(i)} if i % 4 == 0 else None,
        )
    everything = datetime(1970, 1, 2, tzinfo=UTC)  # a filter: the generic listing
    ids = [m.id for m in store.messages.list(s.id, limit=100).items]
    assert len(ids) == 11
    for order in ("asc", "desc"):
        for run_id in (None, "run_a"):
            for cursor in (None, ids[0], ids[5], ids[10]):
                for kw in ({}, {"after": cursor}, {"before": cursor}):
                    if cursor is None and kw:
                        continue
                    args = {"limit": 3, "order": order, "run_id": run_id, **kw}
                    fast = store.messages.list(s.id, **args)  # type: ignore[arg-type]
                    slow = store.messages.list(s.id, created_after=everything, **args)  # type: ignore[arg-type]
                    assert fast == slow, (order, run_id, kw)
                    with store.transaction():
                        assert store.messages.list(s.id, **args) == slow  # type: ignore[arg-type]
    both = store.messages.list(s.id, after=ids[1], before=ids[8], limit=100)
    assert [m.id for m in both.items] == ids[2:8] and not both.has_more
    assert all(m == store.messages.get(m.id) for m in store.messages.list(s.id, limit=100))
    with pytest.raises(InvalidInput) as bad:
        store.messages.list(s.id, after="msg_missing")
    assert bad.value.field == "after"
    with pytest.raises(InvalidInput) as bad:
        store.messages.list(s.id, before="msg_missing")
    assert bad.value.field == "before"
    with pytest.raises(InvalidInput) as bad:
        store.messages.list(s.id, limit=0)
    assert bad.value.field == "limit"
    with pytest.raises(InvalidInput) as bad:
        store.messages.list(s.id, order="up")  # type: ignore[arg-type]
    assert bad.value.field == "order"
    with pytest.raises(NotFound):
        store.messages.list("sess_missing")
    empty = store.sessions.create()
    assert store.messages.list(empty.id) == store.messages.list(empty.id, created_after=everything)
    assert store.messages.list(s.id, run_id="run_none").items == []


def test_append_if_idle_writes_nothing_while_a_run_is_active(store: Store) -> None:
    """The OpenAI thread rule in one transaction: the append and the active-run check
    commit together, or neither does (on PostgreSQL's autocommit connections too)."""
    from agentkeep.errors import SessionBusy

    thread = store.sessions.create(kind="thread")
    first = store.messages.append_if_idle(
        thread.id, {"role": "user", "content": "one"}, kind="thread"
    )
    assert (first.seq, first.text) == (1, "one")
    run = store.runs.create("asst_x", session_id=thread.id)
    cases: list[dict[str, Any]] = [{}, {"idempotency_key": "k"}, {"id": "msg_busy"}]
    for kwargs in cases:
        with pytest.raises(SessionBusy) as busy:
            store.messages.append_if_idle(
                thread.id, {"role": "user", "content": "two", **kwargs}, kind="thread"
            )
        assert (busy.value.session_id, busy.value.run_id) == (thread.id, run.id)
        assert isinstance(busy.value, Conflict)
    after = store.sessions.get(thread.id)
    assert (after.last_seq, after.message_count) == (1, 1)
    assert [m.text for m in store.messages.recent(thread.id)] == ["one"]
    with pytest.raises(NotFound):
        store.messages.get("msg_busy")

    store.runs.transition(run.id, "cancelled")
    keyed = store.messages.append_if_idle(
        thread.id, {"role": "user", "content": "two", "idempotency_key": "k"}
    )
    again = {"role": "user", "content": "again", "idempotency_key": "k"}
    assert store.messages.append_if_idle(thread.id, again) == keyed
    assert [m.seq for m in store.messages.recent(thread.id)] == [1, 2]

    other = store.sessions.create(kind="conversation")
    with pytest.raises(NotFound) as wrong:
        store.messages.append_if_idle(other.id, {"role": "user", "content": "x"}, kind="thread")
    assert wrong.value.kind == "thread"
    assert store.sessions.get(other.id).last_seq == 0
    with pytest.raises(NotFound):
        store.messages.append_if_idle("sess_missing", {"role": "user", "content": "x"})
    with pytest.raises(InvalidInput) as bad:
        store.messages.append_if_idle(thread.id, {"role": "nobody", "content": "x"})
    assert bad.value.field == "role"
    with store.transaction():
        inside = store.messages.append_if_idle(
            thread.id, NewMessage(role="user", content="in a transaction")
        )
    assert inside.seq == 3 and store.sessions.get(thread.id).message_count == 3
    # Refused inside a transaction: that write alone is undone, the transaction goes on.
    again_busy = store.runs.create("asst_x", session_id=thread.id)
    with store.transaction():
        store.messages.append(other.id, "user", "kept")
        with pytest.raises(SessionBusy) as busy:
            store.messages.append_if_idle(thread.id, {"role": "user", "content": "x"})
        assert busy.value.run_id == again_busy.id
        with pytest.raises(NotFound):
            store.messages.append_if_idle(other.id, {"role": "user", "content": "x"}, kind="thread")
        store.messages.append(other.id, "user", "kept too")
    assert [m.text for m in store.messages.recent(other.id)] == ["kept", "kept too"]
    assert store.sessions.get(thread.id).message_count == 3


def test_a_guarded_append_of_several_messages_writes_all_or_none(store: Store) -> None:
    """The dialects' append of a batch while the session is idle (``WhileIdle``; the
    public ``append_if_idle`` takes one message): every message, or none while a run is active."""
    from agentkeep.errors import SessionBusy
    from agentkeep.store.message_sql import WhileIdle

    thread = store.sessions.create(kind="thread")
    batch = [{"role": "user", "content": f"m{i}"} for i in range(3)]

    def guarded(session_id: str, kind: str | None = None) -> list[Any]:
        rows = store.messages._prepare_all(batch)
        written: list[Any] = store._core.run_op(
            store.messages._write(session_id, rows, WhileIdle(kind))
        )
        return written

    assert [m.seq for m in guarded(thread.id, "thread")] == [1, 2, 3]
    run = store.runs.create("asst_x", session_id=thread.id)
    with pytest.raises(SessionBusy) as busy:
        guarded(thread.id)
    assert busy.value.run_id == run.id
    other = store.sessions.create(kind="conversation")
    with pytest.raises(NotFound):
        guarded(other.id, "thread")
    assert store.sessions.get(thread.id).last_seq == 3
    assert store.sessions.get(other.id).last_seq == 0
    assert [m.text for m in store.messages.recent(thread.id)] == ["m0", "m1", "m2"]


@pytest.mark.parametrize("status", sorted(RUN_TRANSITIONS))
def test_append_if_idle_refuses_exactly_while_a_run_is_in_an_active_status(
    store: Store, status: str
) -> None:
    """Every run status, against ``ACTIVE_RUN_STATUSES``: on PostgreSQL the check's status
    list is written in migration 0014's function, so a change to the statuses that no
    migration follows fails here."""
    from agentkeep.errors import SessionBusy

    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id, status=status)
    message = {"role": "user", "content": status}
    if status in ACTIVE_RUN_STATUSES:
        with pytest.raises(SessionBusy) as busy:
            store.messages.append_if_idle(thread.id, message, kind="thread")
        assert busy.value.run_id == run.id
        assert store.sessions.get(thread.id).last_seq == 0
    else:
        assert store.messages.append_if_idle(thread.id, message, kind="thread").seq == 1


# --- the statements each operation sends (store/message_sql.py) -------------------------


def test_an_append_outside_a_transaction_is_one_write_of_few_statements(
    store: Store, backend: str
) -> None:
    """SQLite: the session's counter, its new value read back, one INSERT of every message,
    in one ``BEGIN IMMEDIATE``; PostgreSQL: one statement on an autocommit connection."""
    s = store.sessions.create()
    store.messages.append(s.id, "user", "first")
    batches: list[list[str]] = []
    for write in (
        lambda: store.messages.append(s.id, "user", "one"),
        lambda: store.messages.append_many(
            s.id, [{"role": "user", "content": "two"}, {"role": "assistant", "content": "3"}]
        ),
        lambda: store.messages.extend(s.id, [{"role": "user", "content": "four"}]),
    ):
        with sent_statements(store) as statements:
            write()
        batches.append(statements)
    for statements in batches:
        if backend == "postgres":
            assert statements == work(statements)  # no BEGIN, no COMMIT
            assert verbs(statements) == ["WITH"]
            assert "INSERT INTO messages" in statements[0]
        else:
            assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
            assert verbs(statements) == ["UPDATE", "SELECT", "INSERT"]
    assert [m.seq for m in store.messages.recent(s.id, 10)] == [1, 2, 3, 4, 5]


def test_a_read_of_a_session_with_messages_is_one_statement(store: Store) -> None:
    """``recent`` and ``history`` read the rows only; whether the session exists is asked
    only when there are none."""
    s = store.sessions.create()
    store.messages.append_many(s.id, [{"role": "user", "content": "a"}] * 3)
    for read in (store.messages.recent, store.messages.history):
        with sent_statements(store) as statements:
            assert len(read(s.id, 2)) == 2
        assert verbs(statements) == ["SELECT"]
    empty = store.sessions.create()
    with sent_statements(store) as statements:
        assert store.messages.recent(empty.id, 2) == []
    assert verbs(statements) == ["SELECT", "SELECT"]
    assert "FROM sessions" in work(statements)[1]


def test_inside_a_transaction_the_message_statements_run_on_its_connection(
    store: Store, backend: str
) -> None:
    """No write of their own: on SQLite, one ``BEGIN IMMEDIATE`` (the transaction's) before
    the append's statements and one ``COMMIT`` after the read."""
    s = store.sessions.create()
    with sent_statements(store) as statements, store.transaction(savepoints=False):
        store.messages.append(s.id, "user", "in the transaction")
        assert [m.text for m in store.messages.recent(s.id, 5)] == ["in the transaction"]
    if backend == "postgres":
        assert verbs(statements) == ["WITH", "SELECT"]
    else:
        assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
        assert [v for v in statements if v.startswith(("BEGIN", "COMMIT"))] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]
        assert verbs(statements) == ["UPDATE", "SELECT", "INSERT", "SELECT"]
