"""The statements of the message operations, declared once against the schema.

Every statement that appends or reads messages is built here from the
SQLAlchemy tables of ``schema.py`` and compiled once per dialect to the
driver's SQL string (SQLAlchemy's compilation costs tens of microseconds per
statement; an append that the database does in 25 µs must not pay it each
time). ``MessageSQL``'s units of work yield them to a driver cursor: the store's own kept
connection outside a transaction, the transaction's connection inside one
(``Core.run_op`` / ``Core.arun_op`` decide), so each operation has one
implementation, whatever the caller, sync or async.

Rows passed between the statements and ``messages.py`` are named:
:class:`NewRow` (a validated message about to be written), :class:`StoredRow`
(what a read returns) and :class:`Extras` (the usually-empty columns).

The guarantees:

- **gapless seq**: the append takes the session row (``UPDATE sessions SET
  last_seq = last_seq + n ...``) in the same transaction as the insert. On
  SQLite that transaction holds the write lock of the file (``BEGIN
  IMMEDIATE``, or the caller's transaction), so it reads the new ``last_seq``
  back before inserting. On PostgreSQL it is one statement (``WITH s AS
  (UPDATE ...) INSERT ... SELECT ... FROM s``): the row lock serializes appends
  to a session and a failed insert rolls the counter back with it.
- **idempotency keys**: stored keys are read first and their messages
  returned; a concurrent writer that stores one first makes the unique index
  refuse the insert (``Conflict``) and the caller reads again.
- **errors**: driver errors are translated by ``_errors.translate``.

What makes it cheap, measured with ``python -m benchmarks``:

- SQLite batches go in as multi-row INSERTs with positional parameters (a
  named one costs sqlite3 a string and a dict lookup), the optional columns
  that no message of the batch sets written as literals (binding costs per
  value); PostgreSQL's one-message statement has them as literals too;
- one C JSON encoder for the columns (``json.dumps`` makes one per call), and
  ``messages.extend`` for callers that do not need the stored messages back;
- SQLite reads the new ``last_seq`` with a SELECT rather than RETURNING (which
  SQLite buffers in a temporary table);
- reads fetch the five usually-empty columns as one value (NULL when all are
  empty), walk SQLite's table forwards, and PostgreSQL sends a plain
  message's text instead of its jsonb (whose text output costs the server
  more than the rest of the row);
- ``recent(chat=True)`` reads role and content only, for ``messages.history``.
"""

from __future__ import annotations

import functools
import json
import json.decoder
import json.encoder
import json.scanner
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.engine.interfaces import Dialect as SADialect
from sqlalchemy.sql.compiler import SQLCompiler

from agentkeep.errors import InvalidInput, NotFound, SessionBusy
from agentkeep.models import ACTIVE_RUN_STATUSES
from agentkeep.store._json import make_dumps
from agentkeep.store._steps import COUNT, ROWS, Steps, Stmt
from agentkeep.store.schema import messages as t
from agentkeep.store.schema import runs as rt
from agentkeep.store.schema import sessions as st

__all__ = [
    "Appended",
    "Extras",
    "MessageSQL",
    "NewRow",
    "Shaped",
    "StoredRow",
    "columns_of",
    "dump_content",
    "dump_json",
    "dump_str",
    "named",
]


def named(stmt: sa.Select[Any], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """The rows of ``stmt`` as the driver returned them, by the names of its columns."""
    names = [str(c.key) for c in stmt.selected_columns]
    return [dict(zip(names, row, strict=True)) for row in rows]


@functools.cache
def columns_of(table: sa.Table) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``table``'s column names in order, and the names of its JSON columns."""
    return tuple(table.c.keys()), tuple(c.name for c in table.c if isinstance(c.type, sa.JSON))


class Shaped(NamedTuple):
    """A statement compiled once for its shape (:meth:`MessageSQL.shaped`)."""

    sql: str
    #: The bind processors of its parameters that have one (a JSON path on SQLite), by name.
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    #: The parameters whose values the statement holds.
    fixed: dict[str, Any]

    def stmt(self, params: Mapping[str, Any], result: int = ROWS) -> Stmt:
        """The statement with ``params``, each through its type's bind processor."""
        values = {**self.fixed, **params}
        for name, process in self.processors:
            if name in values:
                values[name] = process(values[name])
        return Stmt(self.sql, values, result)


class NewRow(NamedTuple):
    """A validated message, before it is written (everything but ``seq`` and ``created_at``)."""

    id: str | None
    role: str
    content: list[dict[str, Any]]
    content_types: str
    run_id: str | None
    agent_id: str | None
    idempotency_key: str | None
    metadata: dict[str, str]
    extra: dict[str, Any]
    #: The content as given when it was a plain string (its JSON is then written directly).
    text: str | None

    @property
    def plain(self) -> bool:
        """No run, agent, key, metadata or extra: the usual message."""
        return (
            self.run_id is None
            and self.agent_id is None
            and self.idempotency_key is None
            and not self.metadata
            and not self.extra
        )

    def content_json(self) -> str:
        return _text_json(self.text) if self.text is not None else dump_content(self.content)


class StoredRow(NamedTuple):
    """A message as the reads fetch it (tenant and session are known from the query).

    ``rest`` is NULL when run, agent, idempotency key, metadata and extra are
    all empty, else their JSON array (:class:`Extras`); on PostgreSQL
    (``MessageSQL.text_column``) ``content`` is a plain message's text and the
    rest, never NULL for another message, carries its content as a sixth element.
    """

    id: str
    seq: int
    role: str
    content: Any
    created_at: int
    rest: Any


class Extras(NamedTuple):
    """The usually-empty columns of a stored message, decoded from ``StoredRow.rest``."""

    run_id: str | None
    agent_id: str | None
    idempotency_key: str | None
    metadata: dict[str, str]
    extra: dict[str, Any]
    #: PostgreSQL (``MessageSQL.text_column``): the content of a message that is not plain.
    content: Any = None


class Appended(NamedTuple):
    """What an append did."""

    #: Stored messages of the idempotency keys that were given again.
    found: list[StoredRow]
    #: The session's new ``last_seq``; None: there is no such session.
    last: int | None
    #: ``created_at`` of the written messages (microseconds).
    now: int


class WhileIdle(NamedTuple):
    """An append only while the session has no active run (``append_if_idle``): else it
    raises ``SessionBusy`` and writes nothing. ``kind``: and only to a session of this kind
    (else ``NotFound``); None, any. With ``runs=False`` only the kind is checked
    (``append_many(kind=...)``)."""

    kind: str | None
    runs: bool = True


# --- JSON as the columns hold it -------------------------------------------------

_encode_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii
_dumps = make_dumps(allow_nan=True)  # what json.dumps writes, its encoder made once
_to_json = pydantic_core.to_json


def dump_str(text: str) -> str:
    """``text`` as a JSON string.

    pydantic-core's encoder (about 2.5x json's for a message's text): it escapes
    what JSON requires and writes other characters as they are (UTF-8), which
    also lets a read take the text as stored. A lone surrogate cannot be UTF-8:
    such a text is written with json's ASCII escapes, as json.dumps would.
    """
    try:
        return _to_json(text).decode()
    except pydantic_core.PydanticSerializationError:
        return _encode_ascii(text)


def dump_json(value: Any) -> str:
    """JSON text as SQLAlchemy's JSON type writes it (``json.dumps``)."""
    return "{}" if not value and isinstance(value, dict) else _dumps(value)


def dump_content(blocks: list[dict[str, Any]]) -> str:
    """``dump_json(blocks)``; one text block (the common message) without the generic encoder."""
    if len(blocks) == 1:
        block = blocks[0]
        if len(block) == 2 and block.get("type") == "text":
            text = block.get("text")
            if type(text) is str and next(iter(block)) == "type":
                return _text_json(text)
    return _dumps(blocks)


def _text_json(text: str) -> str:
    """``dump_content([{"type": "text", "text": text}])``."""
    return f'[{{"type": "text", "text": {dump_str(text)}}}]'


# The C scanner behind json.loads, without its wrapper (a third of the cost for short text).
_scan: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def load_json(value: Any) -> Any:
    """A JSON column as the driver returns it as text (written by ``dump_json``)."""
    if value == "{}":
        return {}
    if not isinstance(value, str):
        return value
    try:
        obj, end = _scan(value, 0)
    except StopIteration:
        return json.loads(value)  # raises the usual JSONDecodeError
    return obj if end == len(value) else json.loads(value)


def load_text(value: Any) -> Any:
    """A JSON column of any value, returned by the driver as its text (SQLite).

    Unlike :func:`load_json`, nothing but text is expected: a column whose value
    may be a JSON string (``"be brief"``) is loaded once, never again.
    """
    return json.loads(value) if isinstance(value, str) else value


def as_loaded(value: Any) -> Any:
    """A JSON column of any value, loaded by the driver already (psycopg)."""
    return value


_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]
# One text block as dump_content writes it.
TEXT_HEAD = '[{"type": "text", "text": "'
TEXT_TAIL = '"}]'
_HEAD_LEN, _TAIL_CUT = len(TEXT_HEAD), -len(TEXT_TAIL)


def load_content(value: Any) -> Any:
    """``load_json`` for a content column; one text block decodes only its string."""
    if type(value) is str and value.startswith(TEXT_HEAD) and value.endswith(TEXT_TAIL):
        text = value[_HEAD_LEN:_TAIL_CUT]
        # No escape and no quote: the JSON string is the text itself (a second block
        # would bring quotes, an escaped character a backslash).
        if "\\" not in text and '"' not in text:
            return [{"type": "text", "text": text}]
        try:
            text, end = _scanstring(value, _HEAD_LEN)
        except ValueError:
            return load_json(value)
        if end == len(value) + _TAIL_CUT + 1:
            return [{"type": "text", "text": text}]
    return load_json(value)


# --- building statements ------------------------------------------------------------

b = sa.bindparam


def const(value: int | str) -> sa.ColumnElement[Any]:
    """A constant written into the statement (a bound parameter costs per execution)."""
    if isinstance(value, int):
        return sa.literal_column(str(int(value)))
    return sa.literal_column("'" + value.replace("'", "''") + "'")


EMPTY = const("{}")
#: Columns of a written message, in the order of the INSERTs below.
INSERT_COLUMNS = [
    "tenant_id",
    "id",
    "session_id",
    "seq",
    "role",
    "content",
    "content_types",
    "run_id",
    "agent_id",
    "idempotency_key",
    "metadata",
    "extra",
    "created_at",
]
_OF_SESSION = (t.c.tenant_id == b("t"), t.c.session_id == b("s"))


def bump_session(n: sa.ColumnElement[Any]) -> sa.Update:
    """Take the session row: ``last_seq`` and ``message_count`` up by ``n``."""
    return (
        sa.update(st)
        .where(st.c.tenant_id == b("t"), st.c.id == b("s"))
        .values(
            last_seq=st.c.last_seq + n,
            message_count=st.c.message_count + n,
            last_activity_at=b("now"),
        )
    )


#: The usually-empty columns of a message, in the order of the INSERTs below.
OPTIONAL_COLUMNS = ("run_id", "agent_id", "idempotency_key", "metadata", "extra")
#: Which of ``OPTIONAL_COLUMNS`` a multi-row INSERT binds (the others are written empty).
Shape = tuple[bool, bool, bool, bool, bool]
_EMPTY_OPTIONAL: dict[str, sa.ColumnElement[Any]] = {
    "run_id": sa.null(),
    "agent_id": sa.null(),
    "idempotency_key": sa.null(),
    "metadata": EMPTY,
    "extra": EMPTY,
}


def row_values(shape: Shape) -> dict[str, Any]:
    """A message's values for an INSERT: the optional columns in ``shape`` bound, the others empty.

    Its parameters, in the order of the columns, are :func:`row_params`.
    """
    values: dict[str, Any] = {
        "tenant_id": b("t"),
        "id": b("id"),
        "session_id": b("s"),
        "seq": b("seq"),
        "role": b("role"),
        "content": b("content"),
        "content_types": b("ct"),
    }
    for column, bound in zip(OPTIONAL_COLUMNS, shape, strict=True):
        values[column] = b(column) if bound else _EMPTY_OPTIONAL[column]
    values["created_at"] = b("now")
    return values


def row_params(shape: Shape) -> list[str]:
    """The parameter names of :func:`row_values`, in order (what :func:`bind_rows` gives)."""
    names = ["t", "id", "s", "seq", "role", "content", "ct"]
    names += [c for c, bound in zip(OPTIONAL_COLUMNS, shape, strict=True) if bound]
    return [*names, "now"]


def shape_of(rows: Sequence[NewRow]) -> Shape:
    """Which optional columns any of ``rows`` sets."""
    run = agent = key = meta = extra = False
    for r in rows:
        if r.run_id is not None:
            run = True
        if r.agent_id is not None:
            agent = True
        if r.idempotency_key is not None:
            key = True
        if r.metadata:
            meta = True
        if r.extra:
            extra = True
    return run, agent, key, meta, extra


def bind_rows(
    params: list[Any],
    tenant_id: str,
    session_id: str,
    rows: Sequence[NewRow],
    ids: Sequence[str],
    first: int,
    now: int,
    shape: Shape,
) -> None:
    """Add to ``params`` the values of :func:`row_params` for ``rows``, ``seq`` from ``first``."""
    add, extend = params.append, params.extend
    run, agent, key, meta, extra = shape
    seq = first
    for ident, row in zip(ids, rows, strict=True):
        text = row.text
        content = _text_json(text) if text is not None else dump_content(row.content)
        extend((tenant_id, ident, session_id, seq, row.role, content, row.content_types))
        if run:
            add(row.run_id)
        if agent:
            add(row.agent_id)
        if key:
            add(row.idempotency_key)
        if meta:
            add(dump_json(row.metadata) if row.metadata else "{}")
        if extra:
            add(dump_json(row.extra) if row.extra else "{}")
        add(now)
        seq += 1


def full_params(row: NewRow, ident: str, seq: int) -> dict[str, Any]:
    """A message's values bound by name (``v_<column>``), but tenant, session and now."""
    return {
        "v_id": ident,
        "v_seq": seq,
        "v_role": row.role,
        "v_content": row.content_json(),
        "v_content_types": row.content_types,
        "v_run_id": row.run_id,
        "v_agent_id": row.agent_id,
        "v_idempotency_key": row.idempotency_key,
        "v_metadata": dump_json(row.metadata) if row.metadata else "{}",
        "v_extra": dump_json(row.extra) if row.extra else "{}",
    }


def compile_sql(stmt: sa.ClauseElement, dialect: SADialect) -> str:
    """The driver's SQL text of ``stmt`` (named parameters)."""
    return str(stmt.compile(dialect=dialect))


_MAX_CHUNK = 128
#: The report statements :meth:`MessageSQL.adhoc` keeps compiled (emptied when full).
_ADHOC_MAX = 512


def chunks(n: int) -> Iterator[tuple[int, int]]:
    """(start, size) pieces of ``n`` rows, each size a power of two up to ``_MAX_CHUNK``.

    A multi-row INSERT is one statement per size (and shape): powers of two keep
    that to eight sizes whatever the batch sizes callers use.
    """
    start = 0
    while start < n:
        size = min(_MAX_CHUNK, 1 << ((n - start).bit_length() - 1))
        yield start, size
        start += size


def unstored(
    rows: Sequence[NewRow], ids: Sequence[str], found: Sequence[StoredRow]
) -> tuple[Sequence[NewRow], Sequence[str]]:
    """``rows`` (and their ids) without those whose idempotency key is among ``found``."""
    if not found:
        return rows, ids
    stored = {Extras(*load_json(r.rest)).idempotency_key for r in found if r.rest is not None}
    keep = [i for i, r in enumerate(rows) if r.idempotency_key not in stored]
    return [rows[i] for i in keep], [ids[i] for i in keep]


@functools.cache
def _sort_key(table: sa.Table, sort: str) -> sa.Select[Any]:
    return sa.select(table.c[sort]).where(table.c.tenant_id == b("t"), table.c.id == b("c"))


def _listing(
    table: sa.Table,
    where: tuple[str, ...],
    sort: str,
    forward: bool,
    after: bool,
    before: bool,
) -> sa.Select[Any]:
    """The page statement of :meth:`MessageSQL.listing` for one shape of listing."""
    conds = [table.c.tenant_id == b("t")]
    conds += [table.c[name] == b(f"f{i}") for i, name in enumerate(where)]
    ident = table.c.id
    key = table.c[sort]
    for field, used, greater in (("after", after, forward), ("before", before, not forward)):
        if not used:
            continue
        cursor: sa.BindParameter[str] = b(field)
        if key is ident:
            conds.append(ident > cursor if greater else ident < cursor)
            continue
        at: sa.BindParameter[Any] = b(field + "_key", type_=key.type)
        if greater:
            conds.append(sa.or_(key > at, sa.and_(key == at, ident > cursor)))
        else:
            conds.append(sa.or_(key < at, sa.and_(key == at, ident < cursor)))
    ascending = forward != (before and not after)
    keys = [key] if key is ident else [key, ident]
    order = [k.asc() if ascending else k.desc() for k in keys]
    return sa.select(table).where(*conds).order_by(*order).limit(b("n")).offset(const(0))


class MessageSQL:
    """The compiled message statements of one dialect, and the units of work over them.

    ``append``, ``recent`` and ``exists`` do no I/O: they yield the statements
    to run (:class:`Stmt`) and get back what each returned (``_steps``), so one
    implementation serves a sync cursor (the current transaction's, or a kept
    connection's in a transaction of its own) and an async one. Subclasses (one
    per dialect, in ``store/dialects/``) build the statements that differ.
    """

    #: ``load_json(value)`` turns a JSON column as the driver returns it into Python.
    load_json: Callable[[Any], Any] = staticmethod(load_json)
    #: ``load_json`` for the content column.
    load_content: Callable[[Any], Any] = staticmethod(load_content)
    #: ``load_any(value)``: a JSON column that may hold any JSON value (a string too), as
    #: the driver returns it, into Python. ``load_json`` suits only objects and arrays.
    load_any: Callable[[Any], Any] = staticmethod(load_text)
    #: How the driver returns a content of one text block: ``head + text + tail``
    #: when the text needs no escape.
    text_head, text_tail = TEXT_HEAD, TEXT_TAIL
    #: Whether rows carry the text of a plain message instead of its content;
    #: ``recent(chat=True)`` rows are then (role, text, content or NULL).
    text_column = False

    def __init__(self, dialect: SADialect, insert: Callable[[sa.Table], Any]) -> None:
        """``insert``: the dialect's INSERT of a table (``Dialect.insert``: it offers
        ``on_conflict_do_nothing``)."""
        self.sa_dialect = dialect
        self._insert = insert
        of_session = (st.c.tenant_id == b("t"), st.c.id == b("s"))
        self.session_exists = self.compile(sa.select(const(1)).where(*of_session))
        self.session_kind = self.compile(sa.select(st.c.kind).where(*of_session))
        active = (
            sa.select(rt.c.id)
            .where(
                rt.c.tenant_id == st.c.tenant_id,
                rt.c.session_id == st.c.id,
                rt.c.status.in_([const(s) for s in sorted(ACTIVE_RUN_STATUSES)]),
            )
            .limit(const(1))
            .offset(const(0))  # else SQLite's compiler adds "OFFSET ?", a parameter of its own
            .scalar_subquery()
        )
        self.session_active_run = self.compile(sa.select(st.c.kind, active).where(*of_session))
        self.message_seq = self.compile(
            sa.select(t.c.seq).where(t.c.tenant_id == b("t"), t.c.id == b("c"))
        )
        self._pages: dict[tuple[bool, bool, bool, bool, bool, bool], str] = {}
        self._compiled: dict[sa.ClauseElement, str] = {}
        self._shaped: dict[Hashable, Shaped] = {}
        self._inserts_of: dict[sa.Table, str] = {}
        self._insert_session: str | None = None
        self._of_session: dict[sa.Table, str] = {}
        self._listings: dict[tuple[sa.Table, tuple[str, ...], str, bool, bool, bool], str] = {}
        self._adhoc: dict[Any, tuple[SQLCompiler, dict[str, Callable[[Any], Any]]]] = {}

    def compile(self, stmt: sa.ClauseElement) -> str:
        return compile_sql(stmt, self.sa_dialect)

    def named_row(self, table: sa.Table, values: Sequence[Any]) -> dict[str, Any]:
        """A row of every column of ``table`` as the driver returned it, by column name,
        its JSON columns loaded (:attr:`load_any`)."""
        names, json_names = columns_of(table)
        row = dict(zip(names, values, strict=True))
        for name in json_names:
            row[name] = self.load_any(row[name])
        return row

    def insert_params(self, table: sa.Table, row: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of :meth:`insert_row` for ``row`` (every column of ``table``, by
        name): a copy, its JSON columns as their text (:func:`dump_json`)."""
        params = dict(row)
        for name in columns_of(table)[1]:
            params[name] = dump_json(row[name])
        return params

    def json_param(self, name: str) -> sa.ColumnElement[Any]:
        """A parameter for a JSON column, bound as its JSON text (:func:`dump_json`): typed
        as text, so no JSON bind processor dumps that text again (:meth:`shaped`)."""
        return b(name, type_=sa.Text)

    def insert_row(self, table: sa.Table) -> str:
        """An INSERT of one row of ``table``, each column bound by its name (JSON ones as
        their text: :meth:`json_param`), compiled once per table."""
        sql = self._inserts_of.get(table)
        if sql is None:
            sql = self._inserts_of[table] = self.compile(self.insert_of(table))
        return sql

    def insert_of(self, table: sa.Table) -> sa.Insert:
        """:meth:`insert_row`'s statement, not compiled (to build on: a CTE)."""
        return sa.insert(table).values(self._binds(table))

    def _binds(self, table: sa.Table) -> dict[str, sa.ColumnElement[Any]]:
        """Every column of ``table`` bound by its name (JSON ones as their text)."""
        return {
            c.name: self.json_param(c.name) if isinstance(c.type, sa.JSON) else b(c.name)
            for c in table.c
        }

    def insert_session(self) -> str:
        """An INSERT of one session row (:meth:`insert_row`'s parameters) that writes
        nothing when the session's id is taken; compiled once."""
        sql = self._insert_session
        if sql is None:
            sql = self._insert_session = self.compile(self.session_insert())
        return sql

    def session_insert(self) -> Any:
        """:meth:`insert_session`'s statement, not compiled (to build on: ``RETURNING``, a
        CTE)."""
        return self._insert(st).values(self._binds(st)).on_conflict_do_nothing()

    def compiled(self, stmt: sa.ClauseElement) -> str:
        """``compile(stmt)``, once per statement object (module-level statements of other
        resources, run on the same connections as the message statements)."""
        sql = self._compiled.get(stmt)
        if sql is None:
            sql = self._compiled[stmt] = self.compile(stmt)
        return sql

    def shaped(self, key: Hashable, build: Callable[[], sa.ClauseElement]) -> Shaped:
        """The statement ``build()`` makes for ``key`` (a statement's shape: which filters,
        which order), compiled once; its parameters are bound by name (``sa.bindparam``),
        so one compile serves every call of that shape."""
        found = self._shaped.get(key)
        if found is None:
            dialect = self.sa_dialect
            compiled = build().compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            processors = tuple(
                (name, process)
                for name, bind in compiled.binds.items()
                if (process := bind.type.dialect_impl(dialect).bind_processor(dialect))
            )
            # The values the statement holds itself (an OFFSET 0 SQLite adds to a LIMIT).
            fixed = {k: v for k, v in compiled.params.items() if v is not None}
            found = self._shaped[key] = Shaped(str(compiled), processors, fixed)
        return found

    def adhoc(
        self, stmt: sa.ClauseElement, result: int = ROWS, values: Mapping[str, Any] | None = None
    ) -> Stmt:
        """``stmt`` with the values it holds (and ``values`` of its named parameters): for a
        report, whose statements take too many shapes to name (its lists are written out
        at the call, each value goes through its type's bind processor). Rows come as the
        driver gives them (:func:`named`).

        Compiled once per structure, as SQLAlchemy's own execution does (its cache key,
        the values apart; at most ``_ADHOC_MAX`` kept): compiling a report's statements
        again at every call cost more than running them.
        """
        key = stmt._generate_cache_key()
        if key is None:  # (a statement SQLAlchemy does not cache either)
            compiled, processors = self._adhoc_compile(stmt, None)
            params = compiled.construct_params(values)
        else:
            found = self._adhoc.get(key.key)
            if found is None:
                if len(self._adhoc) >= _ADHOC_MAX:
                    self._adhoc.clear()
                found = self._adhoc[key.key] = self._adhoc_compile(stmt, key)
            compiled, processors = found
            params = compiled.construct_params(values, extracted_parameters=key.bindparams)
        expanded = compiled.construct_expanded_state(params)
        sent = dict(expanded.parameters)
        for name, value in sent.items():
            # (a list's values are named after it: ``status_1`` gives ``status_1_1``, ...)
            process = processors.get(name) or processors.get(name.rpartition("_")[0])
            if process is not None:
                sent[name] = process(value)
        return Stmt(expanded.statement, sent, result)

    def _adhoc_compile(
        self, stmt: sa.ClauseElement, key: Any
    ) -> tuple[SQLCompiler, dict[str, Callable[[Any], Any]]]:
        """``stmt`` compiled (with its cache ``key``, which lets the statements of the same
        structure give it their values), and the bind processors of its parameters that
        have one."""
        dialect = self.sa_dialect
        compiled = dialect.statement_compiler(dialect, stmt, cache_key=key)
        assert isinstance(compiled, SQLCompiler)
        processors: dict[str, Callable[[Any], Any]] = {
            name: process
            for name, bind in compiled.binds.items()
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        return compiled, processors

    def built_once(self, stmt: sa.ClauseElement) -> Shaped:
        """:meth:`shaped` for a statement built once (its own key): unlike :meth:`compiled`,
        it keeps the values the statement holds (a ``sa.literal``)."""
        return self.shaped(stmt, lambda: stmt)

    def select_stored(self) -> sa.Select[Any]:
        """The columns of :class:`StoredRow`."""
        return sa.select(t.c.id, t.c.seq, t.c.role, t.c.content, t.c.created_at, self.rest())

    def rest(self) -> sa.ColumnElement[Any]:
        """NULL when the usually-empty columns are, else their JSON array (:class:`Extras`)."""
        raise NotImplementedError

    def append(
        self,
        tenant_id: str,
        session_id: str,
        rows: Sequence[NewRow],
        ids: Sequence[str],
        clock: Callable[[], int],
        idle: WhileIdle | None = None,
        create: Mapping[str, Any] | None = None,
    ) -> Steps[Appended]:
        """Append ``rows`` (with ``ids``) after the session's last message.

        Rows whose idempotency key is stored already are not written; their
        stored rows are returned. ``clock()`` gives ``created_at``, read once
        the session is about to be taken. ``idle``: only while the session has
        no active run (see :class:`WhileIdle`). ``create``: the parameters of
        :meth:`insert_session` for a session to create when there is none
        (then the rows are appended to it); not with ``idle``.
        """
        keys = [r.idempotency_key for r in rows if r.idempotency_key is not None]
        found: list[StoredRow] = []
        if keys:
            found = yield from self.find_keys(tenant_id, session_id, keys)
            rows, ids = unstored(rows, ids, found)
        now = clock()
        if not rows:  # every key was stored: the session exists
            if idle is not None:
                yield from self.require_idle(tenant_id, session_id, idle)
            return Appended(found, 0, now)
        last = yield from self.insert(tenant_id, session_id, rows, ids, now, idle)
        if last is None and create is not None:
            # No such session: create it (unless a concurrent writer just did) and append.
            yield Stmt(self.insert_session(), create, COUNT)
            last = yield from self.insert(tenant_id, session_id, rows, ids, now)
        return Appended(found, last, now)

    def find_keys(
        self, tenant_id: str, session_id: str, keys: Sequence[str]
    ) -> Steps[list[StoredRow]]:
        raise NotImplementedError

    def insert(
        self,
        tenant_id: str,
        session_id: str,
        rows: Sequence[NewRow],
        ids: Sequence[str],
        now: int,
        idle: WhileIdle | None = None,
    ) -> Steps[int | None]:
        """Write ``rows`` after the session's last message; its new ``last_seq`` (None: no
        session). ``idle``: only while it has no active run (see :class:`WhileIdle`)."""
        raise NotImplementedError

    def recent(
        self, tenant_id: str, session_id: str, n: int, chat: bool = False
    ) -> Steps[list[Any] | None]:
        """The last ``n`` rows of a session, oldest first; None if there is no session.

        :class:`StoredRow` fields, or with ``chat`` only (role, content).
        """
        raise NotImplementedError

    def page(
        self,
        tenant_id: str,
        session_id: str,
        limit: int,
        *,
        forward: bool,
        after: str | None,
        before: str | None,
        run_id: str | None,
        kind: str | None = None,
    ) -> Steps[tuple[list[StoredRow], bool, bool] | str]:
        """One page of a session's messages in ``seq`` order (``forward``: ascending), as
        ``Resource._page_op`` pages a listing: the rows (one more than ``limit`` when there are more),
        whether they were read in reverse (``before`` without ``after``: the rows closest
        to it, to be put back in order) and whether the session exists (asked only of an
        empty first page), and is of ``kind`` when given (read with the rows, in the same
        statement: a route that lists a thread's messages needs no read before). A cursor
        is a message id of the tenant; one it does not have is returned as the name of its
        field instead.
        """
        params: dict[str, Any] = {"t": tenant_id, "s": session_id, "n": limit + 1}
        for field, ident in (("a", after), ("b", before)):
            if ident is not None:
                found = yield Stmt(self.message_seq, {"t": tenant_id, "c": ident})
                if not found:
                    return "after" if field == "a" else "before"
                params[f"{field}seq"], params[f"{field}id"] = found[0][0], ident
        if run_id is not None:
            params["r"] = run_id
        reverse = before is not None and after is None
        ascending = forward != reverse
        key = (ascending, forward, after is not None, before is not None, run_id is not None)
        sql = self._pages.get((*key, kind is not None))
        if sql is None:
            page = self._page(*key)
            if kind is not None:  # the session's kind beside each row (read once: uncorrelated)
                of_session = (st.c.tenant_id == b("t"), st.c.id == b("s"))
                page = page.add_columns(sa.select(st.c.kind).where(*of_session).scalar_subquery())
            sql = self._pages[(*key, kind is not None)] = self.compile(page)
        found = yield Stmt(sql, params)
        if kind is None:
            rows = [StoredRow._make(r) for r in found]
            exists = True
            if not rows and after is None and before is None:
                exists = yield from self.exists(tenant_id, session_id)
            return rows, reverse, exists
        width = len(StoredRow._fields)  # then the session's kind
        rows = [StoredRow._make(r[:width]) for r in found]
        if rows:
            return rows, reverse, found[0][width] == kind
        return rows, reverse, (yield from self.kind(tenant_id, session_id)) == kind

    def _page(
        self, ascending: bool, forward: bool, after: bool, before: bool, run: bool
    ) -> sa.Select[Any]:
        conds: list[sa.ColumnElement[bool]] = [t.c.tenant_id == b("t"), t.c.session_id == b("s")]
        if run:
            conds.append(t.c.run_id == b("r"))
        # Past a cursor in the listing's order, (seq, id) as ``Resource._page_op`` compares them: the
        # seq bound alone lets the (tenant, session, seq) index find the start.
        for field, used, greater in (("a", after, forward), ("b", before, not forward)):
            if not used:
                continue
            cs: sa.BindParameter[int] = b(f"{field}seq", type_=sa.BigInteger)
            ci: sa.BindParameter[str] = b(f"{field}id")
            if greater:
                conds += [t.c.seq >= cs, sa.or_(t.c.seq > cs, t.c.id > ci)]
            else:
                conds += [t.c.seq <= cs, sa.or_(t.c.seq < cs, t.c.id < ci)]
        order = t.c.seq.asc() if ascending else t.c.seq.desc()
        return self.select_stored().where(*conds).order_by(order).limit(b("n")).offset(const(0))

    def active_run(self, tenant_id: str, session_id: str, kind: str | None) -> Steps[str | None]:
        """The id of one of the session's active runs (None: none is); NotFound if there is
        no session, or it is not of ``kind`` when given. Inside a transaction that took the
        session's row first, it sees every run committed before that (see
        ``Runs.active_in_session``)."""
        found = yield Stmt(self.session_active_run, {"t": tenant_id, "s": session_id})
        if not found or (kind is not None and found[0][0] != kind):
            raise NotFound(kind or "session", session_id)
        run_id = found[0][1]
        return None if run_id is None else str(run_id)

    def row_of_session(
        self,
        table: sa.Table,
        what: str,
        tenant_id: str,
        session_id: str,
        ident: str,
        kind: str | None,
    ) -> Steps[dict[str, Any]]:
        """Row ``ident`` of ``table`` (a table with a ``session_id``: runs, messages) in the
        session, its columns by name (JSON ones loaded), read beside the session's kind in
        one statement, compiled once per table; NotFound for a missing session (or not of
        ``kind``), then for the ``what`` if the session has no such row."""
        sql = self._of_session.get(table)
        if sql is None:
            on = sa.and_(
                table.c.tenant_id == st.c.tenant_id,
                table.c.id == b("r"),
                table.c.session_id == st.c.id,
            )
            of_session = (st.c.tenant_id == b("t"), st.c.id == b("s"))
            sql = self._of_session[table] = self.compile(
                sa.select(st.c.kind, *table.c)
                .select_from(st.outerjoin(table, on))
                .where(*of_session)
            )
        found = yield Stmt(sql, {"t": tenant_id, "s": session_id, "r": ident})
        if not found or (kind is not None and found[0][0] != kind):
            raise NotFound(kind or "session", session_id)
        row = self.named_row(table, found[0][1:])  # the row's columns follow the kind
        if row["id"] is None:
            raise NotFound(what, ident)
        return row

    def listing(
        self,
        table: sa.Table,
        tenant_id: str,
        where: dict[str, Any],
        sort: str,
        *,
        forward: bool,
        after: str | None,
        before: str | None,
        limit: int,
    ) -> Steps[list[dict[str, Any]]]:
        """One page of ``table``'s rows whose columns equal ``where``, as ``Resource._page_op`` pages a
        listing: in ``sort`` order (``forward``: ascending; ties by id), past the id cursors
        ``after`` and ``before`` (without ``after``, the rows closest to it, read in reverse:
        :func:`~agentkeep.store._base.page_of` puts them back), ``limit + 1`` rows, by
        column name (JSON ones loaded). A cursor sorted by another column than the id is
        looked up first: one this tenant does not have is ``InvalidInput`` naming its field.
        Statements compiled once per shape."""
        params: dict[str, Any] = {"t": tenant_id, "n": limit + 1}
        params.update((f"f{i}", value) for i, value in enumerate(where.values()))
        for field, ident in (("after", after), ("before", before)):
            if ident is None:
                continue
            params[field] = ident
            if sort != "id":
                found = yield Stmt(self._sort_of(table, sort), {"t": tenant_id, "c": ident})
                if not found:
                    raise InvalidInput(f"no object with id {ident!r} in this listing", field=field)
                params[field + "_key"] = found[0][0]
        shape = (table, tuple(where), sort, forward, after is not None, before is not None)
        sql = self._listings.get(shape)
        if sql is None:
            sql = self._listings[shape] = self.compile(_listing(*shape))
        rows = yield Stmt(sql, params)
        return [self.named_row(table, r) for r in rows]

    def _sort_of(self, table: sa.Table, sort: str) -> str:
        """The ``sort`` column of row ``:c`` of ``table`` (in tenant ``:t``): a cursor's key."""
        return self.compiled(_sort_key(table, sort))

    def require_idle(self, tenant_id: str, session_id: str, idle: WhileIdle) -> Steps[None]:
        """Raise ``SessionBusy`` if the session has an active run (``NotFound`` as
        :meth:`active_run`): the check of an append after it took the session. Without
        ``idle.runs``, ``NotFound`` only, unless the session is of ``idle.kind``."""
        if not idle.runs:
            if (yield from self.kind(tenant_id, session_id)) != idle.kind:
                raise NotFound(idle.kind or "session", session_id)
            return
        run_id = yield from self.active_run(tenant_id, session_id, idle.kind)
        if run_id is not None:
            raise SessionBusy(session_id, run_id)

    def kind(self, tenant_id: str, session_id: str) -> Steps[str | None]:
        """The session's kind; None if there is no session."""
        found = yield Stmt(self.session_kind, {"t": tenant_id, "s": session_id})
        return str(found[0][0]) if found else None

    def exists(self, tenant_id: str, session_id: str) -> Steps[bool]:
        """Whether the session exists (in this tenant)."""
        found = yield Stmt(self.session_exists, {"t": tenant_id, "s": session_id})
        return bool(found)
