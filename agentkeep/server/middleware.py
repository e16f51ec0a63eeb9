"""ASGI middleware: the request body limit (413) and the last-resort 500 envelope."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.server.errors import ApiError, BodyTooLarge, error_body, translate_error
from agentkeep.server.ratelimit import pending_headers

__all__ = ["GuardMiddleware"]


class GuardMiddleware:
    """Answers 413 for bodies over ``max_body_bytes`` and 500 (an envelope) for any crash.

    The size is checked on ``Content-Length`` and again while the body is read,
    so chunked uploads are bounded too. An error raised after the response has
    started (a stream) cannot change its status; it is logged and the stream ends.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _send_json(send, BodyTooLarge(limit).error)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = pending_headers(scope)
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    added = [
                        (k.encode(), v.encode())
                        for k, v in extra.items()
                        if k.encode() not in present
                    ]
                    message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if not started:
                await _send_json(send, exc.error)
        except Exception as exc:
            error = translate_error(exc)  # logs the unexpected ones
            if not started:
                await _send_json(send, error)


async def _send_json(send: Send, error: ApiError) -> None:
    body = json.dumps(
        error_body(error.message, type=error.type, param=error.param, code=error.code)
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
