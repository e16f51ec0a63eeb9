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

import asyncio
import contextlib
import email.utils
import logging
import random
import time
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agentkeep import metrics
from agentkeep.wire.encoding import dumps, loads

__all__ = ["ChatClient", "Completion", "UpstreamError", "UpstreamToolCall", "provider_for"]

log = logging.getLogger("agentkeep.runner")

MAX_RETRIES = 2
"""How many times a failed request is sent again, by default (the openai client's default)."""
BACKOFF_FIRST_S = 0.5
"""The pause before the first retry of an error answer; each retry after doubles it ..."""
BACKOFF_MAX_S = 8.0
"""... up to this (a quarter less at most, at random, so retries do not arrive together)."""
RETRY_AFTER_MAX_S = 60.0
"""The longest ``Retry-After`` an upstream's answer is waited for (longer: the backoff)."""

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
        self.texts: list[str] = []  # joined once at the end: += on the text was quadratic

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
        if text:
            self.texts.append(text)
        return text

    def finish(self) -> Completion:
        self.out.text = "".join(self.texts)
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


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer of ``status`` is worth sending the request again (as the openai
    client judges it: ``x-should-retry`` if given, else 408, 409, 429 and 5xx)."""
    verdict = headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return status in (408, 409, 429) or status >= 500


def backoff(attempt: int) -> float:
    """The pause before retry ``attempt + 1``: 0.5 s doubling up to 8 s, less up to a quarter."""
    pause = min(BACKOFF_FIRST_S * 2.0**attempt, BACKOFF_MAX_S)
    return pause * (1 - 0.25 * random.random())


def retry_pause(attempt: int, headers: Mapping[str, str]) -> float:
    """The pause before retry ``attempt + 1`` after an error answer: the upstream's
    ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date) up to a minute, else
    :func:`backoff`."""
    after: float | None = None
    with contextlib.suppress(ValueError, TypeError, OverflowError):
        if "retry-after-ms" in headers:
            after = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            value = headers["retry-after"].strip()
            try:
                after = float(value)
            except ValueError:
                at = email.utils.parsedate_to_datetime(value)
                at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
                after = (at - datetime.now(UTC)).total_seconds()
    if after is not None and 0 <= after <= RETRY_AFTER_MAX_S:  # NaN fails this
        return after
    return backoff(attempt)


class ChatClient:
    """An async client of one chat-completions upstream.

    Over aiohttp: reading a streamed answer costs about a fifth of the CPU it
    did over httpx (0.8 against 4.3 ms a call for an 8-chunk stream, measured
    side by side), and the service reads one stream per run or response.
    ``timeout`` bounds each wait for the upstream's next bytes (a stream may
    take longer in all); ``connect_timeout`` the connection.

    As the openai client does, a request is sent again up to ``max_retries``
    times when the upstream never answered it (refused, reset, or a kept-alive
    connection closed as it went out: at once the first time), and, unless the
    caller passes ``retry_errors=False``, when it answered 408, 409, 429 or 5xx
    (after its ``Retry-After`` up to a minute, else 0.5 s doubling up to 8 s).
    ``x-should-retry: true``/``false`` decides either way. A timeout or a
    stream already under way is never sent again: the upstream may be working
    on it, or its deltas went out.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.provider = provider_for(base_url)
        self._headers = {"Accept": "text/event-stream, application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxy = _env_proxy(self.base_url)

    def _http(self) -> aiohttp.ClientSession:
        """The session, made on first use (on the event loop that uses it)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=0),  # as many calls as runs need
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def models(self) -> list[dict[str, Any]]:
        """The upstream's ``GET /models`` list (its ``data``); ``UpstreamError`` if it fails."""
        try:
            timeout = aiohttp.ClientTimeout(total=10.0)
            async with await self._send(
                "GET", f"{self.base_url}/models", timeout=timeout
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(f"upstream LLM unreachable: {exc!r}") from exc
        try:
            payload: Any = loads(raw)
        except ValueError:
            payload = None
        if status >= 400:
            raise _error_from(status, payload, reason)
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
        retry_errors: bool = True,
    ) -> Completion:
        """One streamed call; ``on_delta`` gets each content delta as it arrives.

        With ``stream=False`` the upstream is asked for one JSON completion
        (less to parse when nobody watches the text arrive); ``on_delta`` then
        gets the whole text once. Each call is counted in the service's metrics.
        ``retry_errors=False``: an error answer is the outcome (its caller's client
        retries it), only a request never answered is sent again.
        """
        started = time.perf_counter()
        try:
            out = await self._complete(body, on_delta, stream=stream, retry_errors=retry_errors)
        except UpstreamError as exc:
            metrics.UPSTREAM_REQUESTS.labels(self.provider, "error").inc()
            metrics.UPSTREAM_ERRORS.labels(self.provider, exc.code).inc()
            raise
        finally:
            metrics.UPSTREAM_SECONDS.labels(self.provider).observe(time.perf_counter() - started)
        metrics.UPSTREAM_REQUESTS.labels(self.provider, "ok").inc()
        return out

    async def _send(
        self, method: str, url: str, *, retry_errors: bool = True, **options: Any
    ) -> aiohttp.ClientResponse:
        """The response to a request (aiohttp's ``options``) once its headers arrived,
        sent again as the class says."""
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await self._http().request(method, url, proxy=self._proxy, **options)
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise
            except aiohttp.ClientConnectionError as exc:
                if last:
                    raise
                pause = 0.0 if attempt == 0 else backoff(attempt - 1)
                why = repr(exc)
            else:
                status, headers = response.status, response.headers
                if last or not retry_errors or status < 400 or not should_retry(status, headers):
                    return response
                pause = retry_pause(attempt, headers)
                why = f"answered {status}"
                response.release()
            metrics.UPSTREAM_RETRIES.labels(self.provider).inc()
            log.info("upstream %s: %s; sent again in %.1f s", self.base_url, why, pause)
            await asyncio.sleep(pause)
        raise AssertionError("not reached")

    async def _complete(
        self,
        body: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        stream: bool,
        retry_errors: bool,
    ) -> Completion:
        if stream:
            body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        else:
            body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        url = f"{self.base_url}/chat/completions"
        try:
            # orjson's bytes: aiohttp's json= writes with the standard library (about
            # 2 % of the service's time with 64 streamed runs at once).
            data, headers = dumps(body), _JSON_BODY
            send = self._send("POST", url, data=data, headers=headers, retry_errors=retry_errors)
            async with await send as response:
                if response.status >= 400:
                    raw = await response.read()
                    try:
                        payload: Any = loads(raw)
                    except ValueError:
                        payload = None
                    reason = response.reason or ""
                    fallback = raw.decode("utf-8", "replace")[:500] or reason
                    raise _error_from(response.status, payload, fallback)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    return await _read_json(await response.read(), on_delta)
                # Closed here when the stream ends at [DONE] (not left to a finalizer task).
                async with contextlib.aclosing(_lines(response.content)) as lines:
                    return await _read_stream(lines, on_delta)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamError(f"upstream LLM timed out ({type(exc).__name__})") from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamError("upstream LLM closed the stream before it finished") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream LLM unreachable: {exc!r}") from exc


_JSON_BODY = {"Content-Type": "application/json"}


def _env_proxy(base_url: str) -> str | None:
    """The proxy the environment names for the upstream (``HTTPS_PROXY``, ``NO_PROXY``, ...).

    Read once, as httpx and the openai client read it; aiohttp's own
    ``trust_env`` would also read ``~/.netrc`` again on every request.
    """
    parts = urlsplit(base_url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


async def _lines(content: aiohttp.StreamReader) -> AsyncGenerator[list[str], None]:
    """The lines of a response body as they arrive, of any length (``\\n`` or ``\\r\\n``).

    Each item is the lines one read of the body ended, in order (a stream
    that arrives at once is a few reads of many lines: one resumption of this
    generator a read, not a line). Linear in the body: each chunk is split
    once, and the pieces of a line not ended yet are kept apart and joined once
    it ends (a line that comes in many small chunks is not rescanned and
    recopied at each one).
    """
    parts: list[bytes] = []  # the start of a line not ended yet
    async for data in content.iter_any():
        *ended, rest = data.split(b"\n")
        if ended:
            if parts:
                parts.append(ended[0])
                ended[0] = b"".join(parts)
                parts.clear()
            yield [line.rstrip(b"\r").decode("utf-8", "replace") for line in ended]
        if rest:
            parts.append(rest)
    if parts:
        yield [b"".join(parts).rstrip(b"\r").decode("utf-8", "replace")]


async def _read_json(raw: bytes, on_delta: Callable[[str], Awaitable[None]]) -> Completion:
    """A completion answered as one JSON document (an upstream that does not stream)."""
    try:
        data = loads(raw)
    except ValueError as exc:
        raise UpstreamError("upstream LLM answered with invalid JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError("upstream LLM answered with unexpected JSON")
    out = _from_json(data)
    if out.text:
        await on_delta(out.text)
    return out


async def _read_stream(
    lines: AsyncIterator[list[str]], on_delta: Callable[[str], Awaitable[None]]
) -> Completion:
    """A streamed completion, each content delta handed to ``on_delta`` as it arrives.

    ``lines``: the body's lines, as :func:`_lines` gives them.
    """
    acc = _Accumulator()
    done = False
    chunk = acc.chunk
    async for batch in lines:
        for line in batch:
            if not line.startswith("data:"):
                continue
            payload_text = line[5:].strip()
            if payload_text == "[DONE]":
                done = True
                break
            try:
                data = loads(payload_text)
            except ValueError as exc:
                raise UpstreamError("upstream LLM sent an invalid stream chunk") from exc
            if not isinstance(data, dict):
                continue
            if data.get("error"):
                raise _error_from(500, data, "error in the upstream stream")
            text = chunk(data)
            if text:
                await on_delta(text)
        if done:
            break
    out = acc.finish()
    if not done and out.finish_reason is None:
        raise UpstreamError("upstream LLM closed the stream before it finished")
    return out
