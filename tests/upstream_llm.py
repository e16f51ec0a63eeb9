"""A scripted chat-completions upstream for the run engine's tests.

``UpstreamLLM`` is a small HTTP server on 127.0.0.1 (a thread of the test
process) that speaks ``POST /v1/chat/completions`` the way OpenAI does, both
streaming (server-sent ``chat.completion.chunk`` events, a final usage chunk
when ``stream_options.include_usage`` is set, then ``data: [DONE]``) and not.

Replies are scripted per model name, so tests that share one service never
see each other's replies: ``upstream.script("m-123", Reply(text="Hi"),
Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}')]))``. Each call
for that model takes the next reply; when none is left, the default reply
echoes the last user message. ``Reply`` can also be an HTTP error, a delay
before answering (or a gate to wait for), a delay between chunks, a
connection dropped mid-stream, or one closed before any answer. ``active`` and ``most_active`` count the
requests answered at once (``active_for(model)`` those of one model: a shared
upstream may still be answering an earlier test).
Every request body is kept in ``upstream.requests``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Reply", "ToolCall", "UpstreamLLM"]


@dataclass
class ToolCall:
    """A function call the model makes."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass
class Reply:
    """One scripted answer to one chat-completions call."""

    text: str | None = None
    chunks: list[str] | None = None  # explicit content deltas (default: text split on spaces)
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int | None = None  # default: a count derived from the request
    completion_tokens: int | None = None  # default: number of content chunks
    include_usage: bool = True
    status: int = 200  # non-2xx: answer with an OpenAI error envelope
    error_message: str = "scripted upstream error"
    error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # more headers (error or raw answers)
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between streamed chunks
    drop_after: int | None = None  # close the connection after this many chunks
    disconnect: bool = False  # close the connection before answering anything
    # Hold the stream after ``hold_after`` chunks until ``hold`` is set (a run provably live).
    hold: threading.Event | None = None
    hold_after: int = 0
    hold_timeout: float = 60.0  # the longest it holds: a test that forgot to release ends
    finish_reason: str | None = None
    ignore_stream: bool = False  # answer one JSON completion even when asked to stream
    gate: threading.Event | None = None  # answer only once this is set
    # Answer exactly these bytes (with ``status`` and this content type): malformed answers.
    raw: bytes | None = None
    raw_content_type: str = "text/event-stream"

    def deltas(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        if not self.text:
            return []
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class UpstreamLLM:
    """The scripted server; ``base_url`` ends in ``/v1`` like OpenAI's."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.models: list[str] = []
        """What ``GET /v1/models`` lists (ids)."""
        self.models_unanswered = 0
        """How many of the next ``GET /v1/models`` have their connection closed unanswered."""
        self.models_asked = 0
        self.headers: list[dict[str, str]] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._calls = 0
        self.active = 0  # requests being answered now
        self._active_models: Counter[str] = Counter()
        self.most_active = 0  # the most at once
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    with upstream._lock:
                        upstream.models_asked += 1
                        unanswered = upstream.models_unanswered > 0
                        upstream.models_unanswered -= unanswered
                    if unanswered:
                        self.close_connection = True
                        return
                    data = [
                        {"id": m, "object": "model", "created": 1700000000, "owned_by": "upstream"}
                        for m in upstream.models
                    ]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(
                        404, {"error": {"message": "not found", "type": "invalid_request_error"}}
                    )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(
                        404, {"error": {"message": "not found", "type": "invalid_request_error"}}
                    )
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._json(
                        400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}
                    )
                    return
                model = str(body.get("model"))
                with upstream._lock:
                    upstream.active += 1
                    upstream.most_active = max(upstream.most_active, upstream.active)
                    upstream._active_models[model] += 1
                try:
                    upstream._answer(self, body)
                finally:
                    with upstream._lock:
                        upstream.active -= 1
                        upstream._active_models[model] -= 1

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="upstream-llm", daemon=True
        )
        self._thread.start()

    def active_for(self, model: str) -> int:
        """Requests for ``model`` being answered now (other tests' calls on a shared upstream
        are not counted)."""
        with self._lock:
            return self._active_models[model]

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, *replies: Reply) -> None:
        """Queue replies for calls that name ``model``."""
        with self._lock:
            self._scripts[model].extend(replies)

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> UpstreamLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answering ------------------------------------------------------------------

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        model = str(body.get("model"))
        with self._lock:
            self.requests.append(body)
            self._calls += 1
            queue = self._scripts.get(model)
            if queue:
                return queue.popleft()
        return Reply(text=f"You said: {_last_user_text(body)}")

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        reply = self._next_reply(body)
        with self._lock:
            self.headers.append(dict(handler.headers.items()))
        if reply.disconnect:  # as a kept-alive connection the server closed under the request
            handler.close_connection = True
            return
        if reply.gate is not None:
            reply.gate.wait(60)
        if reply.delay:
            time.sleep(reply.delay)
        model = str(body.get("model"))
        if reply.raw is not None:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", reply.raw_content_type)
            handler.send_header("Content-Length", str(len(reply.raw)))
            handler.end_headers()
            handler.wfile.write(reply.raw)
            return
        if reply.status >= 400:
            error = {
                "error": {
                    "message": reply.error_message,
                    "type": "server_error" if reply.status >= 500 else "invalid_request_error",
                    "param": None,
                    "code": reply.error_code,
                }
            }
            data = json.dumps(error).encode()
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        deltas = reply.deltas()
        prompt_text = json.dumps(body.get("messages") or [])
        prompt_tokens = (
            reply.prompt_tokens
            if reply.prompt_tokens is not None
            else max(1, len(prompt_text) // 4)
        )
        completion_tokens = (
            reply.completion_tokens
            if reply.completion_tokens is not None
            else len(deltas) + 5 * len(reply.tool_calls)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        calls = [
            {
                "id": call.id or f"call_up_{i}_{int(time.time() * 1000) % 100000}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        ident = f"chatcmpl-{self._calls}"
        created = int(time.time())
        if not body.get("stream") or reply.ignore_stream:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(deltas) or None}
            if calls:
                message["tool_calls"] = calls
            payload: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            }
            if reply.include_usage:
                payload["usage"] = usage
            data = json.dumps(payload).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": d}) for d in deltas]
        for i, call in enumerate(calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {
                                    "name": call["function"]["name"],
                                    "arguments": args[:half],
                                },
                            }
                        ]
                    }
                )
            )
            events.append(
                chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
            )
        events.append(chunk({}, finish))
        options = body.get("stream_options") or {}
        if reply.include_usage and options.get("include_usage"):
            events.append(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        try:
            for n, event in enumerate(events):
                if reply.drop_after is not None and n >= reply.drop_after:
                    handler.wfile.flush()
                    handler.close_connection = True
                    return
                if reply.hold is not None and n == reply.hold_after:
                    reply.hold.wait(reply.hold_timeout)
                handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                handler.wfile.flush()
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
            handler.wfile.write(b"data: [DONE]\n\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
