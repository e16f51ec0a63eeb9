"""Agents (assistants): create, read, versioned update, delete, list."""

from __future__ import annotations

import pytest
from _errors import check_not_found
from _statements import sent_statements, verbs, work
from _threads import in_threads, no_worker_threads

from agentkeep import AsyncStore, Conflict, InvalidInput, NotFound, Store

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def test_create_get_round_trip(store: Store) -> None:
    a = store.agents.create(
        model="gpt-4o-mini",
        name="Helper",
        instructions="Be brief.",
        tools=[TOOL],
        metadata={"team": "x"},
        extra={"temperature": 0.2},
    )
    assert a.id.startswith("asst_")
    assert store.agents.get(a.id) == a
    assert (a.version, a.tools, a.extra) == (1, [TOOL], {"temperature": 0.2})


def test_invalid_input_names_the_field_and_writes_nothing(store: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        store.agents.create(model="")
    assert err.value.field == "model"
    with pytest.raises(InvalidInput) as err:
        store.agents.create(model="m", tools=[{"type": "function", "function": {}}])
    assert err.value.field == "tools[0].function.name"
    with pytest.raises(InvalidInput) as err:
        store.agents.create(model="m", metadata={"k": 1})  # type: ignore[dict-item]
    assert err.value.field == "metadata.k"
    assert store.agents.list().items == []


def test_update_is_versioned(store: Store) -> None:
    a = store.agents.create(model="m1")
    b = store.agents.update(a.id, model="m2", expected_version=1)
    assert (b.model, b.version) == ("m2", 2)
    assert b.updated_at >= a.updated_at
    with pytest.raises(Conflict):
        store.agents.update(a.id, name="stale", expected_version=1)
    assert store.agents.get(a.id).name is None
    c = store.agents.update(a.id, name=None, instructions="new")
    assert (c.instructions, c.version) == ("new", 3)


def test_locked_get_holds_the_agent_for_a_read_modify_write(store: Store) -> None:
    """``get(lock=True)`` in a transaction: a concurrent update waits; one change, one version."""
    import threading

    a = store.agents.create(model="m", extra={"temperature": 0.1})
    with pytest.raises(NotFound), store.transaction():
        store.agents.get("asst_missing", lock=True)
    other_done = threading.Event()

    def other() -> None:
        store.agents.update(a.id, name="other")
        other_done.set()

    worker = threading.Thread(target=other)
    with store.transaction():
        current = store.agents.get(a.id, lock=True)
        assert current.version == 1  # a locking read changes nothing
        worker.start()
        assert not other_done.wait(0.3)  # the other update waits for our commit
        store.agents.update(
            a.id, expected_version=current.version, extra={**current.extra, "top_p": 1}
        )
    worker.join(10)
    final = store.agents.get(a.id)
    assert (final.version, final.name, final.extra) == (
        3,
        "other",
        {"temperature": 0.1, "top_p": 1},
    )


def test_delete_then_not_found(store: Store) -> None:
    a = store.agents.create(model="m")
    store.agents.delete(a.id)
    with pytest.raises(NotFound):
        store.agents.get(a.id)
    with pytest.raises(NotFound):
        store.agents.delete(a.id)
    with pytest.raises(NotFound):
        store.agents.update(a.id, name="x")


def test_list_pages_newest_first(store: Store) -> None:
    made = [store.agents.create(model="m", name=f"a{i}") for i in range(5)]
    first = store.agents.list(limit=2)
    assert [a.id for a in first] == [made[4].id, made[3].id] and first.has_more
    rest = store.agents.list(limit=10, after=first.last_id)
    assert [a.id for a in rest] == [made[2].id, made[1].id, made[0].id] and not rest.has_more
    asc = store.agents.list(order="asc", limit=1)
    assert asc.first_id == made[0].id
    with pytest.raises(InvalidInput) as err:
        store.agents.list(limit=0)
    assert err.value.field == "limit"


def test_explicit_id_must_be_unique(store: Store) -> None:
    store.agents.create(model="m", id="asst_fixed")
    with pytest.raises(Conflict):
        store.agents.create(model="m", id="asst_fixed")
    # another tenant may use the same id
    assert (
        store.tenant(store.tenant_id + "_b").agents.create(model="m", id="asst_fixed").id
        == "asst_fixed"
    )


async def test_async_agents(astore: AsyncStore) -> None:
    a = await astore.agents.create(model="m")
    assert (await astore.agents.get(a.id)).id == a.id
    page = await astore.agents.list()
    assert [x.id for x in page] == [a.id]


def test_list_filters_by_name_model_metadata_and_time(store: Store) -> None:
    a = store.agents.create(model="gpt-4o-mini", name="support", metadata={"team": "care"})
    b = store.agents.create(model="gpt-4o-mini", name="sales", metadata={"team": "growth"})
    c = store.agents.create(model="llama3.1", name="support", metadata={"team": "care", "x": "1"})

    def ids(**filters: object) -> list[str]:
        return [agent.id for agent in store.agents.list(order="asc", **filters).items]  # type: ignore[arg-type]

    assert ids(name="support") == [a.id, c.id]
    assert ids(model="gpt-4o-mini") == [a.id, b.id]
    assert ids(metadata={"team": "care"}) == [a.id, c.id]
    assert ids(metadata={"team": "care", "x": "1"}) == [c.id]
    assert ids(name="support", model="llama3.1") == [c.id]
    assert ids(created_after=b.created_at) == [
        x.id for x in (a, b, c) if x.created_at >= b.created_at
    ]
    assert ids(created_before=b.created_at) == [
        x.id for x in (a, b, c) if x.created_at < b.created_at
    ]
    page = store.agents.list(name="support", limit=1, order="asc")
    assert [x.id for x in page.items] == [a.id] and page.has_more
    with pytest.raises(InvalidInput) as err:
        store.agents.list(metadata={"k": 1})  # type: ignore[dict-item]
    assert err.value.field == "metadata.k"


def test_every_change_keeps_the_previous_version(store: Store) -> None:
    a = store.agents.create(model="m1", name="v1", tools=[TOOL], extra={"temperature": 0.1})
    store.agents.update(a.id, model="m2", name="v2")
    store.agents.update(a.id, instructions="be brief", tools=[], extra={})
    current = store.agents.get(a.id)
    assert current.version == 3
    first = store.agents.get(a.id, version=1)
    assert (first.version, first.model, first.name, first.tools, first.extra) == (
        1,
        "m1",
        "v1",
        [TOOL],
        {"temperature": 0.1},
    )
    second = store.agents.get(a.id, version=2)
    assert (second.model, second.name, second.instructions, second.tools) == (
        "m2",
        "v2",
        None,
        [TOOL],
    )
    assert store.agents.get(a.id, version=3) == current
    assert first.created_at == current.created_at and first.updated_at <= second.updated_at
    with pytest.raises(NotFound):
        store.agents.get(a.id, version=4)
    with pytest.raises(InvalidInput) as err:
        store.agents.get(a.id, version=0)
    assert err.value.field == "version"
    # a refused update keeps no version
    with pytest.raises(Conflict):
        store.agents.update(a.id, name="stale", expected_version=1)
    assert [v.version for v in store.agents.versions(a.id)] == [3, 2, 1]
    # another tenant sees none of them
    with pytest.raises(NotFound):
        store.tenant(store.tenant_id + "_x").agents.get(a.id, version=1)


def test_versions_are_paged_both_ways(store: Store) -> None:
    a = store.agents.create(model="m", name="n0")
    for i in range(1, 5):
        store.agents.update(a.id, name=f"n{i}")
    page = store.agents.versions(a.id, limit=2)
    assert [(v.version, v.name) for v in page] == [(5, "n4"), (4, "n3")] and page.has_more
    page = store.agents.versions(a.id, limit=2, after_version=page.items[-1].version)
    assert [v.version for v in page] == [3, 2] and page.has_more
    page = store.agents.versions(a.id, limit=2, after_version=2)
    assert [v.version for v in page] == [1] and not page.has_more
    up = store.agents.versions(a.id, limit=3, order="asc")
    assert [v.version for v in up] == [1, 2, 3] and up.has_more
    up = store.agents.versions(a.id, limit=3, order="asc", after_version=3)
    assert [v.version for v in up] == [4, 5] and not up.has_more
    assert [v.version for v in store.agents.versions(a.id, order="asc", after_version=4)] == [5]
    with pytest.raises(InvalidInput) as err:
        store.agents.versions(a.id, limit=0)
    assert err.value.field == "limit"
    with pytest.raises(NotFound):
        store.agents.versions("asst_missing")
    store.agents.delete(a.id)  # the history goes with the agent
    with pytest.raises(NotFound):
        store.agents.versions(a.id)
    with pytest.raises(NotFound):
        store.agents.get(a.id, version=1)


def test_a_run_records_the_agent_version_it_was_made_with(store: Store) -> None:
    a = store.agents.create(model="m", instructions="v1")
    first = store.runs.create(a.id)
    store.agents.update(a.id, instructions="v2")
    second = store.runs.create(a.id)
    assert (first.agent_version, second.agent_version) == (1, 2)
    assert store.runs.get(first.id).agent_version == 1
    ran_with = store.agents.get(a.id, version=store.runs.get(first.id).agent_version)
    assert ran_with.instructions == "v1"
    assert store.runs.create("asst_not_stored").agent_version is None
    assert store.runs.create(a.id, agent_version=None).agent_version is None
    assert store.runs.create(a.id, agent_version=7).agent_version == 7  # an import says so
    with pytest.raises(InvalidInput) as err:
        store.runs.create(a.id, agent_version=0)
    assert err.value.field == "agent_version"
    with store.transaction():  # read in the run's own write
        store.agents.update(a.id, name="x")
        assert store.runs.create(a.id).agent_version == 3


async def test_async_versions(astore: AsyncStore) -> None:
    a = await astore.agents.create(model="m")
    await astore.agents.update(a.id, model="m2")
    assert (await astore.agents.get(a.id, version=1)).model == "m"
    assert [v.version for v in await astore.agents.versions(a.id)] == [2, 1]


async def test_versions_are_one_read_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page of an agent's versions, both ways, as the sync API pages them: one read
    of two statements (the agent, then its kept versions), no worker thread."""
    a = store.agents.create(model="m", name="v1")
    for i in range(2, 6):
        store.agents.update(a.id, name=f"v{i}")
    no_worker_threads(monkeypatch, "agents.versions")
    for order in ("desc", "asc"):
        seen: list[int] = []
        after: int | None = None
        while True:
            with sent_statements(store) as sent:
                page = await astore.agents.versions(a.id, limit=2, after_version=after, order=order)
            assert verbs(sent) == ["SELECT", "SELECT"], work(sent)
            assert page == store.agents.versions(a.id, limit=2, after_version=after, order=order)
            seen += [v.version for v in page.items]
            assert [v.name for v in page.items] == [f"v{v.version}" for v in page.items]
            if not page.has_more:
                break
            after = page.items[-1].version
        assert seen == ([5, 4, 3, 2, 1] if order == "desc" else [1, 2, 3, 4, 5])
    with pytest.raises(NotFound):
        await astore.agents.versions("asst_missing")
    with pytest.raises(InvalidInput) as bad:
        await astore.agents.versions(a.id, order="up")  # type: ignore[arg-type]
    assert bad.value.field == "order"


async def test_get_reads_every_version_as_its_writes_returned_sync_and_async(
    store: Store,
) -> None:
    """``agents.get`` is one read on the driver (the async API's without a thread): the
    current agent and each earlier version read back as the create and updates returned
    them, every JSON column's type kept; NotFound names the agent, then the version."""
    made = store.agents.create(
        model="m1",
        name="v1",
        instructions='say "hi"\n é',
        tools=[TOOL, {"type": "code_interpreter"}],
        metadata={"k": "v"},
        extra={"temperature": 0.2, "nested": {"a": [1, None, "null"]}},
    )
    second = store.agents.update(made.id, model="m2", tools=[], extra={"s": "42"})
    third = store.agents.update(made.id, description="d", metadata={})
    astore = AsyncStore(store)
    for version, expected in ((1, made), (2, second), (3, third), (None, third)):
        for got in (
            store.agents.get(made.id, version=version),
            await astore.agents.get(made.id, version=version),
        ):
            assert got == expected
            assert got.model_dump() == expected.model_dump()
            assert type(got.version) is int and got.updated_at.tzinfo is not None
    assert await astore.agents.get(made.id, lock=True) == third
    check_not_found(
        [
            (lambda: store.agents.get("asst_missing"), "agent", "asst_missing"),
            (lambda: store.agents.get("asst_missing", version=1), "agent", "asst_missing"),
            (lambda: store.agents.get(made.id, version=4), "agent version", f"{made.id}@4"),
            (lambda: store.tenant("t_other").agents.get(made.id), "agent", made.id),
        ]
    )
    with pytest.raises(NotFound):
        await astore.agents.get(made.id, version=4)


def test_racing_changes_each_keep_the_version_they_replaced(store: Store) -> None:
    """Writers changing an agent at once, without a version: each change lands (on the
    version it read, or read again), and the history holds every version once."""
    agent = store.agents.create(model="m", name="v1")
    n = 6
    in_threads(n, lambda i: store.agents.update(agent.id, name=f"by{i}"))
    versions = store.agents.versions(agent.id, limit=100, order="asc").items
    assert [v.version for v in versions] == list(range(1, n + 2))
    assert versions[0].name == "v1"
    assert sorted(v.name or "" for v in versions[1:]) == sorted(f"by{i}" for i in range(n))


async def test_agents_are_made_and_changed_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread: a create is one statement; a change keeps the version it replaces
    in the same write (one statement on PostgreSQL, a copy and the update on SQLite),
    after a read of the version when none is expected."""
    pg = store.url.startswith("postgresql")
    no_worker_threads(monkeypatch, "agents")
    with sent_statements(store) as sent:
        agent = await astore.agents.create(
            model="m", name="a", tools=[{"type": "code_interpreter"}]
        )
    assert verbs(work(sent)) == ["INSERT"], work(sent)
    assert await astore.agents.get(agent.id) == agent
    with sent_statements(store) as sent:
        renamed = await astore.agents.update(agent.id, expected_version=1, name="b")
    assert verbs(work(sent)) == (["WITH"] if pg else ["INSERT", "UPDATE"]), work(sent)
    with sent_statements(store) as sent:
        again = await astore.agents.update(agent.id, instructions="be brief")
    assert verbs(work(sent)) == (["SELECT", "WITH"] if pg else ["SELECT", "INSERT", "UPDATE"])
    assert (renamed.version, again.version, again.name) == (2, 3, "b")
    with pytest.raises(Conflict) as stale:
        await astore.agents.update(agent.id, expected_version=2, name="lost")
    assert stale.value.current_version == 3
    with pytest.raises(NotFound):
        await astore.agents.update("asst_missing", name="x")
    other = AsyncStore(store.tenant(store.tenant_id + "_other"))
    with pytest.raises(NotFound):
        await other.agents.update(agent.id, name="theirs")
    kept = store.agents.versions(agent.id, order="asc").items
    assert [(v.version, v.name, v.instructions) for v in kept] == [
        (1, "a", None),
        (2, "b", None),
        (3, "b", "be brief"),
    ]
    assert await astore.agents.get(agent.id, version=1) == agent
