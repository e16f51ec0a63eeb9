"""The Responses API when things go wrong: the upstream fails mid-answer, a response is
deleted under its reader, the worker has no upstream or meets a stored row it cannot run.

Each test drives a live service with the official client (or plain HTTP for the raw
event stream) against the scripted upstream, and checks both what the client is told
and what is stored.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from live import LiveService, StartService, Tenant
from upstream_llm import Reply, UpstreamLLM

from agentkeep.store.schema import response_events, response_items

pytestmark = pytest.mark.slow

WAIT_S = 60.0  # how long a condition may take to come true on a loaded machine


def _model() -> str:
    return f"m-{secrets.token_hex(4)}"


def _wait_status(client: openai.OpenAI, response_id: str, statuses: set[str]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while (current := client.responses.retrieve(response_id)).status not in statuses:
        assert time.monotonic() < deadline, f"{response_id} is {current.status}, not {statuses}"
        time.sleep(0.05)
    return current


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any] | str]:
    """The events of an SSE body (their JSON data), and its comments (``": ..."``) as text."""
    for line in lines:
        if line.startswith(":"):
            yield line
        elif line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


# -- the upstream fails ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "in_message"),
    [
        (Reply(status=503, error_message="upstream down"), "upstream down"),
        (Reply(text="a b c d e f", drop_after=3), ""),
        (Reply(raw=b"data: {not json\n\n"), ""),
        (Reply(status=200, raw=b"<html>oops</html>", raw_content_type="text/html"), ""),
    ],
    ids=["5xx", "dropped-mid-stream", "malformed-chunk", "not-a-stream"],
)
def test_a_failing_upstream_fails_the_streamed_response(
    client: openai.OpenAI,
    upstream_llm: UpstreamLLM,
    tenant: Tenant,
    reply: Reply,
    in_message: str,
) -> None:
    model = _model()
    upstream_llm.script(model, reply)
    events = list(client.responses.create(model=model, input="go", stream=True))
    assert events[0].type == "response.created"
    last = events[-1]
    assert last.type == "response.failed", [e.type for e in events]
    error = last.response.error  # type: ignore[union-attr]
    assert error is not None and error.message
    assert in_message in error.message
    stored = client.responses.retrieve(last.response.id)  # type: ignore[union-attr]
    assert stored.status == "failed"
    assert stored.error is not None and stored.error.message == error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    [usage] = tenant.service.store.tenant(tenant.id).usage.list(limit=10).items
    assert usage.status == "error"


def test_a_failing_upstream_fails_the_background_response(
    client: openai.OpenAI, upstream_llm: UpstreamLLM
) -> None:
    model = _model()
    upstream_llm.script(model, Reply(status=500, error_message="the model fell over"))
    queued = client.responses.create(model=model, input="go", background=True)
    failed = _wait_status(client, queued.id, {"failed"})
    assert failed.error is not None and "the model fell over" in failed.error.message
    # A follower that comes after the end gets every stored event, the failure last.
    events = list(client.responses.retrieve(queued.id, stream=True))
    assert [e.type for e in events][:2] == ["response.created", "response.queued"]
    assert events[-1].type == "response.failed"


def test_a_rate_limited_upstream_is_a_429(client: openai.OpenAI, upstream_llm: UpstreamLLM) -> None:
    model = _model()
    upstream_llm.script(model, Reply(status=429, error_message="slow down"))
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model=model, input="go")
    assert "slow down" in limited.value.message


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_request_the_upstream_refuses_is_a_400_the_client_does_not_retry(
    tenant: Tenant, upstream_llm: UpstreamLLM, status: int
) -> None:
    """A model the upstream does not serve, a prompt too long: the client's to change, not 5xx."""
    model = _model()
    upstream_llm.script(model, Reply(status=status, error_message="no such model here"))
    with pytest.raises(openai.BadRequestError) as refused:
        tenant.client(max_retries=2).responses.create(model=model, input="go")
    assert refused.value.code == "upstream_refused"
    assert f"upstream LLM answered {status}: no such model here" in refused.value.message
    assert len(upstream_llm.requests_for(model)) == 1  # a 4xx: the client did not try again
    [usage] = tenant.service.store.tenant(tenant.id).usage.list(limit=10).items
    assert usage.status == "error"  # the refused call is recorded, as any failed call


# -- no upstream ------------------------------------------------------------------------------


def test_without_an_upstream_a_response_is_refused_and_nothing_stored(
    start_service: StartService,
) -> None:
    service = start_service("sqlite", AGENTKEEP_LLM_BASE_URL="")
    tenant = service.new_tenant()
    client = tenant.client()
    for background in (False, True):
        with pytest.raises(openai.APIStatusError) as refused:
            client.responses.create(model=_model(), input="hello", background=background)
        assert refused.value.status_code == 503
        assert refused.value.code == "no_upstream"
        assert "AGENTKEEP_LLM_BASE_URL" in refused.value.message
    store = service.store.tenant(tenant.id)
    assert store.usage.list(limit=10).items == []
    with service.store._core.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT count(*) FROM responses WHERE tenant_id = :t"), {"t": tenant.id}
        ).scalar()
    assert rows == 0


# -- the worker cannot run a queued response ---------------------------------------------------


def _assert_stored_end(service: LiveService, tenant: Tenant, response_id: str, kind: str) -> None:
    """The response's stored events are numbered 0..n without a gap and end with ``kind``."""
    events = service.store.tenant(tenant.id).responses.events(response_id)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == kind, [e.type for e in events]
    assert events[-1].data["response"]["status"] == "failed"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_queued_response_the_worker_cannot_run_is_failed_not_lost(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    """A response queued by one process is run by whichever worker claims it first.

    One service with an upstream runs one response at a time and is kept busy; a second
    service on the same database, without an upstream, claims the next queued response
    and fails it (it does not drop it, nor leave it queued forever). Then a queued
    response whose stored input cannot be turned into a request is failed with the
    internal error, and the worker goes on to the next one.
    """
    busy = start_service(backend, AGENTKEEP_RUN_CONCURRENCY="1")
    tenant = busy.new_tenant()
    client = tenant.client()
    model = _model()
    release = threading.Event()
    upstream_llm.script(
        model,
        # Held until released, however long the second service takes to start: the
        # busy service's only slot must stay taken while the orphan is queued.
        Reply(text="held answer", hold=release, hold_after=1, hold_timeout=600),
        Reply(text="after the broken one"),
    )
    try:
        held = client.responses.create(model=model, input="hold", background=True)
        _wait_status(client, held.id, {"in_progress"})  # the busy service's only slot

        orphan = client.responses.create(model=model, input="nobody can run me", background=True)
        assert client.responses.retrieve(orphan.id).status == "queued"
        bare = LiveService(
            backend=backend,
            database_url=busy.database_url,
            log_path=busy.log_path.with_name("bare.log"),
            upstream=None,
            env={"AGENTKEEP_LLM_BASE_URL": ""},
        )
        bare.start()
        try:
            failed = _wait_status(client, orphan.id, {"failed", "completed"})
        finally:
            bare.close()
        assert client.responses.retrieve(held.id).status == "in_progress"  # still busy
        assert failed.status == "failed"
        assert failed.error is not None
        assert failed.error.message == "no upstream LLM is configured"
        assert failed.error.code == "server_error"
        _assert_stored_end(busy, tenant, orphan.id, "response.failed")
        assert upstream_llm.requests_for(model)[-1]["messages"][-1]["content"] == "hold"

        broken = client.responses.create(model=model, input="break me", background=True)
        after = client.responses.create(model=model, input="after", background=True)
        with busy.store._core.engine.begin() as conn:  # a function call without its call_id
            changed = conn.execute(
                sa.update(response_items)
                .where(
                    response_items.c.tenant_id == tenant.id,
                    response_items.c.response_id == broken.id,
                )
                .values(item={"type": "function_call", "name": "f", "arguments": "{}"})
            ).rowcount
        assert changed == 1
        release.set()
        assert _wait_status(client, held.id, {"completed"}).output_text == "held answer"
        internal = _wait_status(client, broken.id, {"failed", "completed"})
        assert internal.status == "failed"
        assert internal.error is not None
        assert internal.error.message.startswith("internal error: KeyError(")
        assert "call_id" in internal.error.message
        assert f"response {broken.id} failed in the worker" in busy.log()
        _assert_stored_end(busy, tenant, broken.id, "response.failed")
        done = _wait_status(client, after.id, {"completed", "failed"})
        assert (done.status, done.output_text) == ("completed", "after the broken one")
    finally:
        release.set()


def _failed_by_a_restart(
    service: LiveService, client: openai.OpenAI, upstream_llm: UpstreamLLM, *, kill: bool
) -> tuple[Any, Any]:
    """A background response in the middle of its answer when the service restarts."""
    model = _model()
    release = threading.Event()
    upstream_llm.script(model, Reply(text="one two three", hold=release, hold_after=1))
    try:
        queued = client.responses.create(model=model, input="go", background=True)
        _wait_status(client, queued.id, {"in_progress"})
        service.restart(kill=kill)
        return queued, _wait_status(client, queued.id, {"failed"})
    finally:
        release.set()


def test_a_killed_services_background_response_is_failed_with_its_last_event(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    """The sweep fails a dead worker's response and stores ``response.failed`` with it, so a
    follower of its stream (a resumed one too) sees the end rather than a stream that stops."""
    service = start_service(backend)
    client = service.new_tenant().client()
    # kill -9 mid-answer: its worker is gone, the new one sweeps
    queued, failed = _failed_by_a_restart(service, client, upstream_llm, kill=True)
    assert failed.error is not None and failed.error.code == "server_error"
    events = list(client.responses.retrieve(queued.id, stream=True))
    last = events[-1]
    assert last.type == "response.failed", [e.type for e in events]
    assert last.response.model_dump() == failed.model_dump()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    resumed = list(
        client.responses.retrieve(queued.id, stream=True, starting_after=events[-2].sequence_number)
    )
    assert [e.model_dump() for e in resumed] == [last.model_dump()]


def test_a_response_its_run_ended_without_a_last_event_still_ends_its_followed_stream(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    """A service that stops fails its running response on the way out and stores its end.

    A response that ended with no last event stored (as an earlier version left them, here
    its stored end taken away): a follower (from the start, or resumed) still gets the end,
    ``response.failed`` with the stored response, numbered after the last stored event,
    exactly once.

    The stop ends the background response when it stops its worker: it does not first wait
    for it as for a response its request's cut left (that wait would run out, and warn)."""
    service = start_service(backend)
    client = (tenant := service.new_tenant()).client()
    # SIGTERM: its run is dropped and the response failed on the way out
    queued, failed = _failed_by_a_restart(service, client, upstream_llm, kill=False)
    assert "cut responses were not ended" not in service.log()
    stored = service.store.tenant(tenant.id).responses.events(queued.id)
    assert stored[-1].type == "response.failed"  # stored with the failed status
    assert [e.sequence_number for e in stored] == list(range(len(stored)))
    with service.store._core.engine.begin() as conn:  # as an earlier version left it
        conn.execute(
            sa.delete(response_events).where(
                response_events.c.tenant_id == tenant.id,
                response_events.c.response_id == queued.id,
                response_events.c.sequence_number == stored[-1].sequence_number,
            )
        )
    stored = stored[:-1]
    events = list(client.responses.retrieve(queued.id, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(stored) + 1))
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.model_dump() == failed.model_dump()
    at_end = stored[-1].sequence_number
    resumed = list(client.responses.retrieve(queued.id, stream=True, starting_after=at_end))
    assert [e.model_dump() for e in resumed] == [last.model_dump()]
    past = list(client.responses.retrieve(queued.id, stream=True, starting_after=at_end + 1))
    assert past == []  # the end was sent: not again


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_streamed_response_the_services_stop_cuts_is_stored_as_stopped_not_disconnected(
    backend: str, workers: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    """SIGTERM while a foreground stream is answering: once its grace time is over, the
    service cuts it and stores why, the stop (not its client, which never left), on the
    response and on its call's usage row; in one process and in each of two workers."""
    service = start_service(
        backend, AGENTKEEP_SHUTDOWN_GRACE_SECONDS="0.5", AGENTKEEP_WORKERS=workers
    )
    tenant = service.new_tenant()
    model = _model()
    release = threading.Event()
    upstream_llm.script(model, Reply(text="one two three four", hold=release, hold_after=2))
    try:
        with tenant.client().responses.create(model=model, input="go", stream=True) as stream:
            response_id = ""
            for event in stream:
                if event.type == "response.created":
                    response_id = event.response.id
                if event.type == "response.output_text.delta":
                    break  # the upstream holds: the response is answering
            service.stop()  # the client stays: only the stop can cut the stream
            with pytest.raises(openai.APIConnectionError):
                for _event in stream:
                    pass
    finally:
        release.set()
    store = service.store.tenant(tenant.id)
    stopped = "the service stopped before the response finished"
    ended = store.responses.get(response_id)
    assert ended.status == "failed"
    assert ended.error == {"code": "server_error", "message": stopped}
    assert store.responses.events(response_id)[-1].type == "response.failed"
    [usage] = [u for u in store.usage.list(limit=50).items if u.model == model]
    assert (usage.status, usage.error_message) == ("error", stopped)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_streamed_response_whose_service_was_killed_is_failed_by_the_next_one(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    """kill -9 mid-answer leaves nothing to end a foreground stream on the way out: the
    restarted service's sweep fails it (it is tagged with its process's worker), so a
    retrieve does not show it ``in_progress`` for ever and a follower sees its end."""
    service = start_service(backend)
    tenant = service.new_tenant()
    client = tenant.client()
    model = _model()
    release = threading.Event()
    upstream_llm.script(model, Reply(text="one two three four", hold=release, hold_after=2))
    try:
        with client.responses.create(model=model, input="go", stream=True) as stream:
            response_id = ""
            for event in stream:
                if event.type == "response.created":
                    response_id = event.response.id
                if event.type == "response.output_text.delta":
                    break
            service.restart(kill=True)
    finally:
        release.set()
    failed = _wait_status(client, response_id, {"failed"})
    assert failed.error is not None and failed.error.code == "server_error"
    assert "stopped before it finished (crash or kill)" in failed.error.message
    events = list(client.responses.retrieve(response_id, stream=True))
    assert events[-1].type == "response.failed", [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))


# -- the response goes away under its reader ----------------------------------------------------


def test_deleting_a_running_background_response_ends_its_stream_and_its_run(
    service: LiveService, tenant: Tenant, upstream_llm: UpstreamLLM
) -> None:
    client = tenant.client()
    model = _model()
    release = threading.Event()
    upstream_llm.script(model, Reply(text="one two three four", hold=release, hold_after=2))
    try:
        queued = client.responses.create(model=model, input="go", background=True)
        with (
            tenant.http() as http,
            http.stream(
                "GET", f"/v1/responses/{queued.id}", params={"stream": "true"}, timeout=WAIT_S
            ) as stream,
        ):
            assert stream.status_code == 200
            events = _sse(stream.iter_lines())
            seen: list[dict[str, Any]] = []
            for event in events:  # until the answer is provably under way
                assert isinstance(event, dict)
                seen.append(event)
                if event["type"] == "response.output_text.delta":
                    break
            client.responses.delete(queued.id)
            release.set()  # the worker's next write meets a deleted response
            rest = [e for e in events if isinstance(e, dict)]
        assert [e["type"] for e in seen[:3]] == [
            "response.created",
            "response.queued",
            "response.in_progress",
        ]
        assert rest, "the stream ended without a word"
        assert rest[-1]["type"] == "error"
        assert rest[-1]["message"] == f"No response found with id '{queued.id}'."
        # Numbered like every event (the spec requires it): one after the last one sent.
        numbers = [e["sequence_number"] for e in seen + rest]
        assert numbers == list(range(len(numbers)))
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(queued.id)
        # The worker drops the deleted response: no internal error, nothing written back.
        deadline = time.monotonic() + WAIT_S
        while f"response {queued.id}: " not in service.log():
            assert time.monotonic() < deadline, service.log()
            time.sleep(0.05)
        assert f"response {queued.id} failed in the worker" not in service.log()
    finally:
        release.set()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_quiet_stream_is_kept_alive(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    """A follower waiting on a silent upstream gets SSE comments, so proxies keep the line."""
    # A keep-alive every second, not the default 15: the test waits for one.
    tenant = start_service(backend, AGENTKEEP_SSE_KEEPALIVE_SECONDS="1").new_tenant()
    client = tenant.client()
    model = _model()
    release = threading.Event()
    upstream_llm.script(model, Reply(text="finally", hold=release, hold_after=0))
    try:
        queued = client.responses.create(model=model, input="go", background=True)
        with (
            tenant.http() as http,
            http.stream(
                "GET", f"/v1/responses/{queued.id}", params={"stream": "true"}, timeout=WAIT_S
            ) as stream,
        ):
            events = _sse(stream.iter_lines())
            for event in events:
                if event == ": keep-alive":
                    break
            else:
                raise AssertionError("the stream ended without a keep-alive")
            release.set()
            rest = [e for e in events if isinstance(e, dict)]
        assert rest[-1]["type"] == "response.completed"
        assert rest[-1]["response"]["output"][0]["content"][0]["text"] == "finally"
    finally:
        release.set()


def test_streaming_an_unknown_response_is_a_404_before_the_stream(tenant: Tenant) -> None:
    with tenant.http() as http:
        response = http.get("/v1/responses/resp_nope", params={"stream": "true"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["message"] == "No response found with id 'resp_nope'."
