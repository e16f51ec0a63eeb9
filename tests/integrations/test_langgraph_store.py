"""AgentkeepStore, LangGraph's long-term memory store, on memory, SQLite and PostgreSQL.

LangGraph ships no conformance suite for ``BaseStore`` (langgraph 1.2.22,
langgraph-checkpoint-conformance 0.0.2 test checkpointers only), so search and
namespace listing are checked against LangGraph's own ``InMemoryStore`` on the
same data, beside the store's own rules (TTL, input checks, tenants, restarts)
and a real ``StateGraph`` whose node uses the injected store.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from _statements import sent_statements, work
from _threads import no_worker_threads
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.store.base import (
    BaseStore,
    GetOp,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

import agentkeep
from agentkeep import AsyncStore, InvalidInput, Store
from agentkeep.integrations.langgraph import AgentkeepSaver, AgentkeepStore
from agentkeep.store import graph_item_sql, graph_items
from agentkeep.store._steps import run_steps
from agentkeep.store.schema import graph_store_items

_ids = itertools.count()


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _rows(store: Store) -> int:
    with store._core.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(graph_store_items)
                .where(graph_store_items.c.tenant_id == store.tenant_id)
            ).scalar_one()
        )


# --- items ----------------------------------------------------------------------------


def test_put_get_update_delete(store: Store) -> None:
    clock = Clock()
    lg = AgentkeepStore(store, clock=clock)
    ns = ("users", "alice")
    assert lg.get(ns, "prefs") is None
    lg.put(ns, "prefs", {"theme": "dark", "sizes": [1, 2.5], "nested": {"a": None}})
    first = lg.get(ns, "prefs")
    assert first is not None
    assert (first.namespace, first.key) == (ns, "prefs")
    assert first.value == {"theme": "dark", "sizes": [1, 2.5], "nested": {"a": None}}
    assert first.created_at == first.updated_at == clock.now
    clock.advance(seconds=5)
    lg.put(ns, "prefs", {"theme": "light"})
    second = lg.get(ns, "prefs")
    assert second is not None and second.value == {"theme": "light"}
    assert (second.created_at, second.updated_at) == (first.created_at, clock.now)
    lg.put(ns, "other", {"x": 1})
    lg.delete(ns, "prefs")
    assert lg.get(ns, "prefs") is None
    lg.batch([PutOp(ns, "other", None)])  # a put of None deletes too
    assert lg.get(ns, "other") is None and _rows(store) == 0
    lg.delete(ns, "never-there")  # deleting nothing is fine


def test_a_batch_reads_before_it_writes_and_the_last_put_wins(store: Store) -> None:
    theirs, ours = InMemoryStore(), AgentkeepStore(store)
    ns = ("docs",)
    for s in (theirs, ours):
        s.put(ns, "a", {"v": 0})
    ops = [
        PutOp(ns, "a", {"v": 1}),
        GetOp(ns, "a"),
        PutOp(ns, "b", {"v": 2}),
        PutOp(ns, "a", {"v": 3}),
        GetOp(ns, "b"),
    ]
    got = [ours.batch(ops), theirs.batch(ops)]
    values = [[None if r is None else r.value for r in res] for res in got]  # type: ignore[union-attr]
    assert values[0] == values[1] == [None, {"v": 0}, None, None, None]
    assert ours.get(ns, "a").value == theirs.get(ns, "a").value == {"v": 3}  # type: ignore[union-attr]


def test_a_prefix_is_whole_labels_whatever_the_characters(store: Store) -> None:
    lg = AgentkeepStore(store)
    # Labels that sort next to the separator ("-" < "." < "/"), LIKE wildcards, non-ASCII.
    spaces = [
        ("a",),
        ("a", "b"),
        ("a", "b", "c"),
        ("a", "bc"),
        ("a-",),
        ("a/",),
        ("a0",),
        ("ab",),
        ("a", "%"),
        ("a", "_"),
        ("a", "é"),
        ("A",),
    ]
    for n, ns in enumerate(spaces):
        lg.put(ns, f"k{n}", {"n": n})
    for prefix in [("a",), ("a", "b"), ("a", "%"), ("a-",), ("A",), ("a", "é"), ()]:
        found = {i.namespace for i in lg.search(prefix, limit=100)}
        assert found == {ns for ns in spaces if ns[: len(prefix)] == prefix}, prefix
    assert lg.list_namespaces(prefix=("a", "b")) == [("a", "b"), ("a", "b", "c")]


def _fill(stores: list[BaseStore], seed: int) -> None:
    rng = random.Random(seed)
    colors = ["red", "green", "blue"]
    for n in range(60):
        ns = ("org", rng.choice(["x", "y"]), *rng.choice([(), ("deep",), ("deep", "er")]))
        value = {
            "color": rng.choice(colors),
            "n": rng.choice([1, 2, 2.5, 3, 4, 7, 10]),
            "meta": {"tag": rng.choice(["a", "b"]), "v": n % 3},
            "tags": rng.choice([["x"], ["x", "y"], []]),
            "when": f"2026-0{rng.randint(1, 9)}-01",
        }
        for s in stores:
            s.put(ns, f"k{n}", value)
    for s in stores:  # a few updates and deletes
        s.put(("org", "x"), "k1", {"color": "red", "n": 3, "meta": {}, "tags": [], "when": ""})
        s.delete(("org", "y"), "k2")


FILTERS: list[dict[str, Any] | None] = [
    None,
    {"color": "red"},
    {"n": 2.5},
    {"n": {"$gt": 3}},
    {"n": {"$gte": 2, "$lt": 7}},
    {"n": {"$lte": 2.5}},
    {"n": {"$ne": 2}},
    {"n": {"$eq": 4}},
    {"color": "blue", "n": {"$gt": 1}},
    {"meta": {"tag": "a"}},
    {"meta": {"tag": "b", "v": 0}},
    {"tags": ["x", "y"]},
    {"tags": []},
    {"color": {"$ne": "red"}, "meta": {"v": 2}},
    {"missing": None},
]


@pytest.mark.parametrize("seed", [1, 2])
def test_search_finds_what_in_memory_store_finds(store: Store, seed: int) -> None:
    theirs, ours = InMemoryStore(), AgentkeepStore(store)
    _fill([theirs, ours], seed)
    for prefix in [(), ("org",), ("org", "x"), ("org", "y", "deep"), ("nothing",)]:
        for flt in FILTERS:
            expected = {(i.namespace, i.key) for i in theirs.search(prefix, filter=flt, limit=999)}
            everything = ours.search(prefix, filter=flt, limit=999)
            assert {(i.namespace, i.key) for i in everything} == expected, (prefix, flt)
            assert len(everything) == len(expected)
            # Pages follow one order (most recently updated first) and add up to the whole.
            pages = [ours.search(prefix, filter=flt, limit=7, offset=o) for o in range(0, 70, 7)]
            assert [i.key for page in pages for i in page] == [i.key for i in everything]
            stamps = [i.updated_at for i in everything]
            assert stamps == sorted(stamps, reverse=True)
    # Without an embedding index a query is ignored, as InMemoryStore ignores it.
    with_query = ours.search(("org",), query="anything at all", limit=5)
    assert [i.key for i in with_query] == [i.key for i in ours.search(("org",), limit=5)]
    assert {i.score for i in with_query} == {None}
    assert len(theirs.search(("org",), query="anything at all", limit=5)) == 5


def test_a_filtered_search_reads_page_after_page(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_items, "_PAGE", 4)  # many pages of few rows
    theirs, ours = InMemoryStore(), AgentkeepStore(store)
    _fill([theirs, ours], 4)
    for flt in FILTERS[1:6]:
        expected = {(i.namespace, i.key) for i in theirs.search((), filter=flt, limit=999)}
        whole = ours.search((), filter=flt, limit=999)
        assert {(i.namespace, i.key) for i in whole} == expected, flt
        for limit, offset in [(1, 0), (3, 2), (5, 9), (50, 1)]:
            page = ours.search((), filter=flt, limit=limit, offset=offset)
            assert [i.key for i in page] == [i.key for i in whole[offset : offset + limit]]


def test_filters_need_values_of_the_same_json_type(store: Store) -> None:
    lg = AgentkeepStore(store)
    lg.put(("t",), "bool", {"v": True})
    lg.put(("t",), "one", {"v": 1})
    lg.put(("t",), "text", {"v": "5"})
    lg.put(("t",), "none", {"w": 1})

    def keys(flt: dict[str, Any]) -> set[str]:
        return {i.key for i in lg.search(("t",), filter=flt)}

    assert keys({"v": 1}) == {"one"} and keys({"v": True}) == {"bool"}
    assert keys({"v": {"$gt": 0}}) == {"one"}  # neither "5" nor true nor a missing field
    assert keys({"v": {"$gt": "4"}}) == {"text"}  # strings with strings (InMemoryStore raises)
    assert keys({"v": {"$ne": 1}}) == {"bool", "text", "none"}


def test_list_namespaces_lists_what_in_memory_store_lists(store: Store) -> None:
    theirs, ours = InMemoryStore(), AgentkeepStore(store)
    _fill([theirs, ours], 3)
    for s in (theirs, ours):
        s.put(("cache", "emb", "v1"), "k", {"n": 1})
        s.put(("cache", "llm", "v1"), "k", {"n": 1})
        s.put(("cache", "llm", "v2"), "k", {"n": 1})
    cases: list[dict[str, Any]] = [
        {},
        {"prefix": ("org",)},
        {"prefix": ("org", "*", "deep")},
        {"prefix": ("*", "llm")},
        {"suffix": ("v1",)},
        {"suffix": ("deep", "*")},
        {"prefix": ("cache",), "suffix": ("v2",)},
        {"max_depth": 1},
        {"max_depth": 2, "prefix": ("org",)},
        {"max_depth": 2, "limit": 2, "offset": 1},
        {"limit": 3},
        {"offset": 4},
        {"prefix": ("nothing",)},
    ]
    for kwargs in cases:
        assert ours.list_namespaces(**kwargs) == theirs.list_namespaces(**kwargs), kwargs
    both = (MatchCondition("prefix", ("cache",)), MatchCondition("suffix", ("v1",)))
    op = ListNamespacesOp(match_conditions=both)
    assert (
        ours.batch([op]) == theirs.batch([op]) == [[("cache", "emb", "v1"), ("cache", "llm", "v1")]]
    )


# --- TTL ------------------------------------------------------------------------------


def test_an_expired_item_is_invisible_then_swept(store: Store) -> None:
    clock = Clock()
    lg = AgentkeepStore(store, clock=clock)
    ns = ("session", "s1")
    lg.put(ns, "short", {"v": 1}, ttl=1)
    lg.put(ns, "kept", {"v": 2})  # no TTL: never expires
    clock.advance(seconds=50)
    assert lg.get(ns, "short") is not None  # a read restarts its minute (refresh_on_read)
    clock.advance(seconds=50)
    assert [i.key for i in lg.search(ns, filter={"v": 1})] == ["short"]  # so does a search
    clock.advance(seconds=50)
    assert lg.get(ns, "short", refresh_ttl=False) is not None  # 50 s after the search
    clock.advance(seconds=15)  # 65 s after the last refresh: expired
    assert lg.get(ns, "short") is None
    assert [i.key for i in lg.search(ns)] == ["kept"]
    lg.put(("gone",), "k", {"v": 3}, ttl=0.5)
    assert ("gone",) in lg.list_namespaces()
    clock.advance(minutes=1)
    assert lg.list_namespaces() == [ns]  # a namespace of expired items only is not listed
    assert _rows(store) == 3  # still stored...
    assert lg.sweep_ttl() == 2  # ...until swept
    assert _rows(store) == 1 and lg.sweep_ttl() == 0


def test_ttl_config_gives_the_default_ttl_and_refresh(store: Store) -> None:
    clock = Clock()
    lg = AgentkeepStore(store, clock=clock, ttl_config={"default_ttl": 2, "refresh_on_read": False})
    lg.put(("a",), "default", {"v": 1})  # the default TTL, 2 minutes
    lg.put(("a",), "forever", {"v": 2}, ttl=None)
    lg.put(("a",), "longer", {"v": 3}, ttl=10)
    clock.advance(seconds=90)
    assert lg.get(("a",), "default") is not None  # read, but not refreshed
    clock.advance(seconds=40)
    assert lg.get(("a",), "default") is None
    assert lg.get(("a",), "default", refresh_ttl=True) is None  # too late to refresh
    assert sorted(i.key for i in lg.search(("a",))) == ["forever", "longer"]
    clock.advance(minutes=10)
    assert [i.key for i in lg.search(("a",))] == ["forever"]


def test_a_put_over_an_expired_item_creates_it_anew(store: Store) -> None:
    clock = Clock()
    lg = AgentkeepStore(store, clock=clock)
    lg.put(("a",), "k", {"v": 1}, ttl=1)
    clock.advance(minutes=2)
    lg.put(("a",), "k", {"v": 2})
    item = lg.get(("a",), "k")
    assert item is not None and item.value == {"v": 2} and item.created_at == clock.now
    clock.advance(days=365)
    assert lg.get(("a",), "k") is not None  # the new put has no TTL


def test_the_sweeper_thread_deletes_expired_items(store: Store) -> None:
    clock = Clock()
    lg = AgentkeepStore(store, clock=clock, ttl_config={"sweep_interval_minutes": 1})
    lg.put(("a",), "k", {"v": 1}, ttl=1)
    lg.put(("a",), "stays", {"v": 2})
    clock.advance(minutes=2)
    thread = lg.start_ttl_sweeper(0.0005)  # every 30 ms
    assert lg.start_ttl_sweeper() is thread  # one sweeper per store
    _wait_for(lambda: _rows(store) == 1, "the sweeper to delete the expired item")
    assert lg.stop_ttl_sweeper(timeout=10) and not thread.is_alive()
    assert lg.get(("a",), "stays") is not None


# --- bad input, tenants, restarts, async ----------------------------------------------


@pytest.mark.parametrize(
    ("op", "field"),
    [
        (PutOp(("a.b",), "k", {"v": 1}), "namespace[0]"),
        (PutOp(("a", ""), "k", {"v": 1}), "namespace[1]"),
        (PutOp((), "k", {"v": 1}), "namespace"),
        (PutOp(("a",), "k", ["not", "a", "dict"]), "value"),  # type: ignore[arg-type]
        (PutOp(("a",), "k", {"v": object()}), "value"),
        (PutOp(("a",), "k", {"v": float("nan")}), "value"),
        (PutOp(("a",), "", {"v": 1}), "key"),
        (PutOp(("a",), "k", {"v": 1}, ttl=-1), "ttl"),
        (GetOp(("a", "x.y"), "k"), "namespace[1]"),
        (ListNamespacesOp((MatchCondition("prefix", ("a.",)),)), "prefix[0]"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(store: Store, op: Any, field: str) -> None:
    lg = AgentkeepStore(store)
    lg.put(("a",), "k", {"v": "before"})
    with pytest.raises(InvalidInput) as caught:
        lg.batch([PutOp(("a",), "k", {"v": "after"}), PutOp(("b",), "new", {"v": 1}), op])
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)  # what LangGraph's stores raise
    assert lg.get(("a",), "k").value == {"v": "before"}  # type: ignore[union-attr]
    assert lg.get(("b",), "new") is None


def test_a_bad_filter_names_the_operator(store: Store) -> None:
    lg = AgentkeepStore(store)
    with pytest.raises(InvalidInput, match=r"\$regex") as caught:
        lg.search(("a",), filter={"n": {"$regex": "x"}})
    assert caught.value.field == "filter.n"
    with pytest.raises(InvalidInput) as caught:
        lg.search(("a",), limit=-1)
    assert caught.value.field == "limit"


def test_tenants_do_not_see_each_other(store: Store) -> None:
    clock = Clock()
    other = store.tenant(f"{store.tenant_id}_other")
    mine, theirs = AgentkeepStore(store, clock=clock), AgentkeepStore(other, clock=clock)
    mine.put(("memories", "u"), "k", {"who": "mine"}, ttl=1)
    theirs.put(("memories", "u"), "k", {"who": "theirs"}, ttl=1)
    theirs.put(("only", "theirs"), "k", {"who": "theirs"})
    assert mine.get(("memories", "u"), "k").value == {"who": "mine"}  # type: ignore[union-attr]
    assert [i.value["who"] for i in mine.search(())] == ["mine"]
    assert mine.list_namespaces() == [("memories", "u")]
    mine.delete(("memories", "u"), "k")
    assert theirs.get(("memories", "u"), "k") is not None
    theirs.put(("memories", "u"), "k", {"who": "theirs"}, ttl=1)
    mine.put(("memories", "u"), "k", {"who": "mine"}, ttl=1)
    clock.advance(minutes=2)
    assert mine.sweep_ttl() == 1 and _rows(other) == 2  # a tenant sweeps its own items


async def test_the_async_store_backed_store(astore: AsyncStore) -> None:
    clock = Clock()
    lg = AgentkeepStore(astore, clock=clock)
    await lg.aput(("a", "b"), "k", {"v": 1}, ttl=1)
    await lg.aput(("a", "c"), "k", {"v": 2})
    got = await lg.aget(("a", "b"), "k")
    assert got is not None and got.value == {"v": 1}
    assert [i.value for i in await lg.asearch(("a",), filter={"v": {"$gte": 2}})] == [{"v": 2}]
    assert await lg.alist_namespaces(prefix=("a",)) == [("a", "b"), ("a", "c")]
    await lg.adelete(("a", "c"), "k")
    clock.advance(minutes=2)
    assert await lg.asearch(("a",)) == [] and await lg.asweep_ttl() == 1
    assert await astore.graph_items.search(()) == []


async def test_an_async_batch_runs_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``abatch`` awaits the store's async connections (no worker thread): its puts and
    deletes are one write (one statement on PostgreSQL, a row's each on SQLite), its
    reads one read each, and a read's TTL refresh one write."""
    pg = store.url.startswith("postgresql")
    clock = Clock()
    lg = AgentkeepStore(astore, clock=clock)
    await lg.abatch([PutOp(("a", "b"), f"k{i}", {"i": i}, ttl=1) for i in range(5)])
    no_worker_threads(monkeypatch, "a LangGraph store batch")

    with sent_statements(store) as sent:
        await lg.abatch(
            [
                PutOp(("a", "b"), "k0", None),
                PutOp(("a", "b"), "k1", {"i": 10}),
                PutOp(("a", "c"), "new", {"i": 11}),
            ]
        )
    assert len(work(sent)) == (1 if pg else 3), work(sent)
    clock.advance(seconds=50)
    with sent_statements(store) as sent:
        got, found, listed = await lg.abatch(
            [
                GetOp(("a", "b"), "k1", refresh_ttl=True),  # no TTL any more: nothing to refresh
                SearchOp(("a", "b"), filter={"i": {"$gte": 3, "$lt": 10}}, refresh_ttl=True),
                ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("a",)),)),
            ]
        )
    # three reads and the search's refresh (of two rows: a statement each on SQLite)
    assert len(work(sent)) == (4 if pg else 5), work(sent)
    assert got is not None and got.value == {"i": 10}
    assert found is not None and [i.key for i in found] == ["k3", "k4"]  # same update time: by key
    assert listed == [("a", "b"), ("a", "c")]

    clock.advance(seconds=30)  # 80 s after the put: k2 expired, k3 and k4 refreshed at 50 s
    left = await lg.asearch(("a", "b"))
    assert sorted(i.key for i in left) == ["k1", "k3", "k4"]
    assert sorted(i.key for i in lg.search(("a", "b"))) == ["k1", "k3", "k4"]
    assert await lg.asweep_ttl() == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_search_that_sorts_is_not_jit_compiled(store: Store, astore: AsyncStore) -> None:
    """A search orders by update time, which no index gives: PostgreSQL sorts. The store's
    own connections run with sorts costed out (for the message reads), which put such a
    plan above ``jit_above_cost``: each search was JIT compiled (70-110 ms for a page of
    200 items). On the sync and the async connections, its plan has no JIT."""
    for i in range(20):
        store.graph_items.put(("mem", f"u{i % 3}"), f"k{i}", {"i": i})
    page = store.graph_items._sql(("search", True), lambda: graph_item_sql.search(True))
    params = {"tenant_id": store.tenant_id, "at": 0, "limit": 10, "offset": 0}
    explain = page.stmt({**params, **graph_item_sql.prefix_params(("mem",))})
    explain = explain._replace(sql="EXPLAIN (ANALYZE, FORMAT JSON) " + explain.sql)

    def steps() -> Any:
        plan = yield explain
        return plan[0][0][0]

    plans = [
        store._core.run_read("explaining", lambda cur: run_steps(cur, steps())),
        await store._core.aio.read("explaining", steps),
    ]
    for plan in plans:
        assert "Sort" in json.dumps(plan["Plan"]), plan  # the statement does sort
        assert "JIT" not in plan, plan["JIT"]


def test_items_outlive_the_process_that_wrote_them(backend: str, db_url: str) -> None:
    if backend == "memory":
        pytest.skip("memory does not outlive its store")
    tenant = f"lgs{next(_ids)}_{backend}"
    with agentkeep.connect(db_url, tenant=tenant) as first:
        AgentkeepStore(first).put(("memories", "u1"), "fact", {"likes": "tea"}, ttl=60)
    with agentkeep.connect(db_url, tenant=tenant) as reopened:  # as after a restart
        lg = AgentkeepStore(reopened)
        item = lg.get(("memories", "u1"), "fact")
        assert item is not None and item.value == {"likes": "tea"}
        assert lg.list_namespaces() == [("memories", "u1")]
        if (
            backend == "postgres"
        ):  # the prefix range compares bytes whatever the database's collation
            with reopened._core.read() as conn:
                collation = conn.execute(
                    sa.text(
                        "SELECT collation_name FROM information_schema.columns"
                        " WHERE table_name = 'graph_store_items' AND column_name = 'namespace'"
                    )
                ).scalar_one()
            assert collation == "C"


# --- a real graph ---------------------------------------------------------------------


def _memory_graph(lg: AgentkeepStore, saver: AgentkeepSaver) -> Any:
    """A node that remembers what the user says their name is, per user, across threads."""

    def remember(
        state: MessagesState, config: RunnableConfig, *, store: BaseStore
    ) -> dict[str, list[AIMessage]]:
        memories = ("memories", config["configurable"]["user_id"])
        said = str(state["messages"][-1].content)
        if said.startswith("I am "):
            store.put(memories, "name", {"name": said.removeprefix("I am ")})
        known = store.get(memories, "name")
        return {"messages": [AIMessage(f"hello {known.value['name']}" if known else "who?")]}

    builder = StateGraph(MessagesState)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    return builder.compile(checkpointer=saver, store=lg)


def _say(graph: Any, text: str, thread: str, user: str) -> str:
    config = {"configurable": {"thread_id": thread, "user_id": user}}
    out = graph.invoke({"messages": [HumanMessage(text)]}, config)
    return str(out["messages"][-1].content)


def test_a_graph_remembers_across_threads_and_a_restart(backend: str, db_url: str) -> None:
    tenant = f"lgs{next(_ids)}_{backend}"
    with agentkeep.connect(db_url, tenant=tenant) as first:
        graph = _memory_graph(AgentkeepStore(first), AgentkeepSaver(first))
        assert _say(graph, "hi", "t1", "ada") == "who?"
        assert _say(graph, "I am Ada", "t1", "ada") == "hello Ada"
        assert _say(graph, "hi again", "t2", "ada") == "hello Ada"  # another thread
        assert _say(graph, "hi", "t3", "bob") == "who?"  # another user
        if backend == "memory":
            return  # memory does not outlive its store
    with agentkeep.connect(db_url, tenant=tenant) as reopened:  # as after a restart
        graph = _memory_graph(AgentkeepStore(reopened), AgentkeepSaver(reopened))
        assert _say(graph, "back", "t4", "ada") == "hello Ada"
        item = AgentkeepStore(reopened).get(("memories", "ada"), "name")
        assert item is not None and item.value == {"name": "Ada"}


async def test_an_async_graph_remembers_across_a_restart(backend: str, db_url: str) -> None:
    tenant = f"lgs{next(_ids)}_{backend}"
    config = {"configurable": {"thread_id": "t1", "user_id": "ada"}}
    astore = await agentkeep.aconnect(db_url, tenant=tenant)
    graph = _memory_graph(AgentkeepStore(astore), AgentkeepSaver(astore))
    out = await graph.ainvoke({"messages": [HumanMessage("I am Ada")]}, config)
    assert out["messages"][-1].content == "hello Ada"
    await astore.close()
    if backend == "memory":
        return
    astore = await agentkeep.aconnect(db_url, tenant=tenant)
    graph = _memory_graph(AgentkeepStore(astore), AgentkeepSaver(astore))
    later = {"configurable": {"thread_id": "t2", "user_id": "ada"}}
    out = await graph.ainvoke({"messages": [HumanMessage("hi")]}, later)
    assert out["messages"][-1].content == "hello Ada"
    await astore.close()
