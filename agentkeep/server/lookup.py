"""Lookups shared by the routes: a session of the right kind, the active-run rule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from agentkeep._aio_util import arun_op
from agentkeep.errors import Conflict, InvalidTransition, NotFound
from agentkeep.models import ACTIVE_RUN_STATUSES, Message, Session
from agentkeep.runner.ops import expire_if_due
from agentkeep.server.errors import ApiError
from agentkeep.store import Store

__all__ = [
    "active_run_error",
    "active_run_id",
    "aget_conversation",
    "aget_thread",
    "amessage_in",
    "arequire_thread",
    "aretry_on_conflict",
    "expired_now",
    "get_conversation",
    "get_thread",
    "message_in",
]

T = TypeVar("T")


def _get_session(store: Store, session_id: str, kind: str, *, lock: bool = False) -> Session:
    try:
        session = store.sessions.get(session_id, lock=lock)
    except NotFound:
        raise NotFound(kind, session_id) from None
    return _of_kind(session, kind)


async def _aget_session(store: Store, session_id: str, kind: str) -> Session:
    """``_get_session`` on the store's async path (one read, no worker thread)."""
    try:
        session = await arun_op(store.sessions.get, session_id)
    except NotFound:
        raise NotFound(kind, session_id) from None
    return _of_kind(session, kind)


def _of_kind(session: Session, kind: str) -> Session:
    if session.kind != kind:
        raise NotFound(kind, session.id)
    return session


def get_thread(store: Store, thread_id: str, *, lock: bool = False) -> Session:
    """The thread, or 404 (also for a session of another kind); ``lock`` as in ``sessions.get``."""
    return _get_session(store, thread_id, "thread", lock=lock)


async def aget_thread(store: Store, thread_id: str) -> Session:
    """``get_thread`` without a lock, awaited on the store's async path."""
    return await _aget_session(store, thread_id, "thread")


def get_conversation(store: Store, conversation_id: str) -> Session:
    """The conversation, or 404 (also for a session of another kind)."""
    return _get_session(store, conversation_id, "conversation")


async def aget_conversation(store: Store, conversation_id: str) -> Session:
    """``get_conversation`` awaited on the store's async path."""
    return await _aget_session(store, conversation_id, "conversation")


async def arequire_thread(store: Store, thread_id: str) -> None:
    """404 unless ``thread_id`` is a thread: one compiled read of its kind, not the whole
    row, on the store's async path."""
    if not await arun_op(store.sessions.exists, thread_id, kind="thread"):
        raise NotFound("thread", thread_id)


def message_in(store: Store, kind: str, session_id: str, name: str, message_id: str) -> Message:
    """Message ``message_id`` of a session of ``kind``, in one read: 404 for the session,
    else for the message, named ``name`` (a thread's message, a conversation's item)."""
    try:
        return store.messages.in_session(message_id, session_id, kind=kind)
    except NotFound as exc:
        raise _missing(exc, kind, name, message_id) from None


async def amessage_in(
    store: Store, kind: str, session_id: str, name: str, message_id: str
) -> Message:
    """``message_in`` awaited on the store's async path (no worker thread)."""
    try:
        return await arun_op(store.messages.in_session, message_id, session_id, kind=kind)
    except NotFound as exc:
        raise _missing(exc, kind, name, message_id) from None


def _missing(exc: NotFound, kind: str, name: str, ident: str) -> NotFound:
    return exc if exc.kind == kind else NotFound(name, ident)


def active_run_id(store: Store, thread_id: str) -> str | None:
    """The id of a run of the thread that is queued, in progress, requires action or cancelling.

    A run waiting past its ``expires_at`` is expired here, and is not active.
    """
    page = store.runs.list(session_id=thread_id, status=sorted(ACTIVE_RUN_STATUSES), limit=1)
    if not page.items or expire_if_due(store, page.items[0]).status not in ACTIVE_RUN_STATUSES:
        return None
    return page.items[0].id


def expired_now(store: Store, run_id: str) -> bool:
    """Whether an active run is expired now: it waited for tool outputs past its
    ``expires_at`` (expired on this read, ``ops.expire_if_due``), or is gone."""
    try:
        return expire_if_due(store, store.runs.get(run_id)).status == "expired"
    except NotFound:  # deleted meanwhile: not active either
        return True


def active_run_error(thread_id: str, run_id: str) -> ApiError:
    """OpenAI's 400 for a message added to a thread while one of its runs is active."""
    return ApiError(
        400, f"Can't add messages to {thread_id} while a run {run_id} is active.", param=None
    )


async def aretry_on_conflict(update: Callable[[], Awaitable[T]], *, once: bool) -> T:
    """Run a read-modify-write (written at the version it read) until it lands: a
    ``Conflict`` means another write came first, so it reads again. Last writer wins, as
    on OpenAI, without losing the fields the other writer did not touch. With ``once``
    (the client named the version), the ``Conflict`` is the answer. A state conflict
    (``InvalidTransition``) is never retried.

    No bound on the attempts: each one lost is another writer's change committed, so
    the writers of one object all land, however many race.
    """
    while True:
        try:
            return await update()
        except InvalidTransition:
            raise
        except Conflict:
            if once:
                raise
