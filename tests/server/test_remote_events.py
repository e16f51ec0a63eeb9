"""Streams are told of the events other processes commit (PostgreSQL's LISTEN/NOTIFY).

Each event write notifies its tenant's channel with a notice naming the writing
process and the runs written (``store.events.Notice``); one listener per
service process (``server.remote_events``) wakes the readers of the runs named
by other processes' notices. A live service that polls for other processes'
writes only every five minutes shows them to a stream at once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import StartService

import agentkeep
from agentkeep.runner import notify
from agentkeep.server.remote_events import RemoteEvents
from agentkeep.store import Store, events
from agentkeep.store.events import NOTICE_RUNS_MAX, Notice


def test_a_notice_names_its_process_and_runs_and_stays_within_a_payload() -> None:
    tail = Notice.tail({"run_b", "run_a"})
    assert Notice.parse(f"42{tail}") == Notice(42, events.origin(), frozenset({"run_a", "run_b"}))
    assert Notice.parse(f"7{Notice.tail(())}") == Notice(7, events.origin(), frozenset())
    many = {f"run_{i:032d}" for i in range(NOTICE_RUNS_MAX // 30)}
    assert Notice.parse(f"1{Notice.tail(many)}") == Notice(1, events.origin(), None)
    assert len(Notice.tail(many)) < 100
    assert Notice.parse("42") is None  # a bare bookmark: no notice
    for odd in ("run a", "run,a"):  # ids given by callers may hold a separator
        assert Notice.parse(f"5{Notice.tail({odd, 'run_b'})}") == Notice(5, events.origin(), None)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.005)


async def test_only_other_processes_notices_wake_the_readers_of_the_runs_they_name() -> None:
    with (
        notify.subscribe("run_mine") as mine,
        notify.subscribe("run_theirs") as theirs,
        notify.subscribe("run_other") as other,
    ):
        here = f"1{Notice.tail({'run_mine'})}"
        there = f"2{Notice.tail({'run_theirs'})}".replace(events.origin(), "elsewhere")
        RemoteEvents._dispatch([("c", here), ("c", there)], events.origin())
        await _until(lambda: theirs._event.is_set())
        # Woken in one call with it, had they been: this process's own write and another run.
        assert not mine._event.is_set()
        assert not other._event.is_set()
        assert theirs.take(0) is None  # woken without events: the reader reads them
        everyone = f"3{Notice.tail({'x'})}".replace(events.origin(), "elsewhere")
        RemoteEvents._dispatch([("c", everyone.replace(" x", " *"))], events.origin())
        await _until(lambda: mine._event.is_set() and other._event.is_set())


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    """PostgreSQL only: SQLite has no notifications (its streams poll)."""
    with agentkeep.connect(postgres_url) as root:
        yield root.tenant(f"t_{secrets.token_hex(6)}")


async def test_a_write_of_another_process_wakes_the_runs_reader_here(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg_store
    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id, model="m")
    remote = RemoteEvents(store)
    try:
        await _until(lambda: remote.since(store.tenant_id) is not None)
        with notify.subscribe(run.id) as reader:
            store.events.append("thread.run.step.created", run_id=run.id)  # this process's
            monkeypatch.setattr(events, "_origin", (events.os.getpid(), "another-process"))
            store.events.append("thread.message.delta", run_id=run.id)
            await _until(lambda: reader._event.is_set())
    finally:
        remote.close()


class _Reader(threading.Thread):
    """Reads a run's event stream from the service into ``events`` (type, data)."""

    def __init__(self, client: httpx.Client, path: str) -> None:
        super().__init__(daemon=True)
        self.client, self.path = client, path
        self.events: list[tuple[str, str]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.path, timeout=120) as response:
                response.raise_for_status()
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((kind, line[6:]))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def until(self, condition: Callable[[list[str]], bool]) -> None:
        """Wait until ``condition`` holds of the event types read (at most 30 s)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.is_alive():
            if condition([kind for kind, _ in self.events]):
                break
            time.sleep(0.01)
        assert self.error is None
        assert condition([kind for kind, _ in self.events]), self.events


def test_a_streams_client_sees_another_processes_writes_as_they_commit(
    start_service: StartService,
) -> None:
    """The service looks for other processes' writes only every 300 s here (and sends its
    keep-alives as rarely): what the stream shows within the test's 30 s it was told of."""
    service = start_service(
        "postgres", AGENTKEEP_STREAM_POLL_SECONDS="300", AGENTKEEP_SSE_KEEPALIVE_SECONDS="300"
    )
    tenant = service.new_tenant()
    store = service.store.tenant(tenant.id)  # this test process writes: another process
    thread = store.sessions.create(kind="thread")
    run = store.runs.create("asst_x", session_id=thread.id, model="m", status="in_progress")
    reader = _Reader(tenant.http(), f"/v1/threads/{thread.id}/runs/{run.id}/events?after=0")
    reader.start()
    # The stream's first read is done once the run's first event shows (empty run: none).
    first = store.events.append("thread.run.in_progress", run_id=run.id, data={"id": run.id})
    reader.until(lambda kinds: kinds == ["thread.run.in_progress"])
    for i in range(3):
        store.events.append("thread.message.delta", run_id=run.id, data={"i": i})
        reader.until(lambda kinds, n=i + 2: len(kinds) == n)
    with store.transaction():
        store.runs.transition(run.id, "completed")
        store.events.append("thread.run.completed", run_id=run.id, data={"id": run.id})
    reader.until(lambda kinds: kinds[-1:] == ["done"])
    reader.join(timeout=30)
    assert [kind for kind, _ in reader.events] == [
        "thread.run.in_progress",
        "thread.message.delta",
        "thread.message.delta",
        "thread.message.delta",
        "thread.run.completed",
        "done",
    ]
    assert [json.loads(data).get("i") for _, data in reader.events[1:4]] == [0, 1, 2]
    assert first.bookmark > 0


def test_a_responses_stream_sees_another_processes_writes_as_they_commit(
    start_service: StartService,
) -> None:
    """A Responses stream too (``GET /v1/responses/{id}?stream=true``), of a background
    response another process runs: each write of its events notifies the tenant's
    channel with a notice of no run, which wakes the readers not tied to a run."""
    service = start_service(
        "postgres", AGENTKEEP_STREAM_POLL_SECONDS="300", AGENTKEEP_SSE_KEEPALIVE_SECONDS="300"
    )
    tenant = service.new_tenant()
    store = service.store.tenant(tenant.id)  # this test process writes: another process
    created = {"type": "response.created", "sequence_number": 0}
    response = store.responses.create(
        model="m", input_items=[], status="in_progress", background=True, events=[created]
    )
    reader = _Reader(tenant.http(), f"/v1/responses/{response.id}?stream=true")
    reader.start()
    reader.until(lambda kinds: kinds == ["response.created"])
    for i in range(3):
        delta = {"type": "response.output_text.delta", "sequence_number": i + 1, "delta": str(i)}
        store.responses.append_events(response.id, [delta])
        reader.until(lambda kinds, n=i + 2: len(kinds) == n)
    store.responses.finish(
        response.id,
        status="completed",
        events=lambda ended: [
            {"type": "response.completed", "sequence_number": 4, "response": {"id": ended.id}}
        ],
    )
    reader.until(lambda kinds: kinds[-1:] == ["response.completed"])
    reader.join(timeout=30)
    assert not reader.is_alive()  # the stream ended with its response
    assert [kind for kind, _ in reader.events] == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ]
    assert [json.loads(data)["delta"] for _, data in reader.events[1:4]] == ["0", "1", "2"]


async def test_a_response_event_write_wakes_the_readers_not_tied_to_a_run_only(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real LISTEN: another process's write of response events wakes this
    process's waiters (Responses streams), and no run's reader."""
    store = pg_store
    before = notify.generation()
    remote = RemoteEvents(store)
    try:
        # Listening, and past the wake-up of every reader that its start brings.
        await _until(
            lambda: remote.since(store.tenant_id) is not None and notify.generation() > before
        )
        monkeypatch.setattr(events, "_origin", (events.os.getpid(), "another-process"))
        with notify.subscribe("run_quiet") as run_reader:
            # create with events, append_events, finish, then a cancel's end events
            for write in range(4):
                since = notify.generation()
                if write == 0:
                    response = store.responses.create(
                        model="m",
                        input_items=[],
                        status="in_progress",
                        background=True,
                        events=[{"type": "response.created", "sequence_number": 0}],
                    )
                elif write == 1:
                    store.responses.append_events(
                        response.id, [{"type": "response.in_progress", "sequence_number": 1}]
                    )
                elif write == 2:
                    store.responses.finish(
                        response.id,
                        status="completed",
                        events=lambda ended: [{"type": "response.completed", "sequence_number": 2}],
                    )
                else:
                    other = store.responses.create(
                        model="m", input_items=[], status="queued", background=True
                    )
                    store.responses.set_status(
                        other.id,
                        "cancelled",
                        events=lambda ended, output, n: [
                            {"type": "response.incomplete", "sequence_number": n}
                        ],
                    )
                assert await notify.wait(30, since)  # woken by the listener's thread
            assert not run_reader._event.is_set()
    finally:
        remote.close()


async def test_a_lost_listen_connection_is_made_again_and_every_reader_reads_once(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the connection is down no stream relies on notices (``since`` is None);
    once it listens again, every reader is woken to read what it may have missed."""
    from agentkeep.store.dialects import postgresql

    monkeypatch.setattr(postgresql._PostgresListener, "RETRY_S", 0.05)
    everyone: list[float] = []  # when every reader was woken
    wake_all = notify.notify_all
    monkeypatch.setattr(
        notify, "notify_all", lambda: (everyone.append(time.monotonic()), wake_all())
    )
    store = pg_store
    remote = RemoteEvents(store)
    try:
        assert remote.since(store.tenant_id) is None  # asks for the tenant's channel
        await _until(lambda: len(everyone) == 1)  # the channel's first listening
        first = remote.since(store.tenant_id)
        assert first is not None
        with notify.subscribe("run_quiet") as reader:
            with store._core.engine.connect() as conn:
                killed = conn.exec_driver_sql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'agentkeep-listen'"
                    " AND datname = current_database()"
                ).scalar()
            assert killed >= 1  # this listener (another test's may linger on the database)
            await _until(lambda: len(everyone) == 2 and reader._event.is_set())
            again = remote.since(store.tenant_id)
            assert again is not None and again > first
            assert reader.take(0) is None  # woken without events: it reads
        lost = [r for r in caplog.records if "lost the connection that listens" in r.message]
        assert lost and {r.levelname for r in lost} == {"WARNING"}
    finally:
        remote.close()
