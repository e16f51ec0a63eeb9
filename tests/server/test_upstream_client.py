"""The run engine's chat-completions client against the scripted upstream: every answer it
may get, well-formed or not, becomes a completion or an ``UpstreamError`` with a run
``last_error`` code."""

from __future__ import annotations

import contextlib
import email.utils
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from upstream_llm import Reply, ToolCall, UpstreamLLM

from agentkeep.runner.upstream import (
    BACKOFF_MAX_S,
    MAX_RETRIES,
    ChatClient,
    UpstreamError,
    _lines,
    provider_for,
    retry_pause,
    should_retry,
)

BODY = {"messages": [{"role": "user", "content": "hi"}]}


async def _call(
    upstream_llm: UpstreamLLM,
    *replies: Reply,
    model: str | None = None,
    retry_errors: bool = True,
    **client: float,
) -> tuple[list[str], object]:
    model = model or f"client-{uuid.uuid4().hex[:8]}"
    upstream_llm.script(model, *replies)
    chat = ChatClient(upstream_llm.base_url, "sk-test", **client)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    try:
        body = {**BODY, "model": model}
        return deltas, await chat.complete(body, on_delta, retry_errors=retry_errors)
    finally:
        await chat.aclose()


async def _error(upstream_llm: UpstreamLLM, *replies: Reply, **options: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as err:
        await _call(upstream_llm, *replies, **options)
    return err.value


async def test_a_streamed_answer_with_tool_calls(upstream_llm: UpstreamLLM) -> None:
    deltas, out = await _call(
        upstream_llm,
        Reply(text="one two", tool_calls=[ToolCall("f", '{"a": 1}', id="call_1")]),
    )
    assert deltas == ["one", " two"]
    assert out.text == "one two" and out.finish_reason == "tool_calls"  # type: ignore[attr-defined]
    assert [(c.id, c.name, c.arguments) for c in out.tool_calls] == [("call_1", "f", '{"a": 1}')]  # type: ignore[attr-defined]
    assert out.usage_reported and out.output_tokens > 0  # type: ignore[attr-defined]


async def test_a_json_answer_to_a_streamed_request(upstream_llm: UpstreamLLM) -> None:
    deltas, out = await _call(
        upstream_llm, Reply(text="all at once", tool_calls=[ToolCall("g")], ignore_stream=True)
    )
    assert deltas == ["all at once"]
    assert out.text == "all at once"  # type: ignore[attr-defined]
    assert [c.name for c in out.tool_calls] == ["g"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("reply", "code", "status", "message"),
    [
        (Reply(status=429, error_message="slow down"), "rate_limit_exceeded", 429, "slow down"),
        (
            Reply(status=400, error_message="maximum context length exceeded"),
            "invalid_prompt",
            400,
            "context length",
        ),
        (Reply(status=500, error_message="boom"), "server_error", 500, "boom"),
        (
            Reply(status=502, raw=b"<html>bad gateway</html>", raw_content_type="text/html"),
            "server_error",
            502,
            "bad gateway",
        ),
        (
            Reply(status=503, raw=b'{"error": "overloaded"}', raw_content_type="application/json"),
            "server_error",
            503,
            "overloaded",
        ),
    ],
)
async def test_an_error_status_names_its_code(
    upstream_llm: UpstreamLLM, reply: Reply, code: str, status: int, message: str
) -> None:
    error = await _error(upstream_llm, reply, max_retries=0)
    assert (error.code, error.status) == (code, status)
    assert message in error.message and str(status) in error.message


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        (b"not json", "application/json", "invalid JSON"),
        (b"[1, 2]", "application/json", "unexpected JSON"),
        (b"data: {not json\n\n", "text/event-stream", "invalid stream chunk"),
        (b'data: {"id": "x"} {"id": "y"}\n\n', "text/event-stream", "invalid stream chunk"),
        (b"data: \xef\xbb\xbf{}\n\n", "text/event-stream", "invalid stream chunk"),
        (
            b'data: {"error": {"message": "mid-stream failure"}}\n\n',
            "text/event-stream",
            "mid-stream failure",
        ),
        (
            b'data: [1]\n\ndata: {"choices": [{"index": 1, "delta": {"content": "x"}}]}\n\n',
            "text/event-stream",
            "closed the stream before it finished",
        ),
    ],
)
async def test_a_malformed_answer_is_an_upstream_error(
    upstream_llm: UpstreamLLM, raw: bytes, kind: str, message: str
) -> None:
    error = await _error(upstream_llm, Reply(raw=raw, raw_content_type=kind))
    assert message in error.message
    assert error.code == "server_error"


async def test_a_stream_dropped_midway_is_an_upstream_error_not_sent_again(
    upstream_llm: UpstreamLLM,
) -> None:
    model = f"client-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UpstreamError) as err:
        await _call(upstream_llm, Reply(text="a b c d", drop_after=2), model=model)
    assert "closed the stream before it finished" in err.value.message
    assert len(upstream_llm.requests_for(model)) == 1  # its deltas were under way: not sent again


async def test_a_request_the_upstream_closed_unanswered_is_sent_again(
    upstream_llm: UpstreamLLM,
) -> None:
    """A kept-alive connection the upstream closed as the request went out, twice."""
    closed = Reply(disconnect=True)
    deltas, out = await _call(upstream_llm, closed, closed, Reply(text="at last"))
    assert deltas == ["at", " last"]
    assert out.text == "at last"  # type: ignore[attr-defined]
    assert len(upstream_llm.requests_for(out.model)) == 3  # type: ignore[attr-defined]


async def test_an_upstream_that_closes_every_try_unanswered_is_unreachable(
    upstream_llm: UpstreamLLM,
) -> None:
    closed = Reply(disconnect=True)
    model = f"client-{uuid.uuid4().hex[:8]}"
    error = await _error(upstream_llm, closed, closed, closed, Reply(text="too late"), model=model)
    assert "unreachable" in error.message and error.code == "server_error"
    assert len(upstream_llm.requests_for(model)) == 1 + MAX_RETRIES


async def test_a_slow_upstream_times_out(upstream_llm: UpstreamLLM) -> None:
    error = await _error(upstream_llm, Reply(text="late", delay=2.0), timeout=0.2)
    assert "timed out" in error.message


async def test_an_unreachable_upstream() -> None:
    chat = ChatClient("http://127.0.0.1:9/v1", connect_timeout=2.0)

    async def on_delta(text: str) -> None:
        raise AssertionError(text)

    try:
        with pytest.raises(UpstreamError) as err:
            await chat.complete({**BODY, "model": "m"}, on_delta)
    finally:
        await chat.aclose()
    assert "unreachable" in err.value.message


class _Chunks:
    """A response body that arrives in the given chunks (``iter_any`` of aiohttp's reader)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1000])
async def test_the_lines_of_a_body_whatever_its_chunks(size: int) -> None:
    body = 'data: {"a": "é"}\r\n\ndata: [DONE]\n\nno newline at the end'.encode()
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    batches = [batch async for batch in _lines(_Chunks(chunks))]  # type: ignore[arg-type]
    assert all(batches)  # no read that ends no line gives an empty batch
    lines = [line for batch in batches for line in batch]
    assert lines == ['data: {"a": "é"}', "", "data: [DONE]", "", "no newline at the end"]


async def test_a_body_that_ends_with_its_newline_has_no_empty_last_line() -> None:
    batches = [batch async for batch in _lines(_Chunks([b"a\n", b"b", b"c\n"]))]  # type: ignore[arg-type]
    assert batches == [["a"], ["bc"]]  # one batch a read that ends lines


def test_the_provider_is_named_by_host() -> None:
    assert provider_for("https://api.openai.com/v1") == "openai"
    assert provider_for("https://openrouter.ai/api/v1") == "openrouter"
    assert provider_for("http://127.0.0.1:8000/v1") == "openai-compatible"


def test_the_upstream_is_reached_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert ChatClient("https://llm.example/v1")._proxy is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy.example:3128")
    assert ChatClient("https://llm.example/v1")._proxy == "http://proxy.example:3128"
    assert ChatClient("http://llm.example/v1")._proxy == "http://plain-proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "llm.example")
    assert ChatClient("https://llm.example/v1")._proxy is None
    assert ChatClient("https://other.example/v1")._proxy == "http://proxy.example:3128"


async def test_a_models_request_the_upstream_closed_unanswered_is_sent_again() -> None:
    with UpstreamLLM() as upstream:  # its own: the count of requests is this test's
        upstream.models = ["m-1"]
        upstream.models_unanswered = 2
        chat = ChatClient(upstream.base_url)
        try:
            listed = await chat.models()
        finally:
            await chat.aclose()
        assert [m["id"] for m in listed] == ["m-1"]
        assert upstream.models_asked == 3


NOW = {"retry-after": "0"}  # no pause: these tests are about what is sent again, not when


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
async def test_an_error_answer_worth_retrying_is_sent_again(
    upstream_llm: UpstreamLLM, status: int
) -> None:
    model = f"client-{uuid.uuid4().hex[:8]}"
    failed = Reply(status=status, headers=NOW)
    deltas, out = await _call(upstream_llm, failed, Reply(text="at last"), model=model)
    assert deltas == ["at", " last"] and out.text == "at last"  # type: ignore[attr-defined]
    assert len(upstream_llm.requests_for(model)) == 2


async def test_an_error_answer_on_every_try_is_the_outcome(upstream_llm: UpstreamLLM) -> None:
    model = f"client-{uuid.uuid4().hex[:8]}"
    failed = Reply(status=503, error_message="overloaded", headers=NOW)
    with pytest.raises(UpstreamError) as err:
        await _call(upstream_llm, *[failed] * (1 + MAX_RETRIES), Reply(text="late"), model=model)
    assert (err.value.status, err.value.code) == (503, "server_error")
    assert "overloaded" in err.value.message
    assert len(upstream_llm.requests_for(model)) == 1 + MAX_RETRIES


@pytest.mark.parametrize(
    ("reply", "sent"),
    [
        (Reply(status=400, error_message="bad"), 1),  # a refusal: the same again next time
        (Reply(status=404, error_message="no such model"), 1),
        (Reply(status=503, headers={**NOW, "x-should-retry": "false"}), 1),
        (Reply(status=400, headers={**NOW, "x-should-retry": "true"}), 2),
    ],
)
async def test_what_the_upstream_refuses_is_not_sent_again_unless_it_says_so(
    upstream_llm: UpstreamLLM, reply: Reply, sent: int
) -> None:
    model = f"client-{uuid.uuid4().hex[:8]}"
    with contextlib.suppress(UpstreamError):
        await _call(upstream_llm, reply, Reply(status=400), model=model)
    assert len(upstream_llm.requests_for(model)) == sent


async def test_an_error_answer_is_not_sent_again_when_the_caller_says_its_client_will(
    upstream_llm: UpstreamLLM,
) -> None:
    model = f"client-{uuid.uuid4().hex[:8]}"
    replies = (Reply(status=503, headers=NOW), Reply(text="too late"))
    error = await _error(upstream_llm, *replies, model=model, retry_errors=False)
    assert error.status == 503
    assert len(upstream_llm.requests_for(model)) == 1


async def test_the_upstreams_retry_after_is_waited_for(upstream_llm: UpstreamLLM) -> None:
    model = f"client-{uuid.uuid4().hex[:8]}"
    limited = Reply(status=429, headers={"retry-after-ms": "300"})
    started = time.monotonic()
    deltas, _ = await _call(upstream_llm, limited, Reply(text="now"), model=model)
    assert deltas == ["now"]
    assert time.monotonic() - started >= 0.3
    assert len(upstream_llm.requests_for(model)) == 2


def test_only_an_error_answer_is_judged_for_a_retry() -> None:
    assert should_retry(503, {}) and should_retry(429, {}) and not should_retry(400, {})
    assert should_retry(400, {"x-should-retry": "true"})
    assert not should_retry(503, {"x-should-retry": "false"})


async def test_a_success_that_says_x_should_retry_is_still_the_answer(
    upstream_llm: UpstreamLLM,
) -> None:
    model = f"client-{uuid.uuid4().hex[:8]}"
    odd = Reply(
        raw=b'{"choices": [{"message": {"content": "once"}}]}',
        raw_content_type="application/json",
        headers={"x-should-retry": "true"},
    )
    deltas, _ = await _call(upstream_llm, odd, Reply(text="twice"), model=model)
    assert deltas == ["once"]
    assert len(upstream_llm.requests_for(model)) == 1


def test_the_pause_before_a_retry() -> None:
    assert retry_pause(0, {"retry-after-ms": "250"}) == 0.25
    assert retry_pause(0, {"retry-after": "2"}) == 2.0
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_pause(0, {"retry-after": soon}) <= 30
    # Unreadable, negative or over a minute: the backoff, 0.5 s doubling, a quarter off at most.
    for headers in ({}, {"retry-after": "soon"}, {"retry-after": "-1"}, {"retry-after": "120"}):
        assert 0.375 <= retry_pause(0, headers) <= 0.5
        assert 0.75 <= retry_pause(1, headers) <= 1.0
    assert BACKOFF_MAX_S * 0.75 <= retry_pause(10, {}) <= BACKOFF_MAX_S
