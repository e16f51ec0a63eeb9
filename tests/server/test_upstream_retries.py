"""A service whose upstream answers an error it may not answer next time (503, 429) sends
the request again where nobody else would: a run, a streamed or a background response.
A plain response's error goes to its client, which retries it itself."""

from __future__ import annotations

import secrets
import time

import openai
import pytest
from live import LiveService, StartService
from openai.types.beta.threads import Run
from upstream_llm import Reply, UpstreamLLM

pytestmark = pytest.mark.slow

WAIT_S = 60.0
OVERLOADED = Reply(status=503, error_message="overloaded", headers={"retry-after": "0"})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def retrying(request: pytest.FixtureRequest, start_service: StartService) -> LiveService:
    """A service with the default retries (the other tests' services have none)."""
    return start_service(str(request.param), AGENTKEEP_LLM_MAX_RETRIES="2")


def _scripted(
    service: LiveService, upstream_llm: UpstreamLLM, *replies: Reply
) -> tuple[str, openai.OpenAI]:
    """A model of this test's own that answers ``replies``, and a client of a new tenant."""
    model = f"m-{secrets.token_hex(4)}"
    upstream_llm.script(model, *replies)
    return model, service.new_tenant().client()


def _run(client: openai.OpenAI, model: str) -> Run:
    """A thread and a run of an assistant on ``model``, polled until it ends."""
    assistant = client.beta.assistants.create(model=model)
    return client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "go"}]},
        poll_interval_ms=50,
    )


def test_a_run_whose_upstream_is_overloaded_once_completes(
    retrying: LiveService, upstream_llm: UpstreamLLM
) -> None:
    model, client = _scripted(retrying, upstream_llm, OVERLOADED, Reply(text="fine now"))
    run = _run(client, model)
    assert run.status == "completed", run.last_error
    messages = client.beta.threads.messages.list(run.thread_id, order="asc").data
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].content[0].text.value == "fine now"  # type: ignore[union-attr]
    assert len(upstream_llm.requests_for(model)) == 2


def test_a_run_whose_upstream_stays_overloaded_fails_after_the_retries(
    retrying: LiveService, upstream_llm: UpstreamLLM
) -> None:
    replies = [OVERLOADED] * 3 + [Reply(text="too late")]
    model, client = _scripted(retrying, upstream_llm, *replies)
    run = _run(client, model)
    assert run.status == "failed"
    assert run.last_error is not None and "overloaded" in run.last_error.message
    assert len(upstream_llm.requests_for(model)) == 3


def test_a_streamed_response_whose_upstream_is_overloaded_once_completes(
    retrying: LiveService, upstream_llm: UpstreamLLM
) -> None:
    model, client = _scripted(retrying, upstream_llm, OVERLOADED, Reply(text="fine now"))
    events = list(client.responses.create(model=model, input="go", stream=True))
    assert events[-1].type == "response.completed", [e.type for e in events]
    assert events[-1].response.output_text == "fine now"  # type: ignore[union-attr]
    assert len(upstream_llm.requests_for(model)) == 2


def test_a_background_response_whose_upstream_is_overloaded_once_completes(
    retrying: LiveService, upstream_llm: UpstreamLLM
) -> None:
    model, client = _scripted(retrying, upstream_llm, OVERLOADED, Reply(text="fine now"))
    created = client.responses.create(model=model, input="go", background=True)
    deadline = time.monotonic() + WAIT_S
    while (current := client.responses.retrieve(created.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, f"{created.id} is still {current.status}"
        time.sleep(0.05)
    assert current.status == "completed", current.error
    assert current.output_text == "fine now"
    assert len(upstream_llm.requests_for(model)) == 2


def test_a_plain_responses_error_goes_to_its_client_which_retries_it(
    retrying: LiveService, upstream_llm: UpstreamLLM
) -> None:
    """Sent again by the service too, a request would reach the upstream up to nine times."""
    model = f"m-{secrets.token_hex(4)}"
    upstream_llm.script(model, OVERLOADED, Reply(text="fine now"))
    tenant = retrying.new_tenant()  # two clients: without retries, then with them
    with pytest.raises(openai.APIStatusError) as err:
        tenant.client().responses.create(model=model, input="go")
    assert err.value.status_code == 502 and "overloaded" in err.value.message
    assert len(upstream_llm.requests_for(model)) == 1
    answer = tenant.client(max_retries=2).responses.create(model=model, input="go again")
    assert answer.output_text == "fine now"
    assert len(upstream_llm.requests_for(model)) == 2
