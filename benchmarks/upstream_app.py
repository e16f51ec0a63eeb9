"""A scripted chat-completions upstream that streams instantly (``benchmarks.streams``).

A bare ASGI app: ``POST /v1/chat/completions`` answers ``model: "tokens-N"``
with N content chunks (``" w0"``, ``" w1"``, ...), a usage chunk and
``data: [DONE]`` as server-sent events, all written at once; other models get
300 chunks. Run it with ``uvicorn benchmarks.upstream_app:app``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["app", "text_of"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def text_of(n: int) -> str:
    """The whole answer of ``tokens-n``."""
    return "".join(f" w{i}" for i in range(n))


@functools.lru_cache(maxsize=64)
def _stream(n: int) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        event = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": f"tokens-{n}",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta else [],
            **more,
        }
        return b"data: " + json.dumps(event).encode() + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": f" w{i}"}) for i in range(n)]
    parts.append(chunk({"content": ""}, "stop"))
    usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}
    parts.append(chunk({}, usage=usage))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _tokens(body: bytes) -> int:
    try:
        model = str(json.loads(body).get("model", ""))
        return int(model.removeprefix("tokens-"))
    except (ValueError, AttributeError):
        return 300


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"].endswith("/chat/completions"):
        payload, kind = _stream(_tokens(body)), b"text/event-stream"
    else:  # /healthz, /v1/models
        payload, kind = b'{"status": "ok"}', b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
