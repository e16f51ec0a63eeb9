"""State documents: keyed JSON values with versions, compare-and-set, listing by prefix."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from _statements import sent_statements, work
from _threads import in_threads, no_worker_threads

from agentkeep import AsyncStore, Conflict, InvalidInput, NotFound, Store


def test_put_get_round_trip_and_versions(store: Store) -> None:
    doc = store.state.put("agent", "info", {"name": "planner", "tools": ["search"]})
    assert (doc.namespace, doc.key, doc.version) == ("agent", "info", 1)
    assert doc.tenant_id == store.tenant_id
    got = store.state.get("agent", "info")
    assert got == doc
    again = store.state.put("agent", "info", {"name": "planner", "tools": []})
    assert again.version == 2 and again.created_at == doc.created_at
    assert again.updated_at >= doc.updated_at
    assert store.state.get("agent", "info").value == {"name": "planner", "tools": []}


@pytest.mark.parametrize("value", [None, 0, 3.5, "text", [1, "a", None], {"nested": {"x": [True]}}])
def test_any_json_value(store: Store, value: object) -> None:
    store.state.put("values", "v", value)
    assert store.state.get("values", "v").value == value


def test_compare_and_set(store: Store) -> None:
    first = store.state.put("todos", "sess_1", [], expected_version=0)
    assert first.version == 1
    with pytest.raises(Conflict):
        store.state.put("todos", "sess_1", ["lost"], expected_version=0)
    second = store.state.put("todos", "sess_1", ["a"], expected_version=1)
    assert second.version == 2
    with pytest.raises(Conflict):
        store.state.put("todos", "sess_1", ["stale"], expected_version=1)
    with pytest.raises(Conflict):
        store.state.put("todos", "missing", ["x"], expected_version=3)
    assert store.state.get("todos", "sess_1").value == ["a"]


def test_concurrent_compare_and_set_has_one_winner(store: Store) -> None:
    store.state.put("counters", "c", 0)
    wins: list[int] = []
    errors: list[Exception] = []

    def bump(n: int) -> None:
        try:
            store.state.put("counters", "c", n, expected_version=1)
            wins.append(n)
        except Conflict:
            pass
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(wins) == 1
    doc = store.state.get("counters", "c")
    assert (doc.value, doc.version) == (wins[0], 2)


def test_delete(store: Store) -> None:
    store.state.put("cache", "k", {"v": 1})
    store.state.put("cache", "k", {"v": 2})
    with pytest.raises(Conflict):
        store.state.delete("cache", "k", expected_version=1)
    store.state.delete("cache", "k", expected_version=2)
    with pytest.raises(NotFound):
        store.state.get("cache", "k")
    with pytest.raises(NotFound):
        store.state.delete("cache", "k")
    # Deleted documents can be created again from version 1.
    assert store.state.put("cache", "k", 1, expected_version=0).version == 1


def test_list_by_namespace_and_prefix_with_key_cursor(store: Store) -> None:
    for i in range(7):
        store.state.put("windows", f"sess_a/{i:03d}", {"start": i * 10, "end": i * 10 + 9})
    store.state.put("windows", "sess_b/000", {"start": 0, "end": 4})
    store.state.put("windows", "Sess_a/999", {"case": "differs"})
    store.state.put("other", "sess_a/000", "not in this namespace")

    everything = store.state.list("windows")
    assert len(everything) == 9  # key order is the database's collation order
    assert len({d.key for d in everything}) == 9

    keys: list[str] = []
    page = store.state.list("windows", prefix="sess_a/", limit=3)
    while page:
        keys += [d.key for d in page]
        page = store.state.list("windows", prefix="sess_a/", limit=3, after_key=page[-1].key)
    assert keys == [f"sess_a/{i:03d}" for i in range(7)]

    assert [d.key for d in store.state.list("windows", prefix="sess_a/003")] == ["sess_a/003"]
    assert [d.key for d in store.state.list("windows", prefix="Sess")] == ["Sess_a/999"]
    # A prefix is literal: no LIKE wildcards, case-sensitive.
    store.state.put("windows", "a%b", 1)
    store.state.put("windows", "axb", 2)
    assert [d.key for d in store.state.list("windows", prefix="a%")] == ["a%b"]
    assert [d.key for d in store.state.list("windows", prefix="a_")] == []
    assert store.state.list("empty") == []


def test_agent_sdk_examples(store: Store) -> None:
    """The agent SDK's side stores, as state documents."""
    sess = store.sessions.create()
    todos = [
        {"id": 1, "text": "collect sources", "status": "done"},
        {"id": 2, "text": "write summary", "status": "pending"},
    ]
    doc = store.state.put(f"todos:{sess.id}", "list", todos, expected_version=0)
    todos[1]["status"] = "in_progress"
    store.state.put(f"todos:{sess.id}", "list", todos, expected_version=doc.version)
    assert store.state.get(f"todos:{sess.id}", "list").value[1]["status"] == "in_progress"

    store.state.put("history_windows", sess.id, {"first_seq": 41, "last_seq": 80, "tokens": 12000})
    store.state.put(
        "compression",
        f"{sess.id}/0001",
        {"from_seq": 1, "to_seq": 40, "summary": "The user asked for a trip plan."},
    )
    store.state.put(
        "recovered_files", "/tmp/report.md", {"content": "# Report", "saved_at": "2026-01-01"}
    )
    store.state.put("media_cache", "sha256:ab12", {"mime": "image/png", "path": "cache/ab12.png"})
    assert [d.key for d in store.state.list("compression", prefix=f"{sess.id}/")] == [
        f"{sess.id}/0001"
    ]
    assert store.state.get("history_windows", sess.id).value["tokens"] == 12000


def test_tenants_do_not_share_documents(store: Store) -> None:
    store.state.put("ns", "k", "mine")
    other = store.tenant(store.tenant_id + "_x")
    with pytest.raises(NotFound):
        other.state.get("ns", "k")
    assert other.state.list("ns") == []
    other.state.put("ns", "k", "theirs")
    assert store.state.get("ns", "k").value == "mine"


def test_invalid_input_names_the_field(store: Store) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: store.state.put("", "k", 1), "namespace"),
        (lambda: store.state.put("ns", "", 1), "key"),
        (lambda: store.state.put("ns", "k" * 513, 1), "key"),
        (lambda: store.state.put("ns", "k", {1, 2}), "value"),
        (lambda: store.state.put("ns", "k", 1, expected_version=-1), "expected_version"),
        (lambda: store.state.list("ns", limit=0), "limit"),
        (lambda: store.state.list("ns", prefix=3), "prefix"),  # type: ignore[arg-type]
    ]
    for call, field in cases:
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.field == field
    assert store.state.list("ns") == []


async def test_async_state(astore: AsyncStore) -> None:
    doc = await astore.state.put("a", "k", {"x": 1}, expected_version=0)
    assert (await astore.state.get("a", "k")).version == doc.version == 1
    assert [d.key for d in await astore.state.list("a")] == ["k"]
    await astore.state.delete("a", "k")
    with pytest.raises(NotFound):
        await astore.state.get("a", "k")


def test_documents_of_one_key_across_namespaces(store: Store) -> None:
    store.state.put("todos", "sess_1", {"items": ["a"]})
    store.state.put("windows", "sess_1", {"start": 3})
    store.state.put("todos", "sess_2", {"items": []})
    store.tenant("other-tenant-y").state.put("notes", "sess_1", "theirs")
    docs = store.state.with_key("sess_1")
    assert [(d.namespace, d.value) for d in docs] == [
        ("todos", {"items": ["a"]}),
        ("windows", {"start": 3}),
    ]
    assert store.state.with_key("sess_1", limit=1)[0].namespace == "todos"
    assert store.state.with_key("nothing") == []


def test_concurrent_puts_without_a_version_each_count_once(store: Store) -> None:
    """A put without ``expected_version`` is one upsert: writers racing on a new document
    all land, each raising its version by one, none seeing a Conflict."""
    n = 8
    in_threads(n, lambda i: store.state.put("race", "doc", {"by": i}))
    assert store.state.get("race", "doc").version == n


async def test_documents_are_read_and_written_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread; a put, a get and a delete are one statement each (a second reads
    the version a Conflict names)."""
    no_worker_threads(monkeypatch, "state documents")
    with sent_statements(store) as sent:
        made = await astore.state.put("todos", "s1", ["a"], expected_version=0)
    assert len(work(sent)) == 1 and made.version == 1, work(sent)
    with sent_statements(store) as sent, pytest.raises(Conflict) as taken:
        await astore.state.put("todos", "s1", ["b"], expected_version=0)
    assert taken.value.current_version == 1 and len(work(sent)) == 2
    replaced = await astore.state.put("todos", "s1", ["b"])
    assert (replaced.version, replaced.value, replaced.created_at) == (2, ["b"], made.created_at)
    at = await astore.state.put("todos", "s1", "plain text", expected_version=2)
    assert (at.version, at.value) == (3, "plain text")
    with pytest.raises(Conflict) as missing:
        await astore.state.put("todos", "nope", 1, expected_version=4)
    assert missing.value.current_version == 0
    await astore.state.put("todos", "s2", None)
    assert (await astore.state.get("todos", "s2")).value is None
    assert [d.key for d in await astore.state.list("todos", prefix="s", after_key="s1")] == ["s2"]
    assert [d.namespace for d in await astore.state.with_key("s1")] == ["todos"]
    with pytest.raises(Conflict):
        await astore.state.delete("todos", "s1", expected_version=2)
    with sent_statements(store) as sent:
        await astore.state.delete("todos", "s1", expected_version=3)
    assert len(work(sent)) == 1, work(sent)
    with pytest.raises(NotFound):
        await astore.state.get("todos", "s1")
    with pytest.raises(NotFound):
        await astore.state.delete("todos", "s1")
    assert store.state.get("todos", "s2").version == 1
