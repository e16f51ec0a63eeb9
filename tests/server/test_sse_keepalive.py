"""Keep-alives on quiet streams: sent, and harmless to the official client.

A stream whose run waits on a slow upstream (a reasoning model, a queue)
sends ``: keep-alive`` comments every ``AGENTKEEP_SSE_KEEPALIVE_SECONDS``. A
comment followed by a blank line made the ``openai`` client, which keeps the
last event id, hand over an event with empty data and fail to parse it: the
stream broke after any quiet spell longer than the interval.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from conftest import SERVICE_BACKENDS, LiveService, StartService, Tenant
from test_runs_stream import Recorder, new_model
from upstream_llm import Reply, UpstreamLLM

KEEPALIVE_S = "0.2"
QUIET_S = 1.5  # the upstream holds its answer this long: several keep-alive intervals


def _quiet_reply(text: str) -> Reply:
    # Holds after its first event (the role) until the hold times out: no delta for QUIET_S.
    return Reply(text=text, hold=threading.Event(), hold_after=1, hold_timeout=QUIET_S)


@pytest.fixture(scope="module", params=SERVICE_BACKENDS)
def quiet_service(request: pytest.FixtureRequest, start_service: StartService) -> LiveService:
    """A service of this module's own that sends keep-alives every KEEPALIVE_S seconds."""
    return start_service(str(request.param), AGENTKEEP_SSE_KEEPALIVE_SECONDS=KEEPALIVE_S)


@dataclass
class Quiet:
    tenant: Tenant
    model: str  # scripted: two answers, each held QUIET_S after its first event


@pytest.fixture
def quiet(quiet_service: LiveService, upstream_llm: UpstreamLLM) -> Quiet:
    model = new_model()
    upstream_llm.script(model, _quiet_reply("slow but sure"), _quiet_reply("slow again"))
    return Quiet(quiet_service.new_tenant(), model)


def _raw_stream(tenant: Tenant, path: str, body: dict[str, object]) -> str:
    """The stream's bytes on the wire, checked for keep-alives that end no event."""
    with tenant.http().stream("POST", path, json=body) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    assert raw.count(": keep-alive\n") >= 2
    assert ": keep-alive\n\n" not in raw
    return raw


def test_a_quiet_run_stream_sends_keepalives_and_the_official_client_reads_on(
    quiet: Quiet,
) -> None:
    client = quiet.tenant.client()
    assistant = client.beta.assistants.create(model=quiet.model)

    # On the wire: keep-alive comment lines while the upstream is quiet, none ending an event.
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    body = {"assistant_id": assistant.id, "stream": True}
    raw = _raw_stream(quiet.tenant, f"/v1/threads/{thread.id}/runs", body)
    assert raw.endswith("event: done\ndata: [DONE]\n\n")

    # The official client reads through the quiet spell to the end.
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "again"}])
    recorder = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=recorder
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()
    assert final.status == "completed"
    assert "".join(recorder.deltas) == "slow again"


@pytest.mark.parametrize("background", [True, False], ids=["background", "plain"])
def test_a_quiet_response_stream_keeps_alive_for_the_official_client(
    quiet: Quiet, background: bool
) -> None:
    """Background responses stream their stored events; plain ones their run's, live."""
    options = {"background": True} if background else {}
    body = {"model": quiet.model, "input": "go", "stream": True, **options}
    _raw_stream(quiet.tenant, "/v1/responses", body)

    client = quiet.tenant.client()
    events = list(client.responses.create(model=quiet.model, input="go", stream=True, **options))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "slow again"
    assert client.responses.retrieve(events[-1].response.id).status == "completed"
