"""AgentkeepSessionService under Google ADK's real Runner with a scripted LLM."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from _threads import no_worker_threads
from google.adk.agents import LlmAgent
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events import Event, EventActions
from google.adk.models import BaseLlm, LlmRequest, LlmResponse
from google.adk.models._capabilities import LlmCapabilities
from google.adk.runners import Runner
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.tools import ToolContext
from google.genai import types

import agentkeep
from agentkeep import AsyncStore, Store
from agentkeep.integrations.adk import AgentkeepSessionService

_ids = itertools.count()


class ScriptedLlm(BaseLlm):
    """Answers each model call with the next scripted response; keeps what it was sent."""

    responses: list[LlmResponse] = []
    requests: list[LlmRequest] = []

    @property
    def capabilities(self) -> LlmCapabilities:
        return LlmCapabilities(output_schema_and_tools=True)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(llm_request)
        yield self.responses.pop(0)


def _call(name: str, args: dict[str, Any]) -> LlmResponse:
    part = types.Part(function_call=types.FunctionCall(name=name, args=args, id=f"fc{next(_ids)}"))
    return LlmResponse(content=types.Content(role="model", parts=[part]))


def _text(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def remember(city: str, tool_context: ToolContext) -> str:
    """Remember a city, for the session, the user and the app."""
    tool_context.state["city"] = city
    tool_context.state["user:home"] = city
    tool_context.state["app:visits"] = tool_context.state.get("app:visits", 0) + 1
    tool_context.state["temp:scratch"] = "never stored"
    return f"remembered {city}"


def _user(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def _run(runner: Runner, session_id: str, text: str) -> list[Event]:
    return [
        e
        async for e in runner.run_async(
            user_id="u1", session_id=session_id, new_message=_user(text)
        )
    ]


def _runner(store: Store | AsyncStore, responses: list[LlmResponse]) -> tuple[Runner, ScriptedLlm]:
    llm = ScriptedLlm(model="scripted", responses=responses, requests=[])
    agent = LlmAgent(name="helper", model=llm, tools=[remember])
    service = AgentkeepSessionService(store)
    return Runner(agent=agent, app_name="shop", session_service=service), llm


def _dump(events: list[Event]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json", exclude_none=True) for e in events]


@pytest.mark.parametrize("backed", ["sync", "async"])
async def test_runner_events_and_state(store: Store, backed: str) -> None:
    target: Store | AsyncStore = store if backed == "sync" else AsyncStore(store)
    runner, _ = _runner(target, [_call("remember", {"city": "Oslo"}), _text("Noted Oslo")])
    service = runner.session_service
    created = await service.create_session(
        app_name="shop", user_id="u1", state={"app:plan": "pro", "user:name": "Ada", "mood": "ok"}
    )
    produced = await _run(runner, created.id, "remember Oslo")
    got = await service.get_session(app_name="shop", user_id="u1", session_id=created.id)
    assert got is not None
    assert got.state == {
        "app:plan": "pro",
        "app:visits": 1,
        "user:name": "Ada",
        "user:home": "Oslo",
        "mood": "ok",
        "city": "Oslo",
    }
    assert _dump(got.events[1:]) == _dump(produced)  # the user's message, then what the run made
    assert got.events[0].content.parts[0].text == "remember Oslo"  # type: ignore[union-attr,index]
    assert await service.get_user_state(app_name="shop", user_id="u1") == {
        "name": "Ada",
        "home": "Oslo",
    }
    # Events are messages of the session: the text is searchable like any other message.
    assert [m.text for m in store.messages.recent(created.id, 10)] == [
        "remember Oslo",
        "",
        "",
        "Noted Oslo",
    ]

    recent = await service.get_session(
        app_name="shop",
        user_id="u1",
        session_id=created.id,
        config=GetSessionConfig(num_recent_events=2),
    )
    assert recent is not None and _dump(recent.events) == _dump(got.events[-2:])
    since = await service.get_session(
        app_name="shop",
        user_id="u1",
        session_id=created.id,
        config=GetSessionConfig(after_timestamp=got.events[2].timestamp),
    )
    assert since is not None and _dump(since.events) == _dump(got.events[2:])
    none = await service.get_session(
        app_name="shop",
        user_id="u1",
        session_id=created.id,
        config=GetSessionConfig(num_recent_events=0),
    )
    assert none is not None and none.events == []
    assert await service.get_session(app_name="other", user_id="u1", session_id=created.id) is None


async def test_list_delete_and_duplicates(store: Store) -> None:
    service = AgentkeepSessionService(store)
    a = await service.create_session(app_name="shop", user_id="u1", session_id=f"a{next(_ids)}")
    b = await service.create_session(app_name="shop", user_id="u2", state={"user:x": 1})
    await service.create_session(app_name="blog", user_id="u1")
    listed = await service.list_sessions(app_name="shop")
    assert [s.id for s in listed.sessions] == [a.id, b.id]
    assert listed.sessions[1].state == {"user:x": 1}
    mine = await service.list_sessions(app_name="shop", user_id="u1")
    assert [s.id for s in mine.sessions] == [a.id]
    from google.adk.errors.already_exists_error import AlreadyExistsError

    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name="shop", user_id="u1", session_id=a.id)
    await service.delete_session(app_name="shop", user_id="u1", session_id=a.id)
    assert await service.get_session(app_name="shop", user_id="u1", session_id=a.id) is None


def _fail_clock_call(monkeypatch: pytest.MonkeyPatch, failing: int) -> None:
    """Make the ADK operations' clock raise ``RuntimeError("disk full")`` at call ``failing``
    (counted from 0): a failure at a chosen step of an append."""
    from agentkeep.integrations import _adk_ops

    calls = itertools.count()

    def clock() -> int:
        if next(calls) == failing:
            raise RuntimeError("disk full")
        return 1_700_000_000_000_000

    monkeypatch.setattr(_adk_ops, "utcnow_micros", clock)


async def test_append_is_atomic_and_refuses_stale_sessions(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event with app and user deltas: the documents, the message and the session are
    written together or not at all."""

    service = AgentkeepSessionService(store)
    session = await service.create_session(app_name="shop", user_id="u1", state={"n": 0})
    stale = await service.get_session(app_name="shop", user_id="u1", session_id=session.id)
    assert stale is not None
    delta = EventActions(state_delta={"n": 1, "user:n": 1, "app:n": 1})
    await service.append_event(session, Event(author="user", actions=delta, content=_user("one")))
    with pytest.raises(StaleSessionError):
        await service.append_event(stale, Event(author="user", content=_user("late")))

    # The clock fails on SQLite after both documents are written, as the message is
    # appended; PostgreSQL's append is one statement, made after the clock's one call.
    _fail_clock_call(monkeypatch, 0 if backend == "postgres" else 2)
    delta = EventActions(state_delta={"n": 2, "user:n": 2, "app:n": 2})
    with pytest.raises(RuntimeError, match="disk full"):
        await service.append_event(
            session, Event(author="user", actions=delta, content=_user("two"))
        )
    monkeypatch.undo()
    fresh = await service.get_session(app_name="shop", user_id="u1", session_id=session.id)
    assert fresh is not None
    assert fresh.state == {"n": 1, "user:n": 1, "app:n": 1}  # nothing of the failed append
    assert [e.content.parts[0].text for e in fresh.events] == ["one"]  # type: ignore[union-attr,index]


async def test_app_and_user_deltas_merge_on_the_async_api_under_concurrent_appends(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events with ``app:`` and ``user:`` deltas are one operation on the async API (no
    worker thread): each delta is merged into the stored document (other keys kept), also
    when appends to sessions of the same user and app run at once."""
    service = AgentkeepSessionService(store)
    first = await service.create_session(
        app_name="shop", user_id="u7", state={"app:plan": "pro", "user:name": "Ada"}
    )
    others = [await service.create_session(app_name="shop", user_id="u7") for _ in range(8)]

    no_worker_threads(monkeypatch, "append_event")

    async def append(n: int, session: Any) -> None:
        delta = {f"user:k{n}": n, f"app:k{n}": n, "mine": n}
        event = Event(author="user", actions=EventActions(state_delta=delta), content=_user(f"{n}"))
        await service.append_event(session, event)

    await asyncio.gather(*(append(n, s) for n, s in enumerate(others)))
    await append(99, first)
    got = await service.get_session(app_name="shop", user_id="u7", session_id=first.id)
    assert got is not None
    expected_user = {"name": "Ada", "k99": 99, **{f"k{n}": n for n in range(8)}}
    assert await service.get_user_state(app_name="shop", user_id="u7") == expected_user
    assert got.state == {
        "mine": 99,
        "app:plan": "pro",
        "app:k99": 99,
        **{f"app:k{n}": n for n in range(8)},
        **{f"user:{k}": v for k, v in expected_user.items()},
    }
    assert [e.content.parts[0].text for e in got.events] == ["99"]  # type: ignore[union-attr,index]
    assert store.state.get("adk:user:shop", "u7").version == 1 + 9  # created, then each merge


async def test_an_event_with_session_state_only_is_one_checked_atomic_write(
    store: Store, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-operation append (no app or user delta): stale, missing and failed appends."""
    from google.adk.errors.session_not_found_error import SessionNotFoundError

    service = AgentkeepSessionService(store)
    session = await service.create_session(app_name="shop", user_id="u1", state={"n": 0})
    stale = await service.get_session(app_name="shop", user_id="u1", session_id=session.id)
    assert stale is not None
    one = Event(author="user", actions=EventActions(state_delta={"n": 1}), content=_user("one"))
    await service.append_event(session, one)
    with pytest.raises(StaleSessionError):
        await service.append_event(stale, Event(author="user", content=_user("late")))
    # The clock's last call fails: on SQLite after the message is inserted, before the
    # session is updated; PostgreSQL's append is one statement, made after its one call.
    _fail_clock_call(monkeypatch, 0 if backend == "postgres" else 1)
    two = Event(author="user", actions=EventActions(state_delta={"n": 2}), content=_user("two"))
    with pytest.raises(RuntimeError, match="disk full"):
        await service.append_event(session, two)
    monkeypatch.undo()
    session.last_update_time = one.timestamp  # the failed append changed the local copy only
    three = Event(author="user", actions=EventActions(state_delta={"m": 3}), content=_user("3"))
    await service.append_event(session, three)
    fresh = await service.get_session(
        app_name="shop",
        user_id="u1",
        session_id=session.id,
        config=GetSessionConfig(num_recent_events=5),
    )
    assert fresh is not None
    assert fresh.state == {"n": 1, "m": 3}
    assert [e.id for e in fresh.events] == [one.id, three.id]
    assert fresh.last_update_time == three.timestamp
    await service.delete_session(app_name="shop", user_id="u1", session_id=session.id)
    with pytest.raises(SessionNotFoundError):
        await service.append_event(fresh, Event(author="user", content=_user("gone")))


async def test_the_agent_resumes_after_a_restart(backend: str, db_url: str) -> None:
    tenant = f"adk{next(_ids)}"
    store = agentkeep.connect(db_url, tenant=tenant)
    runner, _ = _runner(store, [_call("remember", {"city": "Oslo"}), _text("Noted Oslo")])
    session = await runner.session_service.create_session(app_name="shop", user_id="u1")
    await _run(runner, session.id, "remember Oslo")
    if backend != "memory":  # memory does not outlive its store
        store.close()
        store = agentkeep.connect(db_url, tenant=tenant)
    runner, llm = _runner(store, [_text("You said Oslo")])
    await _run(runner, session.id, "which city?")
    sent = [
        p.text or (p.function_call and p.function_call.name)
        for c in llm.requests[0].contents
        for p in c.parts or []
    ]
    assert sent[0] == "remember Oslo" and sent[-1] == "which city?" and "Noted Oslo" in sent
    stored = await runner.session_service.get_session(
        app_name="shop", user_id="u1", session_id=session.id
    )
    assert stored is not None and stored.state["city"] == "Oslo" and len(stored.events) == 6
    store.close()


async def _events_of(service: AgentkeepSessionService, count: int) -> tuple[Any, list[Event]]:
    session = await service.create_session(app_name="shop", user_id="u1")
    made: list[Event] = []
    for i in range(count):
        event = Event(
            author="user" if i % 2 == 0 else "helper",
            invocation_id=f"inv{i // 2}",
            content=_user(f"event {i}"),
            timestamp=1_800_000_000.0 + i,
        )
        made.append(await service.append_event(session, event))
    return session, made


async def test_get_session_reads_the_whole_session_on_the_async_api(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Runner asks each invocation (no config: every event), and every event since a
    time, are one read on the store's async API: no worker thread."""
    service = AgentkeepSessionService(store)
    session, made = await _events_of(service, 6)

    no_worker_threads(monkeypatch, "get_session")
    got = await service.get_session(app_name="shop", user_id="u1", session_id=session.id)
    assert got is not None and _dump(got.events) == _dump(made)
    for config, expected in (
        (GetSessionConfig(after_timestamp=made[3].timestamp), made[3:]),
        (GetSessionConfig(after_timestamp=made[3].timestamp, num_recent_events=2), made[4:]),
        (GetSessionConfig(after_timestamp=made[3].timestamp, num_recent_events=5), made[3:]),
        (GetSessionConfig(after_timestamp=made[-1].timestamp + 1), []),
        (GetSessionConfig(after_timestamp=0.0), made),
    ):
        found = await service.get_session(
            app_name="shop", user_id="u1", session_id=session.id, config=config
        )
        assert found is not None and _dump(found.events) == _dump(expected), config


async def test_get_session_of_more_events_than_one_read_returns_them_all(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past one read's limit the events are read a page at a time, on the async API too."""
    service = AgentkeepSessionService(store)
    session, made = await _events_of(service, 1003)

    no_worker_threads(monkeypatch, "get_session")
    got = await service.get_session(app_name="shop", user_id="u1", session_id=session.id)
    assert got is not None and [e.id for e in got.events] == [e.id for e in made]
    since = await service.get_session(
        app_name="shop",
        user_id="u1",
        session_id=session.id,
        config=GetSessionConfig(after_timestamp=made[1].timestamp),
    )
    assert since is not None and [e.id for e in since.events] == [e.id for e in made[1:]]
    last = await service.get_session(
        app_name="shop",
        user_id="u1",
        session_id=session.id,
        config=GetSessionConfig(num_recent_events=1002),
    )
    assert last is not None and [e.id for e in last.events] == [e.id for e in made[1:]]
    assert (
        await service.get_session(
            app_name="shop",
            user_id="u2",
            session_id=session.id,
            config=GetSessionConfig(num_recent_events=1002),
        )
        is None
    )  # another user's


async def test_create_session_without_app_or_user_state_runs_on_the_async_api(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session with no app or user state to merge is written and its app and user state
    read on the store's async API (no worker thread); the state already there is in it."""
    service = AgentkeepSessionService(store)
    await service.create_session(
        app_name="shop", user_id="u9", state={"app:plan": "pro", "user:name": "Ada"}
    )

    no_worker_threads(monkeypatch, "create_session")
    made = await service.create_session(
        app_name="shop", user_id="u9", state={"mood": "ok", "temp:x": 1}, session_id=" s9 "
    )
    assert made.id == "s9"
    assert made.state == {"app:plan": "pro", "user:name": "Ada", "mood": "ok"}
    got = await service.get_session(app_name="shop", user_id="u9", session_id="s9")
    assert got is not None and got.state == made.state
    assert got.last_update_time == made.last_update_time
    assert await service.get_user_state(app_name="shop", user_id="u9") == {"name": "Ada"}
    assert await service.get_user_state(app_name="shop", user_id="nobody") == {}
    from google.adk.errors.already_exists_error import AlreadyExistsError

    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name="shop", user_id="u9", session_id="s9")


async def test_create_session_with_app_and_user_state_is_one_operation_on_the_async_api(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session created with ``app:`` and ``user:`` state: the session and the merges into
    the state documents in one operation on the async API (no worker thread), other keys
    kept; sessions of one user created at once keep each other's keys; a taken id writes
    nothing (its deltas are not merged)."""
    from google.adk.errors.already_exists_error import AlreadyExistsError

    service = AgentkeepSessionService(store)

    no_worker_threads(monkeypatch, "create_session")
    first = await service.create_session(
        app_name="shop", user_id="u5", state={"app:plan": "pro", "user:name": "Ada", "n": 1}
    )
    assert first.state == {"app:plan": "pro", "user:name": "Ada", "n": 1}

    async def create(n: int) -> Any:
        state = {f"user:k{n}": n, f"app:k{n}": n, "n": n}
        return await service.create_session(
            app_name="shop", user_id="u5", state=state, session_id=f"c{n}"
        )

    made = await asyncio.gather(*(create(n) for n in range(6)))
    assert [s.state["n"] for s in made] == list(range(6))
    with pytest.raises(AlreadyExistsError):
        await service.create_session(
            app_name="shop", user_id="u5", state={"user:lost": 1, "app:lost": 1}, session_id="c0"
        )
    expected_user = {"name": "Ada", **{f"k{n}": n for n in range(6)}}
    assert await service.get_user_state(app_name="shop", user_id="u5") == expected_user
    got = await service.get_session(app_name="shop", user_id="u5", session_id="c3")
    assert got is not None
    assert got.state == {
        "n": 3,
        "app:plan": "pro",
        **{f"app:k{n}": n for n in range(6)},
        **{f"user:{k}": v for k, v in expected_user.items()},
    }
    assert got.last_update_time == made[3].last_update_time
    assert store.state.get("adk:app", "shop").version == 1 + 6  # created, then each merge
