"""Graph checkpoints: LangGraph's storage model over agentkeep's database.

A checkpoint row holds what is small (which version each channel is at, what
each node saw, metadata); each channel value is stored once per version, so a
step writes only the channels it changed. A list channel that only grew since
an earlier stored version is stored as the items appended since, pointing at
that base version: a turn writes what the turn added, not the whole
conversation again. Reading walks those links back to the last full value (one
recursive query). The caller numbers a chain's values (``seq``: 0 for the full
value) and picks each one's base so the walk stays short: the LangGraph saver
bases value ``n`` on value ``n & (n - 1)`` (a Fenwick tree), so a read touches
at most one row per set bit of ``n`` and a write carries, on average, a few
steps' items.

Values arrive serialized (``Blob``: the serializer's type tag and bytes); this
module never decodes them. ``agentkeep.integrations.langgraph`` turns these
rows into LangGraph's checkpoint tuples.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.models.common import check_limit, utcnow_micros
from agentkeep.store._base import Resource, keys_in
from agentkeep.store._listing import Filters
from agentkeep.store._steps import COUNT, Op, Read, Steps, Write, op, operation
from agentkeep.store._validate import require_str
from agentkeep.store.checkpoint_sql import CheckpointSQL
from agentkeep.store.message_sql import dump_json, named
from agentkeep.store.schema import graph_checkpoint_blobs as tb
from agentkeep.store.schema import graph_checkpoint_writes as tw
from agentkeep.store.schema import graph_checkpoints as tc

__all__ = [
    "Blob",
    "ChannelBlob",
    "Checkpoints",
    "PendingWrite",
    "StoredCheckpoint",
    "ValuePart",
]

_MAX_CHAIN = 1_000_000  # bounds the walk of a damaged (cyclic) chain


def _key(table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
    return [
        table.c.tenant_id == sa.bindparam("tenant_id"),
        table.c.thread_id == sa.bindparam("thread_id"),
        table.c.checkpoint_ns == sa.bindparam("checkpoint_ns"),
    ]


def _chain_statement() -> sa.Select[Any]:
    """The value rows behind the wanted (channel, version) tips, base first: one recursive query."""
    anchor = (
        sa.select(
            tb.c.channel,
            tb.c.version.label("tip"),
            tb.c.version,
            tb.c.base_version,
            tb.c.seq,
            tb.c.type,
            tb.c.blob,
            sa.literal(0).label("depth"),
        )
        .where(
            *_key(tb),
            tb.c.channel.in_(sa.bindparam("channels", expanding=True)),
            tb.c.version.in_(sa.bindparam("versions", expanding=True)),
        )
        .cte("chain", recursive=True)
    )
    base = tb.alias("base")
    chain = anchor.union_all(
        sa.select(
            anchor.c.channel,
            anchor.c.tip,
            base.c.version,
            base.c.base_version,
            base.c.seq,
            base.c.type,
            base.c.blob,
            anchor.c.depth + 1,
        ).where(
            *_key(base),
            base.c.channel == anchor.c.channel,
            base.c.version == anchor.c.base_version,
            anchor.c.depth < _MAX_CHAIN,
        )
    )
    return sa.select(chain).order_by(chain.c.channel, chain.c.tip, chain.c.depth.desc())


# Built once: the statements of the hot paths (SQLAlchemy then reuses their compiled form).
_CHAIN = _chain_statement()
_SQL: dict[str, CheckpointSQL] = {}


def _sql(core: Any) -> CheckpointSQL:
    """The hot paths' statements for the store's dialect (built once per dialect)."""
    name = core.dialect.name
    found = _SQL.get(name)
    if found is None:
        found = _SQL[name] = CheckpointSQL(name)
    return found


class Blob(NamedTuple):
    """A serialized value: the serializer's type tag and its bytes."""

    type: str
    data: bytes


class ChannelBlob(NamedTuple):
    """A channel's value at a version; with ``base_version``, only the items
    appended to the list stored at that version of the same channel.

    ``seq``: the value's number in its chain of deltas (0: a full value), kept
    for the caller to choose the next base; None when it does not number them.
    """

    channel: str
    version: str
    value: Blob
    base_version: str | None = None
    seq: int | None = None


class ValuePart(NamedTuple):
    """One stored row of a channel's value: the full value or the items appended at ``version``."""

    version: str
    seq: int | None
    value: Blob


class PendingWrite(NamedTuple):
    """A write a task made after a checkpoint, before the next one."""

    task_id: str
    idx: int
    channel: str
    value: Blob
    task_path: str = ""


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """One checkpoint with its channel values and pending writes.

    ``channels`` maps each channel to its parts, oldest first: a full value,
    then the items appended at each later version of its chain (at most one
    per set bit of the value's ``seq``). A channel the reader said it already
    has (``have``) is left out.
    """

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: Blob
    metadata: Blob
    channel_versions: dict[str, str]
    channels: dict[str, list[ValuePart]]
    writes: list[PendingWrite]


def _thread(value: Any, field: str = "thread_id") -> str:
    return require_str(value, field, max_len=256)


def _ns(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 256:
        raise InvalidInput("must be a string of at most 256 characters", field="checkpoint_ns")
    return value


def _of_thread(table: sa.Table, name: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        table.c.tenant_id == sa.bindparam("tenant_id"),
        table.c.thread_id == sa.bindparam(name),
    )


def _one_statement(statements: list[Any]) -> tuple[Any, ...]:
    """The statements as one: the first ones as data-modifying CTEs of the last (PostgreSQL:
    the own connections are in autocommit, where a write is one statement)."""
    *first, last = statements
    return (last.add_cte(*(s.cte(f"step{i}") for i, s in enumerate(first))),)


@functools.cache
def _thread_deletes(pg: bool) -> tuple[Any, ...]:
    """``delete_thread``'s statements: a DELETE per table (writes, values, checkpoints)."""
    deletes = [sa.delete(t).where(*_of_thread(t, "thread_id")) for t in (tw, tb, tc)]
    return _one_statement(deletes) if pg else tuple(deletes)


@functools.cache
def _thread_copies(pg: bool) -> tuple[Any, ...]:
    """``copy_thread``'s statements: per table, its rows of ``source`` inserted as ``target``'s."""
    insert = pg_insert if pg else sqlite_insert
    copies = []
    for table in (tb, tc, tw):
        cols = [c.name for c in table.columns]
        picked = [
            sa.bindparam("target", type_=sa.String()).label(c) if c == "thread_id" else table.c[c]
            for c in cols
        ]
        select = sa.select(*picked).where(*_of_thread(table, "source"))
        copies.append(
            insert(table)
            .from_select(cols, select)
            .on_conflict_do_nothing(index_elements=list(table.primary_key))
        )
    return _one_statement(copies) if pg else tuple(copies)


@functools.cache
def _run_deletes(pg: bool) -> tuple[Any, ...]:
    """``delete_for_runs``'s statements: the writes of the runs' checkpoints, then those.
    ``runs``: an array on PostgreSQL, a JSON array on SQLite."""
    if pg:
        of_runs = tc.c.run_id == sa.func.any(sa.bindparam("runs", type_=ARRAY(sa.String())))
    else:
        listed: sa.Select[Any] = sa.select(sa.column("value")).select_from(
            sa.func.json_each(sa.bindparam("runs"))
        )
        of_runs = tc.c.run_id.in_(listed.scalar_subquery())
    mine = tc.c.tenant_id == sa.bindparam("tenant_id")
    doomed = sa.select(tc.c.thread_id, tc.c.checkpoint_ns, tc.c.checkpoint_id).where(mine, of_runs)
    writes = sa.delete(tw).where(
        tw.c.tenant_id == sa.bindparam("tenant_id"),
        sa.tuple_(tw.c.thread_id, tw.c.checkpoint_ns, tw.c.checkpoint_id).in_(doomed),
    )
    deletes = [writes, sa.delete(tc).where(mine, of_runs)]
    # On PostgreSQL every part of the one statement sees the checkpoints as they were.
    return _one_statement(deletes) if pg else tuple(deletes)


_CHECKPOINT_FIELDS = (
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "parent_checkpoint_id",
    "type",
    "checkpoint",
    "metadata_type",
    "metadata",
)


def _parts(chain: Iterable[Sequence[Any]]) -> dict[tuple[str, str], list[ValuePart]]:
    """Chain rows (``CheckpointSQL.chain_rows``) as each (channel, version)'s parts, from
    its full value on; ``NotFound`` for a chain whose full value is gone."""
    values: dict[tuple[str, str], list[ValuePart]] = {}
    for channel, tip, version, base_version, seq, blob_type, blob, _ in chain:
        parts = values.setdefault((channel, tip), [])
        if not parts and base_version is not None:
            raise NotFound("checkpoint channel value", f"{channel}@{base_version}")
        parts.append(ValuePart(version, seq, Blob(blob_type, bytes(blob or b""))))
    return values


def _stored(
    row: Sequence[Any],
    versions: dict[str, Any],
    values: dict[tuple[str, str], list[ValuePart]],
    writes: Iterable[Sequence[Any]],
) -> StoredCheckpoint:
    """A checkpoint from its row (``_CHECKPOINT_FIELDS``), channel versions, values (by
    channel and version) and writes (rows of ``WRITE_COLUMNS``)."""
    thread, ns, cid, parent, type_, data, meta_type, meta = row
    str_versions = {ch: str(v) for ch, v in versions.items()}
    return StoredCheckpoint(
        thread_id=thread,
        checkpoint_ns=ns,
        checkpoint_id=cid,
        parent_checkpoint_id=parent,
        checkpoint=Blob(type_, bytes(data)),
        metadata=Blob(meta_type, bytes(meta)),
        channel_versions=str_versions,
        channels={ch: values[ch, v] for ch, v in str_versions.items() if (ch, v) in values},
        writes=[
            PendingWrite(task_id, idx, channel, Blob(t, bytes(b or b"")), path)
            for task_id, idx, channel, t, b, path in writes
        ],
    )


class Checkpoints(Resource):
    """``store.checkpoints``: this tenant's graph checkpoints, by thread and namespace."""

    kind = "checkpoint"

    # --- writes -----------------------------------------------------------------------

    @op
    def put(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        *,
        checkpoint: Blob,
        metadata: Blob,
        channel_versions: dict[str, str],
        blobs: Sequence[ChannelBlob] = (),
        parent_checkpoint_id: str | None = None,
        run_id: str | None = None,
    ) -> Op[bool]:
        """Store a checkpoint (replacing one with its id) and its new channel values.

        True when every value of ``blobs`` was stored by this call: none was
        stored at its (channel, version) already, so the stored values are these.

        A value already stored at its (channel, version) is kept. A blob whose
        ``base_version`` is not stored raises ``NotFound`` and nothing is written:
        store the full value instead (which base is named when several are missing
        is not defined).
        """
        key = self._key(thread_id, checkpoint_ns)
        require_str(checkpoint_id, "checkpoint_id", max_len=64)
        row = {
            **key,
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": parent_checkpoint_id,
            "run_id": run_id,
            "type": checkpoint.type,
            "checkpoint": checkpoint.data,
            "metadata_type": metadata.type,
            "metadata": metadata.data,
            "channel_versions": channel_versions,
            "created_at": utcnow_micros(),
        }
        blob_rows = [
            {
                "channel": b.channel,
                "version": b.version,
                "type": b.value.type,
                "blob": b.value.data,
                "base_version": b.base_version,
                "seq": b.seq,
            }
            for b in blobs
        ]
        bases = {(b.channel, b.base_version) for b in blobs if b.base_version is not None}
        row["channel_versions"] = dump_json(channel_versions)
        sql = _sql(self._core)

        def steps() -> Steps[int | None]:
            return sql.put(key, row, blob_rows, bases)

        new = yield Write("storing a checkpoint", steps)
        if new is None:
            channel, version = sorted(bases)[0]
            raise NotFound("checkpoint channel value", f"{channel}@{version}")
        return bool(new == len(blob_rows))

    def _where(self, table: sa.FromClause, thread_id: str, ns: str) -> list[sa.ColumnElement[bool]]:
        return [
            table.c.tenant_id == self.tenant_id,
            table.c.thread_id == thread_id,
            table.c.checkpoint_ns == ns,
        ]

    def _key(self, thread_id: Any, checkpoint_ns: Any) -> dict[str, str]:
        return {
            "tenant_id": self.tenant_id,
            "thread_id": _thread(thread_id),
            "checkpoint_ns": _ns(checkpoint_ns),
        }

    @op
    def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        writes: Sequence[PendingWrite],
        *,
        replace: bool = False,
    ) -> Op[None]:
        """Store a task's writes after a checkpoint; an existing (task, idx) is kept
        unless ``replace``."""
        key = self._key(thread_id, checkpoint_ns)
        require_str(checkpoint_id, "checkpoint_id", max_len=64)
        if not writes:
            return
        sql = _sql(self._core)

        def steps() -> Steps[None]:
            return sql.put_writes(key, checkpoint_id, writes, replace)

        yield Write("storing checkpoint writes", steps)

    # --- reads ------------------------------------------------------------------------

    @op
    def get(
        self,
        thread_id: str,
        checkpoint_ns: str = "",
        checkpoint_id: str | None = None,
        *,
        have: Callable[[str, str, str, str], bool] | None = None,
    ) -> Op[StoredCheckpoint | None]:
        """A checkpoint (the newest of the namespace without ``checkpoint_id``), or None.

        ``have(thread_id, checkpoint_ns, channel, version)``: true for a value
        the caller holds already; it is not read (and absent from ``channels``).
        """
        key = self._key(thread_id, checkpoint_ns)
        sql, load = _sql(self._core), self._core.message_sql.load_json
        thread, ns = key["thread_id"], key["checkpoint_ns"]

        def wanted(versions: dict[str, Any]) -> list[tuple[str, str]]:
            return [
                (ch, str(v))
                for ch, v in versions.items()
                if have is None or not have(thread, ns, ch, str(v))
            ]

        def steps() -> Steps[Any]:
            return sql.get(key, checkpoint_id, wanted, load)

        found = yield Read("reading a checkpoint", steps)
        if found is None:
            return None
        (cid, parent, type_, data, meta_type, meta), versions, writes, chain = found
        return _stored(
            (thread, ns, cid, parent, type_, data, meta_type, meta), versions, _parts(chain), writes
        )

    # --- whole threads ------------------------------------------------------------------

    @op
    def delete_thread(self, thread_id: str) -> Op[None]:
        """Delete a thread's checkpoints, values and writes, in every namespace.

        One write: a statement per table on SQLite, one statement on PostgreSQL.
        """
        params = {"tenant_id": self.tenant_id, "thread_id": _thread(thread_id)}
        statements = _thread_deletes(_sql(self._core).pg)
        yield from self._each(statements, params, "deleting a checkpoint thread")

    def _each(self, statements: Sequence[sa.ClauseElement], params: Any, what: str) -> Op[None]:
        """``statements`` (compiled once per dialect) in one write, with ``params``."""
        compiled = [self._core.message_sql.built_once(s).stmt(params, COUNT) for s in statements]

        def steps() -> Steps[None]:
            for stmt in compiled:  # noqa: UP028 (a list's iterator takes no send(): the counts)
                yield stmt

        yield Write(what, steps)

    @op
    def delete_for_runs(self, run_ids: Sequence[str]) -> Op[None]:
        """Delete the checkpoints the given runs made, and their writes.

        Channel values stay: a later checkpoint's value may be stored as items
        appended to one of them.
        """
        runs = [require_str(r, "run_ids", max_len=128) for r in run_ids]
        if not runs:
            return
        pg = _sql(self._core).pg
        params = {"tenant_id": self.tenant_id, "runs": runs if pg else dump_json(runs)}
        yield from self._each(_run_deletes(pg), params, "deleting the checkpoints of runs")

    @op
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> Op[None]:
        """Copy every checkpoint, value and write of a thread to another thread id (what
        the target has already is kept). One write, as :meth:`delete_thread`."""
        params = {
            "tenant_id": self.tenant_id,
            "source": _thread(source_thread_id, "source_thread_id"),
            "target": _thread(target_thread_id, "target_thread_id"),
        }
        statements = _thread_copies(_sql(self._core).pg)
        yield from self._each(statements, params, "copying a checkpoint thread")

    @op
    def prune(self, thread_ids: Sequence[str], *, keep_latest: bool = True) -> Op[None]:
        """Keep only the newest checkpoint of each namespace of the threads (with its
        writes and the values it reads), or with ``keep_latest=False`` delete them all.

        One write per thread (its reads and deletes in one transaction).
        """
        threads = [_thread(t, "thread_ids") for t in thread_ids]
        for thread_id in threads:
            if not keep_latest:
                yield from operation(self.delete_thread, thread_id)
                continue
            steps = functools.partial(self._prune_steps, thread_id)
            yield Write("pruning a checkpoint thread", steps, atomic=True)

    def _prune_steps(self, thread_id: str) -> Steps[None]:
        sql = self._core.message_sql
        mine = [tc.c.tenant_id == self.tenant_id, tc.c.thread_id == thread_id]
        newest = (
            sa.select(tc.c.checkpoint_ns, sa.func.max(tc.c.checkpoint_id))
            .where(*mine)
            .group_by(tc.c.checkpoint_ns)
        )
        for ns, cid in (yield sql.adhoc(newest)):
            of_newest = (*mine, tc.c.checkpoint_ns == ns, tc.c.checkpoint_id == cid)
            found = yield sql.adhoc(sa.select(tc.c.channel_versions).where(*of_newest))
            versions = {(ch, str(v)) for ch, v in sql.load_any(found[0][0]).items()}
            key = {"tenant_id": self.tenant_id, "thread_id": thread_id, "checkpoint_ns": ns}
            keep = set()
            if versions:
                wanted = {
                    **key,
                    "channels": sorted({c for c, _ in versions}),
                    "versions": sorted({v for _, v in versions}),
                }
                keep = {
                    (r["channel"], r["version"])
                    for r in named(_CHAIN, (yield sql.adhoc(_CHAIN, values=wanted)))
                    if (r["channel"], r["tip"]) in versions
                }
            older = (*mine, tc.c.checkpoint_ns == ns, tc.c.checkpoint_id != cid)
            yield sql.adhoc(sa.delete(tc).where(*older), COUNT)
            writes = (*self._where(tw, thread_id, ns), tw.c.checkpoint_id != cid)
            yield sql.adhoc(sa.delete(tw).where(*writes), COUNT)
            stored = yield sql.adhoc(
                sa.select(tb.c.channel, tb.c.version).where(*self._where(tb, thread_id, ns))
            )
            stale = [(ch, v) for ch, v in stored if (ch, v) not in keep]
            for start in range(0, len(stale), 500):
                chunk = keys_in((tb.c.channel, tb.c.version), stale[start : start + 500])
                yield sql.adhoc(sa.delete(tb).where(*self._where(tb, thread_id, ns), chunk), COUNT)

    @op
    def list(
        self,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        *,
        checkpoint_id: str | None = None,
        before: str | None = None,
        limit: int = 100,
        have: Callable[[str, str, str, str], bool] | None = None,
    ) -> Op[builtins.list[StoredCheckpoint]]:
        """Checkpoints newest first (by id), of one thread or all, one namespace or all.

        ``before``: only ids below it (pass the last id of a page to read on);
        ``have``: as for :meth:`get`. One read: the page (its statement compiled once
        per shape), then per thread and namespace in it their values' chains and writes.
        """
        check_limit(limit)
        where = Filters()
        where.equal(
            (tc.c.thread_id, None if thread_id is None else _thread(thread_id)),
            (tc.c.checkpoint_ns, None if checkpoint_ns is None else _ns(checkpoint_ns)),
            (tc.c.checkpoint_id, checkpoint_id),
        )
        if before is not None:
            where.add(tc.c.checkpoint_id.__lt__, {"before": before})
        sql, csql, tenant = self._core.message_sql, _sql(self._core), self.tenant_id

        def build() -> sa.Select[Any]:
            order = [tc.c.checkpoint_id.desc(), tc.c.thread_id, tc.c.checkpoint_ns]
            mine = tc.c.tenant_id == sa.bindparam("tenant_id")
            limited = sa.bindparam("limit", type_=sa.Integer())
            return sa.select(tc).where(mine, *where.conditions()).order_by(*order).limit(limited)

        page = sql.shaped(("checkpoints", where.shape()), build)
        page_stmt = page.stmt({**where.params, "tenant_id": tenant, "limit": limit})

        def steps() -> Steps[builtins.list[StoredCheckpoint]]:
            rows = [sql.named_row(tc, r) for r in (yield page_stmt)]
            groups: dict[tuple[str, str], builtins.list[dict[str, Any]]] = {}
            for r in rows:
                groups.setdefault((r["thread_id"], r["checkpoint_ns"]), []).append(r)
            chains: dict[tuple[str, str], dict[tuple[str, str], builtins.list[ValuePart]]] = {}
            writes: dict[tuple[str, str, str], builtins.list[Any]] = {}
            for (thread, ns), group in groups.items():
                key = {"tenant_id": tenant, "thread_id": thread, "checkpoint_ns": ns}
                want = {
                    (ch, str(v))
                    for r in group
                    for ch, v in r["channel_versions"].items()
                    if have is None or not have(thread, ns, ch, str(v))
                }
                chain = yield from csql.chain_rows(key, sorted(want))
                chains[thread, ns] = _parts(chain)
                ids = [r["checkpoint_id"] for r in group]
                for cid, *write in (yield from csql.writes_of_checkpoints(key, ids)):
                    writes.setdefault((thread, ns, cid), []).append(write)
            return [
                _stored(
                    tuple(r[c] for c in _CHECKPOINT_FIELDS),
                    r["channel_versions"],
                    chains[r["thread_id"], r["checkpoint_ns"]],
                    writes.get((r["thread_id"], r["checkpoint_ns"], r["checkpoint_id"]), []),
                )
                for r in rows
            ]

        found: builtins.list[StoredCheckpoint] = yield Read("listing checkpoints", steps)
        return found
