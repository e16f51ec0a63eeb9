"""``python -m benchmarks.fake_upstream --port P``: a chat-completions upstream at a fixed pace.

Answers ``POST /v1/chat/completions`` with ``--chunks`` content deltas,
``--chunk-delay`` seconds apart: streamed (``chat.completion.chunk`` events,
a usage chunk, ``[DONE]``) when asked to stream, else one JSON completion
after the same total time, so a streamed and a plain call of the same
request take equally long. An ASGI app on uvicorn, so the upstream is not
what limits the benchmarks that use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["make_app"]


def make_app(chunks: int, chunk_delay: float) -> Starlette:
    words = [("word" if i == 0 else " word") for i in range(chunks)]
    usage = {"prompt_tokens": 20, "completion_tokens": chunks, "total_tokens": 20 + chunks}

    def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    async def stream(model: str) -> AsyncIterator[bytes]:
        yield chunk(model, {"role": "assistant", "content": ""})
        for word in words:
            await asyncio.sleep(chunk_delay)
            yield chunk(model, {"content": word})
        yield chunk(model, {}, "stop")
        tail = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "choices": []}
        yield f"data: {json.dumps({**tail, 'usage': usage})}\n\ndata: [DONE]\n\n".encode()

    async def completions(request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model") or "bench")
        if body.get("stream"):
            return StreamingResponse(stream(model), media_type="text/event-stream")
        await asyncio.sleep(chunk_delay * chunks)
        message = {"role": "assistant", "content": "".join(words)}
        return JSONResponse(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk-delay", type=float, default=0.025)
    args = parser.parse_args()
    app = make_app(args.chunks, args.chunk_delay)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
