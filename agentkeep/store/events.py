"""Events: the append-only timeline, read back from a bookmark and followed live.

Each event gets the tenant's next ``bookmark`` in the writing transaction,
after ``dialect.serialize_appends`` made that transaction the tenant's only
event writer (an advisory transaction lock on PostgreSQL, the one SQLite
writer otherwise). So bookmarks are committed in increasing order and a
reader that resumes after the last bookmark it saw never skips an event.
The last bookmark given out is kept per tenant (``event_bookmarks``), so
deleting a run or session (and with it the newest events) never makes a
bookmark be given out twice.
On PostgreSQL the appending transaction also sends a NOTIFY, which wakes
followers in every process at once; followers poll as well, as a fallback.
Its payload (:class:`Notice`) names the last bookmark, the writing process and
the runs written, so a process that wakes its own readers itself can skip its
own notifications and wake only the readers of the runs named.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.models import CHANNELS, EVENT_TYPES, Event
from agentkeep.models.common import check_limit, from_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store._construct import constructor
from agentkeep.store._listing import Filters
from agentkeep.store._steps import COUNT, MANY, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store._validate import check_object, json_text, opt_text
from agentkeep.store.dialects.base import Listener, lock_key
from agentkeep.store.schema import event_bookmarks as bt
from agentkeep.store.schema import events as t
from agentkeep.store.schema import runs as rt
from agentkeep.store.schema import sessions as st

__all__ = ["Events", "LinkedEvents", "Notice", "events_channel", "origin"]

_FIELDS = ("type", "run_id", "session_id", "agent_id", "channel", "data")
FOLLOW_BATCH = 500
LISTEN_FALLBACK_POLL_S = 1.0
"""With LISTEN working, followers still poll this often (a lost notification costs at most this)."""
CANCEL_CHECK_S = 0.1
NOTICE_RUNS_MAX = 6000
"""Characters of run ids a notification names at most (PostgreSQL allows 8,000 for a
payload); past it, it names none and wakes every run's readers in the listening process."""


def events_channel(tenant_id: str) -> str:
    """The NOTIFY channel of a tenant's events (a short, safe identifier)."""
    return "agentkeep_events_" + hashlib.blake2b(tenant_id.encode(), digest_size=8).hexdigest()


_origin: tuple[int, str] = (0, "")


def origin() -> str:
    """This process's mark in the notifications of the events it writes (new after a fork)."""
    global _origin
    pid = os.getpid()
    if _origin[0] != pid:
        _origin = (pid, secrets.token_hex(8))
    return _origin[1]


class Notice(NamedTuple):
    """A notification of a tenant's events channel: ``<bookmark> <origin> <runs>``.

    ``runs``: the ids of the runs whose events were written; None when it does not
    name them (too many for one payload: any run's may have been written); empty for
    a write of events that are no run's (a response's stream, ``store.responses``).
    """

    bookmark: int
    origin: str
    runs: frozenset[str] | None

    @staticmethod
    def tail(runs: Collection[str]) -> str:
        """What follows the bookmark in the payload of a write of ``runs``' events (``*``
        for too many, or for an id given by a caller that holds a separator)."""
        named = ",".join(sorted(runs))
        if len(named) > NOTICE_RUNS_MAX or " " in named or named.count(",") > max(len(runs) - 1, 0):
            named = "*"
        return f" {origin()} {named}"

    @classmethod
    def parse(cls, payload: str) -> Notice | None:
        """The notice in ``payload``; None for one of another form (a bare bookmark)."""
        parts = payload.split(" ")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        runs = None if parts[2] == "*" else frozenset(r for r in parts[2].split(",") if r)
        return cls(int(parts[0]), parts[1], runs)


_RUN_EVENTS = (
    sa.select(t)
    .where(
        t.c.tenant_id == sa.bindparam("tenant"),
        t.c.run_id == sa.bindparam("run"),
        t.c.bookmark > sa.bindparam("after"),
    )
    .order_by(t.c.bookmark)
    .limit(sa.bindparam("n"))
)
"""One run's events after a bookmark: built once (``Events.list(run_id=...)``, every stream read)."""


def _ids(n: int) -> list[sa.BindParameter[str]]:
    """``n`` parameters ``id0`` ... ``id{n-1}``: an ``IN`` list of a fixed length, which
    compiles once (an expanding parameter is rendered again at every execution)."""
    return [sa.bindparam(f"id{i}", type_=sa.String()) for i in range(n)]


@functools.lru_cache(maxsize=64)
def _runs_last_statement(n: int) -> sa.Select[Any]:
    """The bookmark of each of ``n`` runs' last event (parameters ``tenant_id`` and
    :func:`_ids`; runs without events are left out)."""
    return (
        sa.select(t.c.run_id, sa.func.max(t.c.bookmark))
        .where(t.c.tenant_id == sa.bindparam("tenant_id"), t.c.run_id.in_(_ids(n)))
        .group_by(t.c.run_id)
    )


class LinkedEvents(NamedTuple):
    """Events appended, and for each run asked about the bookmark of its last event before them.

    ``before[run_id]`` is read while the appending transaction is the tenant's
    only event writer, so no event of that run can commit between it and these:
    a reader that has seen every event of the run up to ``before[run_id]`` sees
    all of them by adding the new ones (0: the run had none).
    """

    events: list[Event]
    before: dict[str, int]


_construct_event = constructor(Event)


def _event(data: dict[str, Any]) -> Event:
    """The event of a row's values (a dict of its own: ``created_at`` is converted in it)."""
    data["created_at"] = from_micros(data["created_at"])
    return _construct_event(data)


_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")


def check_type(value: Any, field: str = "type") -> str:
    """An event type: one of the documented vocabulary, or any other well-formed name.

    Well-formed: a letter or underscore, then letters, digits and ``_ . : / -``,
    at most 128 characters (curio's ``run_error``, KODE's ``tool:start``,
    the service's ``thread.run.created``). The name is stored as given.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInput("must be a non-empty string", field=field)
    if len(value) > 128:
        raise InvalidInput("must be at most 128 characters", field=field)
    if value not in EVENT_TYPES and not _TYPE_NAME.match(value):
        raise InvalidInput(
            f"{value!r} is not a well-formed event type: start with a letter or underscore, "
            "then letters, digits, '_', '.', ':', '/' or '-'",
            field=field,
        )
    return value


def _check_channel(value: Any, field: str = "channel") -> str:
    if value not in CHANNELS:
        raise InvalidInput(f"must be one of {', '.join(sorted(CHANNELS))}", field=field)
    return str(value)


def _check_bookmark(value: Any, field: str = "after_bookmark") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("must be a non-negative integer", field=field)
    return value


def _check_types(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) or not items:
        raise InvalidInput("must be an event type or a non-empty list of them", field="types")
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidInput("must contain non-empty strings", field="types")
    return list(items)


# The statements of every append, built once (their values bound at each execution).
_TAKE_BOOKMARKS = (
    sa.update(bt)
    .where(bt.c.tenant_id == sa.bindparam("b_tenant_id"))
    .values(last_bookmark=bt.c.last_bookmark + sa.bindparam("b_n", type_=sa.BigInteger()))
    .returning(bt.c.last_bookmark)
)


@functools.cache
def _take_bookmarks_statement(
    notifying_of: Callable[..., sa.ColumnElement[Any] | None],
) -> tuple[sa.Update, bool]:
    """``_TAKE_BOOKMARKS``, returning the dialect's notification too where it has one
    (``notifying_of``: its ``Dialect.notifying``; then True): built once per dialect."""
    channel: sa.BindParameter[str] = sa.bindparam("b_channel", type_=sa.String())
    tail: sa.BindParameter[str] = sa.bindparam("b_tail", type_=sa.Text())
    notifying = notifying_of(channel, sa.cast(bt.c.last_bookmark, sa.Text()) + tail)
    if notifying is None:
        return _TAKE_BOOKMARKS, False
    return _TAKE_BOOKMARKS.returning(notifying), True


@functools.lru_cache(maxsize=64)
def _runs_statement(
    serializing_of: Callable[..., sa.ColumnElement[Any] | None], n: int
) -> tuple[sa.Select[Any], bool]:
    """The lookup of ``n`` runs (parameters ``tenant_id`` and :func:`_ids`), taking
    the tenant's event lock too where the dialect has one as an expression
    (``serializing_of``: its ``Dialect.serializing``; then True, with a ``lock_key``
    parameter): built once per dialect and count, and compiled once (run as driver SQL:
    an expanding ``IN`` list was compiled again at every append). The lock is one
    uncorrelated subquery, evaluated once, when the first run is found.

    Without one (SQLite: a write transaction is the only writer from its start), the
    lookup reads each run's last event too (``_runs_last_statement`` folded in, one
    statement less); with one, that read must come after the lock, in a statement of its
    own.
    """
    runs = sa.select(rt.c.id, rt.c.session_id, rt.c.agent_id).where(
        rt.c.tenant_id == sa.bindparam("tenant_id"), rt.c.id.in_(_ids(n))
    )
    key: sa.BindParameter[int] = sa.bindparam("lock_key", type_=sa.BigInteger())
    locking = serializing_of(key)
    if locking is None:
        last = (
            sa.select(sa.func.max(t.c.bookmark))
            .where(t.c.tenant_id == rt.c.tenant_id, t.c.run_id == rt.c.id)
            .scalar_subquery()
        )
        return runs.add_columns(last), False
    return runs.add_columns(sa.select(locking).scalar_subquery()), True


def _ids_params(tenant_id: str, ids: Collection[str]) -> dict[str, Any]:
    """The parameters of a statement of :func:`_ids`: ``tenant_id`` and each of ``ids``."""
    params: dict[str, Any] = {f"id{i}": ident for i, ident in enumerate(ids)}
    params["tenant_id"] = tenant_id
    return params


@functools.lru_cache(maxsize=64)
def _sessions_statement(n: int) -> sa.Select[Any]:
    """Which of ``n`` sessions exist (parameters ``tenant_id`` and :func:`_ids`)."""
    return sa.select(st.c.id).where(
        st.c.tenant_id == sa.bindparam("tenant_id"), st.c.id.in_(_ids(n))
    )


@functools.cache
def _serialize_statement(
    serializing_of: Callable[..., sa.ColumnElement[Any] | None],
) -> sa.Select[Any] | None:
    """The statement that makes the transaction the tenant's only event writer
    (``Dialect.serializing``, parameter ``lock_key``); None where writers are serialized
    already (SQLite)."""
    locking = serializing_of(sa.bindparam("lock_key", type_=sa.BigInteger()))
    return None if locking is None else sa.select(locking)


@functools.cache
def notify_statement(
    notifying_of: Callable[..., sa.ColumnElement[Any] | None],
) -> sa.Select[Any] | None:
    """``Dialect.notify`` as a statement (parameters ``n_channel``, ``n_payload``); None
    where the dialect has no notifications."""
    channel: sa.BindParameter[str] = sa.bindparam("n_channel", type_=sa.String())
    notifying = notifying_of(channel, sa.bindparam("n_payload", type_=sa.Text()))
    return None if notifying is None else sa.select(notifying)


_MAX_BOOKMARK = sa.select(sa.func.coalesce(sa.func.max(t.c.bookmark), 0)).where(
    t.c.tenant_id == sa.bindparam("tenant_id")
)


# The tenant's bookmark row, else (before it has one: events imported) its last event's.
_LATEST = sa.select(
    sa.func.coalesce(
        sa.select(bt.c.last_bookmark)
        .where(bt.c.tenant_id == sa.bindparam("tenant_id"))
        .scalar_subquery(),
        sa.select(sa.func.coalesce(sa.func.max(t.c.bookmark), 0))
        .where(t.c.tenant_id == sa.bindparam("tenant_id"))
        .scalar_subquery(),
    )
)


class Events(Resource):
    """``store.events``: this tenant's event timeline."""

    kind = "event"

    def _prepare(self, item: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        unknown = set(item) - set(_FIELDS)
        if unknown:
            raise InvalidInput(
                f"unknown field(s) {', '.join(sorted(unknown))}", field=f"{prefix}{min(unknown)}"
            )
        data = check_object(item.get("data"), f"{prefix}data")
        json_text(data, f"{prefix}data")  # what both backends store alike, or the field named
        return {
            "tenant_id": self.tenant_id,
            "type": check_type(item.get("type"), f"{prefix}type"),
            "run_id": opt_text(item.get("run_id"), f"{prefix}run_id", 64),
            "session_id": opt_text(item.get("session_id"), f"{prefix}session_id", 64),
            "agent_id": opt_text(item.get("agent_id"), f"{prefix}agent_id", 256),
            "channel": _check_channel(item.get("channel", "progress"), f"{prefix}channel"),
            "data": data,
        }

    @op
    def append(
        self,
        type: str,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        channel: str = "progress",
        data: dict[str, Any] | None = None,
    ) -> Op[Event]:
        """Append one event; returns it with its bookmark.

        A run's session and agent are copied onto the event when not given.
        A ``run_id`` or ``session_id`` that does not exist raises ``NotFound``.
        """
        row = self._prepare(
            {
                "type": type,
                "run_id": run_id,
                "session_id": session_id,
                "agent_id": agent_id,
                "channel": channel,
                "data": data,
            },
            "",
        )
        written = yield from self._write([row])
        return written.events[0]

    @op
    def append_many(self, events: Sequence[Mapping[str, Any]]) -> Op[list[Event]]:
        """Append several events (dicts of ``append``'s arguments) in one transaction, in order."""
        rows = self._prepare_all(events)
        if not rows:
            return []
        written = yield from self._write(rows)
        return written.events

    @op
    def append_many_linked(
        self, events: Sequence[Mapping[str, Any]], runs: Collection[str]
    ) -> Op[LinkedEvents]:
        """:meth:`append_many`, and the bookmark of each of ``runs``' last event before these.

        For handing committed events to a run's live readers in this process
        without their reading them back (see :class:`LinkedEvents`).
        """
        rows = self._prepare_all(events)
        if not rows:
            return LinkedEvents([], {})
        return (yield from self._write(rows, runs))

    def _prepare_all(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
            raise InvalidInput("must be a list of event objects", field="events")
        rows = []
        for i, item in enumerate(events):
            if not isinstance(item, Mapping):
                raise InvalidInput("must be an object", field=f"events[{i}]")
            rows.append(self._prepare(item, f"events[{i}]."))
        return rows

    def _write(self, rows: list[dict[str, Any]], runs: Collection[str] = ()) -> Op[LinkedEvents]:
        """One write of ``rows`` (a transaction on every backend: ``Write.atomic``)."""
        linked: LinkedEvents = yield Write(
            "appending an event", lambda: self._write_steps(rows, runs), atomic=True
        )
        return linked

    def _write_steps(
        self, rows: list[dict[str, Any]], runs: Collection[str]
    ) -> Steps[LinkedEvents]:
        dialect, sql = self._core.dialect, self._core.message_sql
        before: dict[str, int] = {}
        # The bookmark row's UPDATE below would serialize the writers by itself, but
        # PostgreSQL queues them on the advisory lock faster: 64 streamed runs took
        # 1.3 s with it and 1.5-1.6 s without (benchmarks.streams, 2026-12-06). The
        # lookup of the events' runs takes it when there are runs to look up.
        locked, lasts = yield from self._resolve_references(rows)
        if not locked:
            lock = _serialize_statement(dialect.serializing)
            if lock is not None:
                yield Stmt(sql.compiled(lock), {"lock_key": lock_key(self.tenant_id, "events")})
        if runs:
            before.update(dict.fromkeys(runs, 0))
            if lasts is not None and lasts.keys() >= set(runs):  # read with the lookup
                before.update((r, b) for r in runs if (b := lasts[r]) is not None)
            else:
                found = yield Stmt(
                    sql.compiled(_runs_last_statement(len(runs))),
                    _ids_params(self.tenant_id, runs),
                )
                before.update((r, int(b)) for r, b in found)
        last = yield from self._take_bookmarks(rows)
        now = utcnow_micros()
        for i, r in enumerate(rows, start=last - len(rows) + 1):
            r["bookmark"] = i
            r["created_at"] = now
        yield Stmt(sql.insert_row(t), [sql.insert_params(t, r) for r in rows], MANY)
        return LinkedEvents([_event(dict(r)) for r in rows], before)

    def _take_bookmarks(self, rows: list[dict[str, Any]]) -> Steps[int]:
        """Reserve a bookmark for each of ``rows``; the last one. Never reuses one, even
        of deleted events.

        The listeners of the tenant's events channel are notified at commit (where the
        dialect can, by the same statement), with a :class:`Notice` of the rows' runs.
        """
        dialect, sql = self._core.dialect, self._core.message_sql
        channel = events_channel(self.tenant_id)
        take, notifies = _take_bookmarks_statement(dialect.notifying)
        n = len(rows)
        tail = ""
        if dialect.supports_listen:
            tail = Notice.tail({r["run_id"] for r in rows if r["run_id"] is not None})
        params = {"b_tenant_id": self.tenant_id, "b_n": n, "b_channel": channel, "b_tail": tail}
        found = yield Stmt(sql.compiled(take), params)
        if not found:  # the tenant's first events
            mine = {"tenant_id": self.tenant_id}
            got = yield sql.built_once(_MAX_BOOKMARK).stmt(mine)  # (a literal 0: not compiled())
            last = int(got[0][0]) + n
            yield Stmt(sql.insert_row(bt), {**mine, "last_bookmark": last}, COUNT)
            notifies = False
        else:
            last = int(found[0][0])
        if not notifies:
            notify = notify_statement(dialect.notifying)
            if notify is not None:
                yield Stmt(
                    sql.compiled(notify), {"n_channel": channel, "n_payload": f"{last}{tail}"}
                )
        return last

    def _resolve_references(
        self, rows: list[dict[str, Any]]
    ) -> Steps[tuple[bool, dict[str, int | None] | None]]:
        """Check that the runs and sessions exist; copy a run's session and agent.

        First, True when the lookup also made the transaction the tenant's only event
        writer (``serialize_appends``): where the dialect can, the runs are looked up by
        the statement that takes its lock. Then, where the lookup read them (see
        ``_runs_statement``), the bookmark of each run's last event (None: none yet).
        """
        sql = self._core.message_sql
        run_ids = {r["run_id"] for r in rows if r["run_id"] is not None}
        runs: dict[str, Any] = {}
        locked = False
        lasts: dict[str, int | None] | None = None
        if run_ids:
            lookup, locked = _runs_statement(self._core.dialect.serializing, len(run_ids))
            params = _ids_params(self.tenant_id, run_ids)
            if locked:  # SQLite's statement takes no lock (its writers are serialized already)
                params["lock_key"] = lock_key(self.tenant_id, "events")
            found = yield Stmt(sql.compiled(lookup), params)
            runs = {r[0]: r for r in found}
            if not locked:
                lasts = {ident: None if r[3] is None else int(r[3]) for ident, r in runs.items()}
            missing = sorted(run_ids - set(runs))
            if missing:
                raise NotFound("run", missing[0])
        # A run's own session exists while the run does (its foreign key cascades): only
        # the sessions named apart from a run are looked up.
        session_ids: set[str] = set()
        for r in rows:
            run = runs.get(r["run_id"])
            if run is not None:
                if r["session_id"] is None:
                    r["session_id"] = run[1]
                if r["agent_id"] is None:
                    r["agent_id"] = run[2]
            if r["session_id"] is not None and (run is None or r["session_id"] != run[1]):
                session_ids.add(r["session_id"])
        if session_ids:
            found = yield Stmt(
                sql.compiled(_sessions_statement(len(session_ids))),
                _ids_params(self.tenant_id, session_ids),
            )
            missing = sorted(session_ids - {r[0] for r in found})
            if missing:
                raise NotFound("session", missing[0])
        return locked, lasts

    @op
    def list(
        self,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        types: str | Sequence[str] | None = None,
        channel: str | None = None,
        after_bookmark: int = 0,
        limit: int = 100,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Op[list[Event]]:
        """Events after ``after_bookmark``, oldest first; pass the last bookmark to read on.

        ``created_after`` / ``created_before``: only events created at or after
        the one and before the other. One statement, compiled once per set of filters.
        """
        check_limit(limit)
        after = _check_bookmark(after_bookmark)
        sql = self._core.message_sql
        only_run = (session_id, agent_id, types, channel, created_after, created_before)
        if isinstance(run_id, str) and only_run == (None,) * 6:  # every stream read
            params = {"tenant": self.tenant_id, "run": run_id, "after": after, "n": limit}
            read = sql.built_once(_RUN_EVENTS).stmt(params)
        else:
            where = Filters()
            where.equal(
                (t.c.run_id, run_id),
                (t.c.session_id, session_id),
                (t.c.agent_id, agent_id),
                (t.c.channel, None if channel is None else _check_channel(channel)),
            )
            wanted = _check_types(types)
            if wanted is not None:
                where.one_of(t.c.type, "type", wanted)
            where.between(t.c.created_at, created_after, created_before)

            def build() -> sa.Select[Any]:
                mine = (
                    t.c.tenant_id == sa.bindparam("e_tenant"),
                    t.c.bookmark > sa.bindparam("e_after"),
                )
                stmt = sa.select(t).where(*mine, *where.conditions()).order_by(t.c.bookmark)
                return stmt.limit(sa.bindparam("e_limit"))

            params = {
                **where.params,
                "e_tenant": self.tenant_id,
                "e_after": after,
                "e_limit": limit,
            }
            read = sql.shaped(("events", where.shape()), build).stmt(params)
        rows = yield Read("reading events", single(read))
        return [_event(sql.named_row(t, row)) for row in rows]

    @op
    def latest_bookmark(self) -> Op[int]:
        """The last bookmark given out in this tenant (0 before the first event)."""
        sql = self._core.message_sql
        read = sql.built_once(_LATEST).stmt({"tenant_id": self.tenant_id})
        rows = yield Read("reading the latest bookmark", single(read))
        return int(rows[0][0])

    def follow(
        self,
        *,
        run_id: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        types: str | Sequence[str] | None = None,
        channel: str | None = None,
        after_bookmark: int = 0,
        poll_interval: float = 0.1,
        timeout: float | None = None,
        stop: Callable[[Event], bool] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[Event, None, None]:
        """Yield the events after ``after_bookmark``, then new ones as they are committed.

        Sees events written by any process: on PostgreSQL a LISTEN connection
        wakes it as soon as an appending transaction commits (with a poll
        every second as fallback); elsewhere it polls every ``poll_interval``
        seconds. Ends when ``timeout`` seconds pass without a matching event,
        or after the event for which ``stop(event)`` is true, or within a
        fraction of a second of another thread setting ``cancel`` (a
        generator cannot be closed while it waits in another thread). Closing
        the generator (or leaving its ``for`` loop) frees its connection.
        """
        after = _check_bookmark(after_bookmark)
        _check_types(types)
        if channel is not None:
            _check_channel(channel)
        _check_follow_times(poll_interval, timeout)
        wanted: dict[str, Any] = {
            "run_id": run_id,
            "session_id": session_id,
            "agent_id": agent_id,
            "types": types,
            "channel": channel,
        }
        # Listen before the first read, so nothing committed after it goes unnoticed.
        listener = self._core.dialect.listen(events_channel(self.tenant_id))
        try:
            idle_since = time.monotonic()
            while cancel is None or not cancel.is_set():
                batch = self.list(**wanted, after_bookmark=after, limit=FOLLOW_BATCH)
                for event in batch:
                    after = event.bookmark
                    yield event
                    if stop is not None and stop(event):
                        return
                if batch:
                    idle_since = time.monotonic()
                    if len(batch) == FOLLOW_BATCH:
                        continue
                interval = max(poll_interval, LISTEN_FALLBACK_POLL_S)
                if not listener.notifying:
                    interval = poll_interval
                if timeout is not None:
                    remaining = idle_since + timeout - time.monotonic()
                    if remaining <= 0:
                        return
                    interval = min(interval, remaining)
                _wait(listener, interval, cancel)
        finally:
            listener.close()


def _check_follow_times(poll_interval: float, timeout: float | None) -> None:
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, (int, float))
        or poll_interval <= 0
    ):
        raise InvalidInput("must be a positive number of seconds", field="poll_interval")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise InvalidInput("must be a non-negative number of seconds", field="timeout")


def _wait(listener: Listener, interval: float, cancel: threading.Event | None) -> None:
    """Until the listener is notified or ``interval`` passes; sooner once ``cancel`` is set."""
    if cancel is None:
        listener.wait(interval)
        return
    woken_by = time.monotonic() + interval
    while not cancel.is_set():
        left = woken_by - time.monotonic()
        if left <= 0 or listener.wait(min(left, CANCEL_CHECK_S)):
            return
