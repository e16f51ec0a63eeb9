"""A Google ADK session service over an agentkeep store.

    from agentkeep.integrations.adk import AgentkeepSessionService
    runner = Runner(agent=agent, app_name="shop", session_service=AgentkeepSessionService(store))

An ADK session is an agentkeep session (its ``agent_id`` is the app name, its
``user_id`` the user; ids are unique per tenant), each event one of its
messages (text parts as text blocks, the rest of the event beside them), app
and user state agentkeep state documents. ``append_event`` writes the event
and the app, user and session state deltas in one transaction, and refuses a
stale session object (``StaleSessionError``) as ADK's own services do.
``get_session`` reads only the events asked for (``num_recent_events``,
``after_timestamp``). A new session, an event (each with its app, user and
session deltas) and a read of the last ``num_recent_events`` are each one
store operation on the store's own connections, awaited without a worker
thread (``_adk_ops``; on PostgreSQL the create and the append are one
statement each). Needs
``pip install 'agentkeep[adk]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Callable
from typing import Any

from agentkeep.integrations._extra import require

require("google.adk.sessions", "adk")

from google.adk.errors._stale_session_error import StaleSessionError  # noqa: E402
from google.adk.errors.already_exists_error import AlreadyExistsError  # noqa: E402
from google.adk.errors.session_not_found_error import SessionNotFoundError  # noqa: E402
from google.adk.events import Event  # noqa: E402
from google.adk.sessions import BaseSessionService, Session  # noqa: E402
from google.adk.sessions._session_util import extract_json_safe_state_delta  # noqa: E402
from google.adk.sessions.base_session_service import (  # noqa: E402
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.state import State  # noqa: E402

from agentkeep.aio import AsyncStore  # noqa: E402
from agentkeep.errors import Conflict, NotFound  # noqa: E402
from agentkeep.ids import new_ids  # noqa: E402
from agentkeep.integrations._adk_ops import (  # noqa: E402
    MISSING,
    OK,
    STALE,
    append_op,
    create_op,
    docs_op,
    get_op,
)
from agentkeep.integrations._apis import sync_and_async  # noqa: E402
from agentkeep.models import Message  # noqa: E402
from agentkeep.models import Session as StoredSession  # noqa: E402
from agentkeep.models.common import MAX_LIMIT, utcnow_micros  # noqa: E402
from agentkeep.store import Store  # noqa: E402
from agentkeep.store._steps import Op, operation  # noqa: E402
from agentkeep.store.messages import _from_rows  # noqa: E402
from agentkeep.store.sessions import session_values  # noqa: E402

__all__ = ["AgentkeepSessionService"]

_APP = "adk:app"  # state documents: app state by app name, user state by app name / user
_USER = "adk:user:"
_RETRIES = 5  # concurrent appends to one app's or user's state: retry the losers


def _text_blocks(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Move the text of the event's text parts into blocks (the part keeps its place)."""
    blocks: list[dict[str, Any]] = []
    for part in (event.get("content") or {}).get("parts") or []:
        if isinstance(part.get("text"), str):
            part["text@"] = len(blocks)
            blocks.append({"type": "text", "text": part.pop("text")})
    return blocks


def _event(message: Message) -> Event:
    data = dict(message.extra["adk_event"])
    for part in (data.get("content") or {}).get("parts") or []:
        if "text@" in part:
            part["text"] = message.content[part.pop("text@")]["text"]
    return Event.model_validate(data)


def _make_session(
    ident: str,
    app_name: str,
    user_id: str,
    state: dict[str, Any],
    app: dict[str, Any],
    user: dict[str, Any],
    events: list[Event],
    update_time: float,
) -> Session:
    merged = {
        **{State.APP_PREFIX + k: v for k, v in app.items()},
        **{State.USER_PREFIX + k: v for k, v in user.items()},
        **state,
    }
    return Session(
        id=ident,
        app_name=app_name,
        user_id=user_id,
        state=merged,
        events=events,
        last_update_time=update_time,
    )


def _new_ident(session_id: str | None) -> str:
    """The id a new session gets: the one given (trimmed), else a new UUID."""
    return session_id.strip() if session_id and session_id.strip() else str(uuid.uuid4())


def _since(events: list[Event], after: float | None) -> tuple[list[Event], bool]:
    """The events after the newest one older than ``after`` (all of them when ``after`` is
    None), oldest first, and whether such an older event was among them: then no event
    before these is wanted."""
    if after is None:
        return events, False
    for i in range(len(events) - 1, -1, -1):
        if events[i].timestamp < after:
            return events[i + 1 :], True
    return events, False


class AgentkeepSessionService(BaseSessionService):
    """ADK's ``BaseSessionService`` on an agentkeep store (a ``Store`` or ``AsyncStore``)."""

    def __init__(self, store: Store | AsyncStore) -> None:
        self.store, self.astore = sync_and_async(store)

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """A new session, its app and user state deltas merged into their documents, in one
        operation on the store's async API (on PostgreSQL one statement); the session comes
        back with the app and user state as stored."""
        ident, now = _new_ident(session_id), time.time()
        deltas = extract_json_safe_state_delta(state or {})
        fields = {
            "agent_id": app_name,
            "user_id": user_id,
            "state": deltas["session"],
            "extra": {"adk": {"update_time": now}},
        }
        store = self.store
        values = session_values(store.tenant_id, ident, fields, utcnow_micros())
        docs = ((_APP, app_name), (_USER + app_name, user_id))
        merged = tuple(
            (namespace, key, deltas[part])
            for (namespace, key), part in zip(docs, ("app", "user"), strict=True)
            if deltas[part]
        )
        operation = create_op(store._core, store.tenant_id, values, doc_deltas=merged, docs=docs)
        try:
            found = await store._core.arun_op(operation)
        except Conflict as exc:
            raise AlreadyExistsError(f"Session with id {ident} already exists.") from exc
        app, user = dict(found.get(_APP) or {}), dict(found.get(_USER + app_name) or {})
        return _make_session(ident, app_name, user_id, values["state"], app, user, [], now)

    def _merge(self, namespace: str, key: str, delta: dict[str, Any]) -> dict[str, Any]:
        """Apply ``delta`` to a state document (compare-and-set); the merged state."""
        try:
            doc = self.store.state.get(namespace, key)
            current, version = dict(doc.value or {}), doc.version
        except NotFound:
            current, version = {}, 0
        if delta:
            current.update(delta)
            self.store.state.put(namespace, key, current, expected_version=version)
        return current

    async def _docs(self, app_name: str, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The app's state and the user's, in one read on the async API."""
        core = self.store._core
        docs = ((_APP, app_name), (_USER + app_name, user_id))
        found = await core.arun_op(docs_op(core, self.store.tenant_id, docs))
        return dict(found.get(_APP) or {}), dict(found.get(_USER + app_name) or {})

    def _session(
        self,
        stored: StoredSession,
        app: dict[str, Any],
        user: dict[str, Any],
        events: list[Event],
    ) -> Session:
        return _make_session(
            stored.id,
            str(stored.agent_id),
            str(stored.user_id),
            stored.state,
            app,
            user,
            events,
            stored.extra["adk"]["update_time"],
        )

    async def _find(self, app_name: str, user_id: str, session_id: str) -> StoredSession | None:
        try:
            stored = await self.astore.sessions.get(session_id)
        except NotFound:
            return None
        if stored.agent_id != app_name or stored.user_id != user_id or "adk" not in stored.extra:
            return None
        return stored

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        config = config or GetSessionConfig()
        n, after = config.num_recent_events, config.after_timestamp
        if n is not None and not 0 <= n <= MAX_LIMIT:
            return await self._paged(app_name, user_id, session_id, n, after)
        # One read of the session, its state documents and its last events: the last n, or
        # with no n (what the Runner asks by default) up to one read's limit, which is all
        # of them unless the session has more (then they are read a page at a time).
        wanted = MAX_LIMIT if n is None else n
        store = self.store
        docs = ((_APP, app_name), (_USER + app_name, user_id))
        found = await store._core.arun_op(
            get_op(store._core, store.tenant_id, session_id, docs=docs, n=wanted)
        )
        if found is None or found.agent_id != app_name or found.user_id != user_id:
            return None
        if "adk" not in found.extra:
            return None
        messages = _from_rows(store.tenant_id, session_id, found.rows, store._core.message_sql)
        events, reached = _since([_event(m) for m in messages], after)
        if n is None and not reached and len(found.rows) == wanted:
            return await self._paged(app_name, user_id, session_id, n, after)
        return _make_session(
            session_id,
            app_name,
            user_id,
            found.state,
            dict(found.docs.get(_APP) or {}),
            dict(found.docs.get(_USER + app_name) or {}),
            events,
            found.extra["adk"]["update_time"],
        )

    async def _paged(
        self, app_name: str, user_id: str, session_id: str, n: int | None, after: float | None
    ) -> Session | None:
        """``get_session`` of more events than one read takes: the session, its events a
        page at a time, then the app and user state, each a read on the async API."""
        stored = await self._find(app_name, user_id, session_id)
        if stored is None:
            return None
        try:
            events = await self.store._core.arun_op(self._events(session_id, n, after))
        except NotFound:  # deleted meanwhile
            return None
        app, user = await self._docs(app_name, user_id)
        return self._session(stored, app, user, events)

    def _events(self, session_id: str, n: int | None, after: float | None) -> Op[list[Event]]:
        """The last ``n`` events at or after ``after``, oldest first: newest pages until done
        (``messages.page``'s operation, page after page)."""
        messages = self.store.messages
        out: list[Event] = []
        cursor: str | None = None
        while n is None or len(out) < n:
            size = MAX_LIMIT if n is None else min(MAX_LIMIT, n - len(out))
            page = yield from operation(
                messages.page, session_id, limit=size, after=cursor, order="desc"
            )
            for message in page.items:
                event = _event(message)
                if after is not None and event.timestamp < after:
                    out.reverse()
                    return out
                out.append(event)
            if not page.has_more:
                break
            cursor = page.last_id
        out.reverse()
        return out

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The app's sessions (of one user), a page of sessions at a time; the app's state
        and each user's read once, with the first of the user's sessions."""
        app: dict[str, Any] | None = None
        users: dict[str, dict[str, Any]] = {}
        found: list[Session] = []
        after: str | None = None
        while True:
            page = await self.astore.sessions.list(
                agent_id=app_name, user_id=user_id, limit=MAX_LIMIT, after=after, order="asc"
            )
            for stored in page.items:
                if "adk" not in stored.extra:
                    continue
                uid = str(stored.user_id)
                if uid not in users:
                    app_now, users[uid] = await self._docs(app_name, uid)
                    app = app_now if app is None else app
                found.append(self._session(stored, app or {}, users[uid], []))
            if not page.has_more:
                break
            after = page.last_id
        found.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=found)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        if await self._find(app_name, user_id, session_id) is not None:
            with contextlib.suppress(NotFound):
                await self.astore.sessions.delete(session_id)

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return (await self._docs(app_name, user_id))[1]

    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        await self._append(session, event)
        session.last_update_time = event.timestamp
        return self._commit_event_to_session(session, event)

    async def _append(self, session: Session, event: Event) -> None:
        """The event and its state deltas, in one transaction: one store operation on the
        store's async connections (on PostgreSQL one statement), the app and user deltas
        merged into their state documents in it. Only when the event's id was stored
        meanwhile by another append (``Conflict``) does it go to the transaction below, in
        a worker thread."""
        data = event.model_dump(mode="json", exclude_none=True)
        blocks = _text_blocks(data)
        role = "user" if event.author == "user" else "assistant"
        deltas = extract_json_safe_state_delta(event.actions.state_delta or {})
        docs: list[tuple[str, str, dict[str, Any]]] = []
        if deltas["app"]:
            docs.append((_APP, session.app_name, deltas["app"]))
        if deltas["user"]:
            docs.append((_USER + session.app_name, session.user_id, deltas["user"]))
        store = self.store
        row = store.messages._row(
            role, blocks, None, None, event.id, None, {"adk_event": data}, None, -1
        )
        operation = append_op(
            store._core,
            store.tenant_id,
            session.id,
            row=row,
            ident=new_ids("msg", 1)[0],
            last_update_time=session.last_update_time,
            update_time=event.timestamp,
            session_delta=deltas["session"],
            doc_deltas=tuple(docs),
        )
        try:
            status = await store._core.arun_op(operation)
        except Conflict:
            pass  # the event's id stored meanwhile by another append: as below
        else:
            _check(status, session)
            return
        append = functools.partial(self._append_once, session, event, deltas, role, blocks, data)
        await asyncio.to_thread(self._retrying, append)

    def _retrying(self, write: Callable[[], None]) -> None:
        """``write()`` in a transaction, again when it loses a race (``Conflict``), at most
        ``_RETRIES`` times."""
        for attempt in range(_RETRIES):
            try:
                with self.store.transaction():
                    write()
                return
            except Conflict:
                if attempt == _RETRIES - 1:
                    raise

    def _append_once(
        self,
        session: Session,
        event: Event,
        deltas: dict[str, dict[str, Any]],
        role: str,
        blocks: list[dict[str, Any]],
        data: dict[str, Any],
    ) -> None:
        try:
            stored = self.store.sessions.get(session.id, lock=True)
        except NotFound as exc:
            raise SessionNotFoundError(f"Session {session.id} not found.") from exc
        _check(
            STALE if stored.extra["adk"]["update_time"] > session.last_update_time else OK, session
        )
        if deltas["app"]:
            self._merge(_APP, session.app_name, deltas["app"])
        if deltas["user"]:
            self._merge(_USER + session.app_name, session.user_id, deltas["user"])
        self.store.messages.append(
            session.id, role, blocks, idempotency_key=event.id, extra={"adk_event": data}
        )
        self.store.sessions.update(
            session.id,
            state={**stored.state, **deltas["session"]},
            extra={**stored.extra, "adk": {"update_time": event.timestamp}},
        )


def _check(status: int, session: Session) -> None:
    """Raise what ADK's own services raise for a missing or stale session."""
    if status == MISSING:
        raise SessionNotFoundError(f"Session {session.id} not found.")
    if status == STALE:
        raise StaleSessionError(
            "The last_update_time provided in the session object is earlier than the "
            "update_time in storage. Please check if it is a stale session."
        )
