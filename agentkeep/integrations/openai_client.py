"""Usage of any ``openai`` client's calls, recorded as agentkeep usage rows.

    client = agentkeep.track(OpenAI(), store, session_id=session.id)

Each chat-completions and responses call the client makes (streamed or not)
becomes one LLM usage row: model, tokens (cached and reasoning included),
latency to the last byte, status, and the cost from the price table. The
client's HTTP transport is wrapped: every byte reaches the caller as the
upstream sent it, when it sent it; the body is read on the side as it passes.
A streamed chat completion carries usage only with
``stream_options={"include_usage": True}``; without it the row has no tokens.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from agentkeep.aio import AsyncStore
from agentkeep.integrations._apis import sync_and_async
from agentkeep.store import Store

__all__ = ["track"]

C = TypeVar("C")
T = TypeVar("T")
_ENDPOINTS = {"/chat/completions": "chat", "/responses": "responses"}


@dataclass
class _Call:
    """One tracked call: what was asked, and the body as it streams by."""

    kind: str
    model: str
    started: float
    status: int
    chunks: list[bytes] = field(default_factory=list)
    done: bool = False


def _endpoint(request: Any) -> str | None:
    if request.method != "POST":
        return None
    path = request.url.path.rstrip("/")
    return next((kind for end, kind in _ENDPOINTS.items() if path.endswith(end)), None)


def _events(body: bytes) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a body: one JSON document, or each ``data:`` line of an SSE stream."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        yield json.loads(text)
        return
    for line in text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]":
                try:
                    yield json.loads(data)
                except ValueError:
                    continue


def _usage(call: _Call) -> dict[str, Any]:
    """The usage row's fields from the response body."""
    model, usage, error = call.model, None, None
    try:
        for event in _events(b"".join(call.chunks)):
            payload = event.get("response", event) if call.kind == "responses" else event
            if isinstance(payload, dict):
                model = payload.get("model") or model
                usage = payload.get("usage") or usage
                if isinstance(payload.get("error"), dict):
                    error = payload["error"].get("message")
    except ValueError:
        error = "the response body is not JSON"
    usage = usage or {}
    if call.kind == "chat":
        tokens_in, tokens_out = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    else:
        tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
        reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)
    failed = call.status >= 400 or error is not None
    return {
        "model": model or "unknown",
        "input_tokens": tokens_in or 0,
        "output_tokens": tokens_out or 0,
        "cached_tokens": cached or 0,
        "reasoning_tokens": reasoning or 0,
        "latency_ms": round((time.perf_counter() - call.started) * 1000),
        "status": "error" if failed else "success",
        "error_message": (error or f"HTTP {call.status}") if failed else None,
        "input_params": {"endpoint": call.kind},
    }


def _start(request: Any, kind: str, started: float, status: int) -> _Call:
    try:
        model = json.loads(request.content or b"{}").get("model", "")
    except ValueError:
        model = ""
    return _Call(kind, str(model), started, status)


class _SyncStream:
    def __init__(self, inner: Any, call: _Call, finish: Callable[[_Call], None]):
        self.inner, self.call, self.finish = inner, call, finish

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.call.chunks.append(chunk)
            yield chunk

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if not self.call.done:
                self.call.done = True
                self.finish(self.call)


class _AsyncStream:
    def __init__(self, inner: Any, call: _Call, finish: Callable[[_Call], Any]):
        self.inner, self.call, self.finish = inner, call, finish

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.call.chunks.append(chunk)
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if not self.call.done:
                self.call.done = True
                await self.finish(self.call)


class _Transport:
    def __init__(self, inner: Any, record: Callable[[dict[str, Any]], None]):
        self.inner, self.record = inner, record

    def handle_request(self, request: Any) -> Any:
        started = time.perf_counter()
        response = self.inner.handle_request(request)
        kind = _endpoint(request)
        if kind is None:
            return response
        call = _start(request, kind, started, response.status_code)
        stream = _kind(response.stream, _SyncStream, "SyncByteStream")
        response.stream = stream(response.stream, call, lambda c: self.record(_usage(c)))
        return response

    def close(self) -> None:
        self.inner.close()


class _AsyncTransport:
    def __init__(self, inner: Any, record: Callable[[dict[str, Any]], Any]):
        self.inner, self.record = inner, record

    async def handle_async_request(self, request: Any) -> Any:
        started = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        kind = _endpoint(request)
        if kind is None:
            return response
        call = _start(request, kind, started, response.status_code)
        stream = _kind(response.stream, _AsyncStream, "AsyncByteStream")

        async def finish(c: _Call) -> None:
            await self.record(_usage(c))

        response.stream = stream(response.stream, call, finish)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@functools.cache
def _subclass(mixin: type, base: type) -> type:
    return type(mixin.__name__, (mixin, base), {})


def _kind(instance: Any, mixin: type[T], base_name: str) -> type[T]:
    """``mixin`` made a subclass of ``base_name`` of the HTTP library ``instance`` comes from.

    The openai client may run on httpx or on a fork of it (``httpx2``): its
    responses check their stream's and transport's classes against its own.
    """
    library = sys.modules[type(instance).__module__.split(".")[0]]
    return cast("type[T]", _subclass(cast(type, mixin), getattr(library, base_name)))


def track(
    client: C,
    store: Store | AsyncStore,
    *,
    session_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    user_id: str | None = None,
    provider: str = "openai",
) -> C:
    """Record the usage of every chat-completions and responses call ``client`` makes.

    ``client``: an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` (its HTTP
    client's transport is wrapped); it is returned, tracking from now on.
    Each row carries ``session_id``, ``agent_id``, ``run_id``, ``user_id``.
    """
    sync, astore = sync_and_async(store)
    links: dict[str, Any] = {
        "session_id": session_id,
        "agent_id": agent_id,
        "run_id": run_id,
        "user_id": user_id,
    }
    http = getattr(client, "_client", None)
    transport = getattr(http, "_transport", None)
    if hasattr(transport, "handle_request"):

        def record(fields: dict[str, Any]) -> None:
            sync.usage.record(provider=provider, **links, **fields)

        sync_wrapper = _kind(transport, _Transport, "BaseTransport")
        http._transport = sync_wrapper(transport, record)  # type: ignore[union-attr]
    elif hasattr(transport, "handle_async_request"):

        async def arecord(fields: dict[str, Any]) -> None:
            await astore.usage.record(provider=provider, **links, **fields)

        async_wrapper = _kind(transport, _AsyncTransport, "AsyncBaseTransport")
        http._transport = async_wrapper(transport, arecord)  # type: ignore[union-attr]
    else:
        raise TypeError(f"cannot track {type(client).__name__}: it has no httpx client (_client)")
    return client
