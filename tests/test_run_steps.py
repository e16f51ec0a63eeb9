"""Run steps: created on a run, updated to a terminal status, listed in order."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from _paging import check_every_page
from _statements import sent_statements, verbs, work
from _threads import no_worker_threads

from agentkeep import AsyncStore, InvalidInput, InvalidTransition, NotFound, Store
from agentkeep.store import schema


def test_create_copies_session_and_agent_from_the_run(store: Store) -> None:
    s = store.sessions.create()
    run = store.runs.create("asst_1", session_id=s.id)
    step = store.run_steps.create(
        run.id,
        "message_creation",
        details={"message_creation": {"message_id": "msg_1"}},
        metadata={"k": "v"},
    )
    assert step.id.startswith("step_")
    assert (step.run_id, step.session_id, step.agent_id) == (run.id, s.id, "asst_1")
    assert (step.status, step.input_tokens, step.last_error, step.finished_at) == (
        "in_progress",
        0,
        None,
        None,
    )
    assert store.run_steps.get(step.id) == step


def test_a_step_created_finished_has_finished_at(store: Store) -> None:
    run = store.runs.create("a")
    step = store.run_steps.create(run.id, "tool_calls", status="completed")
    assert step.finished_at is not None


def test_step_on_a_missing_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as err:
        store.run_steps.create("run_missing", "tool_calls")
    assert (err.value.kind, err.value.ident) == ("run", "run_missing")
    other = store.tenant(store.tenant_id + "_b").runs.create("a")
    with pytest.raises(NotFound):
        store.run_steps.create(other.id, "tool_calls")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"type": "thinking"}, "type"),
        ({"status": "queued"}, "status"),
        ({"details": ["x"]}, "details"),
        ({"details": {"x": object()}}, "details"),
        ({"metadata": {"k": 2}}, "metadata.k"),
        ({"id": ""}, "id"),
    ],
)
def test_bad_input_names_the_field(store: Store, kwargs: dict[str, Any], field: str) -> None:
    run = store.runs.create("a")
    args = {"type": "tool_calls", **kwargs}
    with pytest.raises(InvalidInput) as err:
        store.run_steps.create(run.id, args.pop("type"), **args)
    assert err.value.field == field
    assert store.run_steps.list(run.id).items == []


def test_update_finishes_a_step(store: Store) -> None:
    run = store.runs.create("a")
    step = store.run_steps.create(run.id, "tool_calls")
    details = {"tool_calls": [{"id": "call_1", "type": "function"}]}
    working = store.run_steps.update(step.id, details=details, input_tokens=7)
    assert working.details == details and working.input_tokens == 7
    assert working.finished_at is None
    done = store.run_steps.update(step.id, status="completed", output_tokens=3)
    assert done.status == "completed" and done.finished_at is not None
    assert (done.input_tokens, done.output_tokens) == (7, 3)
    assert store.run_steps.get(step.id) == done
    again = store.run_steps.update(step.id, status="completed")
    assert again.finished_at == done.finished_at
    with pytest.raises(InvalidTransition) as err:
        store.run_steps.update(step.id, status="in_progress", output_tokens=99)
    assert (err.value.current, err.value.target) == ("completed", "in_progress")
    assert store.run_steps.get(step.id) == again  # the refused update wrote nothing
    with pytest.raises(InvalidTransition):
        store.run_steps.update(step.id, status="failed")
    assert store.run_steps.get(step.id) == again


def test_an_update_is_one_statement(store: Store) -> None:
    """The worker ends a message's step every turn: one UPDATE that checks the status and
    gives the row back, without a read before it."""
    run = store.runs.create("a")
    step = store.run_steps.create(run.id, "message_creation")
    with sent_statements(store) as statements:
        done = store.run_steps.update(step.id, status="completed", input_tokens=2, output_tokens=3)
    assert verbs(statements) == ["UPDATE"]
    assert (done.status, done.input_tokens, done.output_tokens) == ("completed", 2, 3)
    assert done.finished_at is not None and done.updated_at == done.finished_at
    assert store.run_steps.get(step.id) == done


def test_a_failed_step_keeps_its_error(store: Store) -> None:
    run = store.runs.create("a")
    step = store.run_steps.create(run.id, "message_creation")
    failed = store.run_steps.update(
        step.id, status="failed", last_error={"code": "server_error", "message": "x"}
    )
    assert failed.last_error == {"code": "server_error", "message": "x"}
    assert store.run_steps.get(step.id).last_error == failed.last_error
    cleared = store.run_steps.update(step.id, last_error=None)
    assert cleared.last_error is None and store.run_steps.get(step.id).last_error is None


def test_update_checks_input_before_writing(store: Store) -> None:
    run = store.runs.create("a")
    step = store.run_steps.create(run.id, "tool_calls")
    for kwargs, field in (
        ({"status": "done"}, "status"),
        ({"input_tokens": -5}, "input_tokens"),
        ({"details": "x"}, "details"),
        ({"last_error": 3}, "last_error"),
    ):
        with pytest.raises(InvalidInput) as err:
            store.run_steps.update(step.id, **kwargs)
        assert err.value.field == field
    assert store.run_steps.get(step.id) == step
    with pytest.raises(NotFound):
        store.run_steps.update("step_missing", status="completed")
    with pytest.raises(InvalidInput) as err:
        store.run_steps.get(None)  # type: ignore[arg-type]
    assert err.value.field == "step_id"
    with pytest.raises(InvalidInput) as err:
        store.run_steps.list(5)  # type: ignore[arg-type]
    assert err.value.field == "run_id"


def test_list_pages_through_a_runs_steps(store: Store) -> None:
    run = store.runs.create("a")
    other = store.runs.create("a")
    made = [store.run_steps.create(run.id, "tool_calls") for _ in range(5)]
    store.run_steps.create(other.id, "tool_calls")
    page = store.run_steps.list(run.id, limit=3)
    assert [s.id for s in page] == [s.id for s in reversed(made)][:3] and page.has_more
    rest = store.run_steps.list(run.id, limit=3, after=page.last_id)
    assert [s.id for s in rest] == [made[1].id, made[0].id] and not rest.has_more
    assert [s.id for s in store.run_steps.list(run.id, order="asc")] == [s.id for s in made]
    with pytest.raises(NotFound):
        store.run_steps.list("run_missing")
    assert store.run_steps.list(store.runs.create("a").id).items == []


def test_tenants_do_not_see_each_others_steps(store: Store) -> None:
    run = store.runs.create("a")
    step = store.run_steps.create(run.id, "tool_calls")
    other = store.tenant(store.tenant_id + "_b")
    with pytest.raises(NotFound):
        other.run_steps.get(step.id)
    with pytest.raises(NotFound):
        other.run_steps.update(step.id, status="completed")
    with pytest.raises(NotFound):
        other.run_steps.list(run.id)


async def test_async_run_steps(astore: AsyncStore) -> None:
    run = await astore.runs.create("a")
    step = await astore.run_steps.create(run.id, "message_creation")
    done = await astore.run_steps.update(step.id, status="completed")
    assert done.finished_at is not None
    assert [s.id for s in await astore.run_steps.list(run.id)] == [step.id]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_every_page_of_a_runs_steps_matches_the_listing_sync_and_async(
    store: Store, order: str
) -> None:
    """``run_steps.list`` and ``get`` are compiled reads on the driver (the async API's
    without a thread): every page, past ``after``, before ``before`` and between both,
    is the slice of the run's steps in order, each step as written (types kept)."""
    run = store.runs.create("a")
    other = store.runs.create("a")
    made = [
        store.run_steps.create(
            run.id, "tool_calls" if i % 2 else "message_creation", details={"i": i, "s": "é\n"}
        )
        for i in range(7)
    ]
    made[3] = store.run_steps.update(made[3].id, status="failed", last_error={"code": "x"})
    store.run_steps.create(other.id, "tool_calls")
    listing = sorted(made, key=lambda s: s.id, reverse=order == "desc")
    ids = [s.id for s in listing]
    astore = AsyncStore(store)
    for page in (
        store.run_steps.list(run.id, order=order),
        await astore.run_steps.list(run.id, order=order),
    ):
        assert page.items == listing and page.items[3].model_dump() == listing[3].model_dump()
        assert (page.first_id, page.last_id, page.has_more) == (ids[0], ids[-1], False)
    for step in made:
        assert store.run_steps.get(step.id) == step == await astore.run_steps.get(step.id)
    check_every_page(
        ids, 3, lambda a, b: store.run_steps.list(run.id, order=order, limit=3, after=a, before=b)
    )
    assert store.run_steps.list(other.id).items[0].run_id == other.id
    with pytest.raises(InvalidInput) as bad:
        store.run_steps.list(run.id, limit=0)
    assert bad.value.field == "limit"
    with pytest.raises(InvalidInput) as bad:
        await astore.run_steps.list(run.id, order="up")  # type: ignore[arg-type]
    assert bad.value.field == "order"
    with pytest.raises(NotFound):
        await astore.run_steps.list("run_missing")
    with pytest.raises(NotFound):
        await astore.run_steps.get("step_missing")


async def test_steps_are_made_and_changed_on_the_async_connections(
    store: Store, astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread: a create and an update are one statement each (a second reads
    the step an update did not change); an error set then cleared is SQL NULL again."""
    s = store.sessions.create()
    run = store.runs.create("asst_1", session_id=s.id)
    no_worker_threads(monkeypatch, "run steps")
    with sent_statements(store) as sent:
        step = await astore.run_steps.create(run.id, "tool_calls", details={"a": [1]})
    assert verbs(work(sent)) == ["INSERT"], work(sent)
    assert (step.session_id, step.agent_id, step.details) == (s.id, "asst_1", {"a": [1]})
    assert await astore.run_steps.get(step.id) == step
    failed = await astore.run_steps.update(step.id, last_error="boom", input_tokens=3)
    assert failed.last_error is not None and failed.input_tokens == 3
    cleared = await astore.run_steps.update(step.id, last_error=None)
    assert cleared.last_error is None and store.run_steps.get(step.id) == cleared
    steps = schema.run_steps
    with store._core.read() as conn:  # SQL NULL, not JSON null: IS NULL finds it
        empty = steps.c.last_error.is_(None)
        assert conn.execute(sa.select(steps.c.id).where(steps.c.id == step.id, empty)).all()
    with sent_statements(store) as sent:
        done = await astore.run_steps.update(step.id, status="completed")
    assert verbs(work(sent)) == ["UPDATE"] and done.finished_at is not None, work(sent)
    with sent_statements(store) as sent, pytest.raises(InvalidTransition):
        await astore.run_steps.update(step.id, status="in_progress")
    assert verbs(work(sent)) == ["UPDATE", "SELECT"], work(sent)
    assert store.run_steps.get(step.id) == done
    with pytest.raises(NotFound):
        await astore.run_steps.update("step_missing", status="completed")
    with pytest.raises(NotFound):
        await astore.run_steps.create("run_missing", "tool_calls")
