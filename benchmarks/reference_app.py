"""The bare FastAPI reference the service is measured against (``benchmarks.service``).

What a hand-written endpoint does for the same requests, on the same uvicorn:
a bearer check against one key, a pydantic body, one statement on a pooled
driver connection, an OpenAI-shaped answer.

- ``POST /v1/threads``: one INSERT of the thread's counter row;
- ``POST /v1/threads/{id}/messages``: one INSERT that takes the thread's next
  ``seq`` (SQLite: ``INSERT ... SELECT max(seq) + 1``, atomic under its one
  writer; PostgreSQL: ``WITH s AS (UPDATE ... RETURNING) INSERT ... FROM s``);
- ``GET /v1/threads/{id}/messages?limit=20``: one SELECT of the newest 20;
- ``POST /v1/conversations``, ``POST /v1/conversations/{id}/items`` (one
  item: the same one INSERT) and ``GET /v1/conversations/{id}/items?limit=20``,
  the same statements with the Conversations API's shapes.

No tenant, no validation of the content beyond pydantic, no thread lookup, no
idempotency: the floor of what the service could cost.
``REFERENCE_DATABASE_URL`` names the database (``sqlite:///path`` or
``postgresql://...``); run it with
``uvicorn benchmarks.reference_app:app --workers N``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

API_KEY = os.environ.get("REFERENCE_API_KEY", "bench-key")
URL = os.environ.get("REFERENCE_DATABASE_URL", "sqlite:///./reference.db")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ref_threads (id TEXT PRIMARY KEY, last_seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ref_messages (thread_id TEXT NOT NULL, seq BIGINT NOT NULL,"
    " id TEXT NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, created_at BIGINT NOT NULL,"
    " PRIMARY KEY (thread_id, seq))",
)


class Body(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class Items(BaseModel):
    items: list[Body]


class _SQLite:
    mark = "?"
    insert = (
        "INSERT INTO ref_messages (thread_id, seq, id, role, content, created_at) "
        "SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ? FROM ref_messages WHERE thread_id = ? "
        "RETURNING seq"
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        with self.conn() as conn:
            for ddl in SCHEMA:
                conn.execute(ddl)

    @contextmanager
    def conn(self) -> Iterator[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        yield conn

    def append(self, thread_id: str, ident: str, body: Body, now: int) -> int:
        with self.conn() as conn:
            row = conn.execute(
                self.insert, (thread_id, ident, body.role, body.content, now, thread_id)
            ).fetchone()
        return int(row[0])


class _Postgres:
    mark = "%s"
    insert = (
        "WITH s AS (UPDATE ref_threads SET last_seq = last_seq + 1 WHERE id = %s "
        "RETURNING last_seq) INSERT INTO ref_messages (thread_id, seq, id, role, content, "
        "created_at) SELECT %s, last_seq, %s, %s, %s, %s FROM s RETURNING seq"
    )

    def __init__(self, url: str) -> None:
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(url, min_size=4, max_size=40, kwargs={"autocommit": True})
        with self.pool.connection() as conn:
            for ddl in SCHEMA:
                conn.execute(ddl)

    @contextmanager
    def conn(self) -> Iterator[Any]:
        with self.pool.connection() as conn:
            yield conn

    def append(self, thread_id: str, ident: str, body: Body, now: int) -> int:
        with self.conn() as conn:
            row = conn.execute(
                self.insert, (thread_id, thread_id, ident, body.role, body.content, now)
            ).fetchone()
        if row is None:
            raise HTTPException(404, "no such thread")
        return int(row[0])


db: _SQLite | _Postgres = (
    _SQLite(URL.removeprefix("sqlite:///")) if URL.startswith("sqlite") else _Postgres(URL)
)
app = FastAPI()


def _auth(authorization: str | None) -> None:
    if authorization != f"Bearer {API_KEY}":
        raise HTTPException(401, "Incorrect API key provided.")


def _message(thread_id: str, ident: str, role: str, content: str, now: int) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "thread.message",
        "created_at": now,
        "thread_id": thread_id,
        "role": role,
        "content": [{"type": "text", "text": {"value": content, "annotations": []}}],
        "assistant_id": None,
        "run_id": None,
        "attachments": [],
        "metadata": {},
    }


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _new_session(prefix: str, kind: str) -> dict[str, Any]:
    """A thread or a conversation: one INSERT of its counter row."""
    ident = prefix + secrets.token_hex(12)
    with db.conn() as conn:
        conn.execute(f"INSERT INTO ref_threads (id, last_seq) VALUES ({db.mark}, 0)", (ident,))
    return {"id": ident, "object": kind, "created_at": int(time.time()), "metadata": {}}


def _newest(session_id: str, limit: int) -> list[Any]:
    """The session's newest ``limit`` messages: one SELECT."""
    m = db.mark
    with db.conn() as conn:
        return list(
            conn.execute(
                f"SELECT id, role, content, created_at FROM ref_messages WHERE thread_id = {m} "
                f"ORDER BY seq DESC LIMIT {m}",
                (session_id, limit),
            ).fetchall()
        )


def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@app.post("/v1/threads")
def create_thread(authorization: str | None = Header(default=None)) -> dict[str, Any]:
    _auth(authorization)
    return _new_session("thread_", "thread")


@app.post("/v1/threads/{thread_id}/messages")
def create_message(
    thread_id: str, body: Body, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    _auth(authorization)
    ident = "msg_" + secrets.token_hex(12)
    now = int(time.time())
    db.append(thread_id, ident, body, now)
    return _message(thread_id, ident, body.role, body.content, now)


@app.get("/v1/threads/{thread_id}/messages")
def list_messages(
    thread_id: str, limit: int = 20, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    _auth(authorization)
    data = [_message(thread_id, r[0], r[1], r[2], r[3]) for r in _newest(thread_id, limit)]
    return _list(data, len(data) == limit)


def _item(ident: str, role: str, content: str) -> dict[str, Any]:
    text = "output_text" if role == "assistant" else "input_text"
    return {
        "id": ident,
        "type": "message",
        "status": "completed",
        "role": role,
        "content": [{"type": text, "text": content}],
    }


@app.post("/v1/conversations")
def create_conversation(authorization: str | None = Header(default=None)) -> dict[str, Any]:
    _auth(authorization)
    return _new_session("conv_", "conversation")


@app.post("/v1/conversations/{conversation_id}/items")
def create_items(
    conversation_id: str, body: Items, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    _auth(authorization)
    now = int(time.time())
    data = []
    for item in body.items:
        ident = "msg_" + secrets.token_hex(12)
        db.append(conversation_id, ident, item, now)
        data.append(_item(ident, item.role, item.content))
    return _list(data, False)


@app.get("/v1/conversations/{conversation_id}/items")
def list_items(
    conversation_id: str, limit: int = 20, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    _auth(authorization)
    data = [_item(r[0], r[1], r[2]) for r in _newest(conversation_id, limit)]
    return _list(data, len(data) == limit)
