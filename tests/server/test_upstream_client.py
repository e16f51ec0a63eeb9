"""The run engine's chat-completions client against the scripted upstream: every answer it
may get, well-formed or not, becomes a completion or an ``UpstreamError`` with a run
``last_error`` code."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from upstream_llm import Reply, ToolCall, UpstreamLLM

from agentkeep.runner.upstream import (
    RETRY_PAUSES_S,
    ChatClient,
    UpstreamError,
    _lines,
    provider_for,
)

BODY = {"messages": [{"role": "user", "content": "hi"}]}


async def _call(
    upstream_llm: UpstreamLLM, *replies: Reply, model: str | None = None, **client: float
) -> tuple[list[str], object]:
    model = model or f"client-{uuid.uuid4().hex[:8]}"
    upstream_llm.script(model, *replies)
    chat = ChatClient(upstream_llm.base_url, "sk-test", **client)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    try:
        return deltas, await chat.complete({**BODY, "model": model}, on_delta)
    finally:
        await chat.aclose()


async def _error(upstream_llm: UpstreamLLM, reply: Reply, **client: float) -> UpstreamError:
    with pytest.raises(UpstreamError) as err:
        await _call(upstream_llm, reply, **client)
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
    error = await _error(upstream_llm, reply)
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
    upstream_llm.script(model, closed, closed, closed, Reply(text="too late"))
    chat = ChatClient(upstream_llm.base_url, "sk-test")

    async def on_delta(text: str) -> None:
        raise AssertionError(text)

    try:
        with pytest.raises(UpstreamError) as err:
            await chat.complete({**BODY, "model": model}, on_delta)
    finally:
        await chat.aclose()
    assert "unreachable" in err.value.message and err.value.code == "server_error"
    assert len(upstream_llm.requests_for(model)) == 1 + len(RETRY_PAUSES_S)


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
