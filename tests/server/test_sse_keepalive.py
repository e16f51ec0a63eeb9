"""Keep-alives on quiet streams: sent, and harmless to the official client.

A stream whose run waits on a slow upstream (a reasoning model, a queue)
sends ``: keep-alive`` comments every ``AGENTKEEP_SSE_KEEPALIVE_SECONDS``. A
comment followed by a blank line made the ``openai`` client, which keeps the
last event id, hand over an event with empty data and fail to parse it: the
stream broke after any quiet spell longer than the interval.
"""

from __future__ import annotations

import threading

import pytest
from conftest import SERVICE_BACKENDS, StartService
from test_runs_stream import Recorder, new_model
from upstream_llm import Reply, UpstreamLLM

KEEPALIVE_S = "0.2"
QUIET_S = 1.5  # the upstream holds its answer this long: several keep-alive intervals


def _quiet_reply(text: str) -> Reply:
    # Holds after its first event (the role) until the hold times out: no delta for QUIET_S.
    return Reply(text=text, hold=threading.Event(), hold_after=1, hold_timeout=QUIET_S)


@pytest.mark.parametrize("backend", SERVICE_BACKENDS)
def test_a_quiet_run_stream_sends_keepalives_and_the_official_client_reads_on(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    service = start_service(backend, AGENTKEEP_SSE_KEEPALIVE_SECONDS=KEEPALIVE_S)
    tenant = service.new_tenant()
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, _quiet_reply("slow but sure"), _quiet_reply("slow again"))
    assistant = client.beta.assistants.create(model=model)

    # On the wire: keep-alive comment lines while the upstream is quiet, none ending an event.
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    body = {"assistant_id": assistant.id, "stream": True}
    with tenant.http().stream("POST", f"/v1/threads/{thread.id}/runs", json=body) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    assert raw.count(": keep-alive\n") >= 2
    assert ": keep-alive\n\n" not in raw
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


@pytest.mark.parametrize("backend", SERVICE_BACKENDS)
def test_a_quiet_background_response_stream_keeps_alive_for_the_official_client(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    service = start_service(backend, AGENTKEEP_SSE_KEEPALIVE_SECONDS=KEEPALIVE_S)
    tenant = service.new_tenant()
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, _quiet_reply("slow but sure"), _quiet_reply("slow again"))

    body = {"model": model, "input": "go", "background": True, "stream": True}
    with tenant.http().stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    assert raw.count(": keep-alive\n") >= 2
    assert ": keep-alive\n\n" not in raw

    events = list(client.responses.create(model=model, input="go", background=True, stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "slow again"


@pytest.mark.parametrize("backend", SERVICE_BACKENDS)
def test_a_quiet_streamed_response_sends_keepalives_while_the_upstream_thinks(
    backend: str, start_service: StartService, upstream_llm: UpstreamLLM
) -> None:
    service = start_service(backend, AGENTKEEP_SSE_KEEPALIVE_SECONDS=KEEPALIVE_S)
    tenant = service.new_tenant()
    client = tenant.client()
    model = new_model()
    upstream_llm.script(model, _quiet_reply("slow but sure"), _quiet_reply("slow again"))

    with tenant.http().stream(
        "POST", "/v1/responses", json={"model": model, "input": "go", "stream": True}
    ) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    assert raw.count(": keep-alive\n") >= 2
    assert ": keep-alive\n\n" not in raw

    events = list(client.responses.create(model=model, input="go", stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "slow again"
    assert client.responses.retrieve(events[-1].response.id).status == "completed"
