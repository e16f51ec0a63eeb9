"""The upstream LLM: an OpenAI-compatible ``/chat/completions`` endpoint.

``ChatClient.complete(body, on_delta)`` posts ``body`` with ``stream: true``
(and ``stream_options.include_usage``), calls ``on_delta(text)`` for every
content delta as it arrives, and returns the whole :class:`Completion`: text,
tool calls (arguments joined from their deltas), finish reason and token
usage. An upstream that ignores ``stream`` and answers one JSON completion is
accepted too. Any failure is an :class:`UpstreamError` whose ``code`` is one
of the run ``last_error`` codes (``server_error``, ``rate_limit_exceeded``,
``invalid_prompt``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from agentkeep import metrics

__all__ = ["ChatClient", "Completion", "UpstreamError", "UpstreamToolCall", "provider_for"]

_PROVIDERS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "api.together.xyz": "together",
    "api.fireworks.ai": "fireworks",
    "openrouter.ai": "openrouter",
    "generativelanguage.googleapis.com": "google",
    "api.x.ai": "x-ai",
}


def provider_for(base_url: str) -> str:
    """The provider name recorded on usage rows: known hosts by name, else ``openai-compatible``."""
    host = (urlsplit(base_url).hostname or "").lower()
    return _PROVIDERS.get(host, "openai-compatible")


class UpstreamError(Exception):
    """The upstream call failed; ``code`` is a run ``last_error`` code."""

    def __init__(self, message: str, *, code: str = "server_error", status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass
class UpstreamToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class Completion:
    """What one upstream call produced."""

    text: str = ""
    tool_calls: list[UpstreamToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    usage_reported: bool = False
    response_id: str | None = None
    model: str | None = None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _take_usage(out: Completion, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    out.usage_reported = True
    out.input_tokens = _int(usage.get("prompt_tokens"))
    out.output_tokens = _int(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    if isinstance(prompt_details, dict):
        out.cached_tokens = _int(prompt_details.get("cached_tokens"))
    completion_details = usage.get("completion_tokens_details")
    if isinstance(completion_details, dict):
        out.reasoning_tokens = _int(completion_details.get("reasoning_tokens"))


def _error_from(status: int, payload: Any, fallback: str) -> UpstreamError:
    message = fallback
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]
        elif isinstance(err, str):
            message = err
    code = "rate_limit_exceeded" if status == 429 else "server_error"
    if status == 400 and "context" in message.lower():
        code = "invalid_prompt"
    return UpstreamError(f"upstream LLM answered {status}: {message}", code=code, status=status)


class _Accumulator:
    def __init__(self) -> None:
        self.out = Completion()
        self.calls: dict[int, dict[str, str]] = {}

    def chunk(self, data: dict[str, Any]) -> str:
        """Take one ``chat.completion.chunk``; returns its content delta."""
        out = self.out
        out.response_id = out.response_id or data.get("id")
        out.model = out.model or data.get("model")
        if data.get("usage") is not None:
            _take_usage(out, data["usage"])
        text = ""
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                text += content
            for call in delta.get("tool_calls") or []:
                index = _int(call.get("index"))
                slot = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                if call.get("id"):
                    slot["id"] = str(call["id"])
                function = call.get("function") or {}
                if function.get("name"):
                    slot["name"] += str(function["name"])
                if function.get("arguments"):
                    slot["arguments"] += str(function["arguments"])
            if choice.get("finish_reason"):
                out.finish_reason = str(choice["finish_reason"])
        out.text += text
        return text

    def finish(self) -> Completion:
        self.out.tool_calls = [
            UpstreamToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
            for i, c in sorted(self.calls.items())
            if c["name"]
        ]
        return self.out


def _from_json(data: dict[str, Any]) -> Completion:
    out = Completion(response_id=data.get("id"), model=data.get("model"))
    _take_usage(out, data.get("usage"))
    choices = data.get("choices") or []
    if choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        out.text = message.get("content") or ""
        out.finish_reason = choices[0].get("finish_reason")
        for i, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            out.tool_calls.append(
                UpstreamToolCall(
                    id=str(call.get("id") or f"call_{i}"),
                    name=str(function.get("name") or ""),
                    arguments=str(function.get("arguments") or ""),
                )
            )
    return out


class ChatClient:
    """An async client of one chat-completions upstream."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider = provider_for(base_url)
        headers = {"Accept": "text/event-stream, application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def models(self) -> list[dict[str, Any]]:
        """The upstream's ``GET /models`` list (its ``data``); ``UpstreamError`` if it fails."""
        try:
            response = await self._http.get(f"{self.base_url}/models", timeout=10.0)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream LLM unreachable: {exc}") from exc
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            raise _error_from(response.status_code, payload, response.reason_phrase)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise UpstreamError("upstream LLM answered GET /models without a data list")
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def complete(
        self,
        body: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        stream: bool = True,
    ) -> Completion:
        """One streamed call; ``on_delta`` gets each content delta as it arrives.

        With ``stream=False`` the upstream is asked for one JSON completion
        (less to parse when nobody watches the text arrive); ``on_delta`` then
        gets the whole text once. Each call is counted in the service's metrics.
        """
        started = time.perf_counter()
        try:
            out = await self._complete(body, on_delta, stream=stream)
        except UpstreamError as exc:
            metrics.UPSTREAM_REQUESTS.labels(self.provider, "error").inc()
            metrics.UPSTREAM_ERRORS.labels(self.provider, exc.code).inc()
            raise
        finally:
            metrics.UPSTREAM_SECONDS.labels(self.provider).observe(time.perf_counter() - started)
        metrics.UPSTREAM_REQUESTS.labels(self.provider, "ok").inc()
        return out

    async def _complete(
        self,
        body: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        stream: bool,
    ) -> Completion:
        if stream:
            body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        else:
            body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._http.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    try:
                        payload: Any = json.loads(raw)
                    except ValueError:
                        payload = None
                    fallback = raw.decode("utf-8", "replace")[:500] or response.reason_phrase
                    raise _error_from(response.status_code, payload, fallback)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    return await _read_json(response, on_delta)
                return await _read_stream(response, on_delta)
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"upstream LLM timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream LLM unreachable: {exc}") from exc


async def _read_json(
    response: httpx.Response, on_delta: Callable[[str], Awaitable[None]]
) -> Completion:
    """A completion answered as one JSON document (an upstream that does not stream)."""
    raw = await response.aread()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UpstreamError("upstream LLM answered with invalid JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError("upstream LLM answered with unexpected JSON")
    out = _from_json(data)
    if out.text:
        await on_delta(out.text)
    return out


async def _read_stream(
    response: httpx.Response, on_delta: Callable[[str], Awaitable[None]]
) -> Completion:
    """A streamed completion, each content delta handed to ``on_delta`` as it arrives."""
    acc = _Accumulator()
    done = False
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload_text = line[5:].strip()
        if payload_text == "[DONE]":
            done = True
            break
        try:
            data = json.loads(payload_text)
        except ValueError as exc:
            raise UpstreamError("upstream LLM sent an invalid stream chunk") from exc
        if not isinstance(data, dict):
            continue
        if data.get("error"):
            raise _error_from(500, data, "error in the upstream stream")
        text = acc.chunk(data)
        if text:
            await on_delta(text)
    out = acc.finish()
    if not done and out.finish_reason is None:
        raise UpstreamError("upstream LLM closed the stream before it finished")
    return out
