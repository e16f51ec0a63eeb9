"""The statements of the checkpoint hot paths (``put``, ``put_writes``, ``get``), per dialect.

A LangGraph turn stores three checkpoints and two sets of writes and reads
one checkpoint: run through SQLAlchemy each was a pooled connection, a
transaction and several statements. Here they are operations (``_steps``) on
the store's own driver connections, as the message statements are:

- **PostgreSQL** (autocommit connections): each call is one statement, so one
  round trip and one commit. ``put`` checks that every delta's base value is
  stored and writes the values and the checkpoint only if so, in data-modifying
  CTEs; ``put_writes`` inserts from arrays; ``get`` reads the checkpoint with
  its writes aggregated into arrays (a channel's value chain is a second
  statement, only for values the caller does not hold).
- **SQLite**: the same units of work as a few statements in the store's write
  transaction (in-process: no round trips to save, only SQLAlchemy's cost).

Inside ``store.transaction()`` they run on its connection, as every operation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from agentkeep.store._steps import COUNT, MANY, Steps, Stmt

__all__ = ["WRITE_COLUMNS", "CheckpointSQL"]

_KEY = "tenant_id = :tenant_id AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns"
_CHECKPOINT_COLUMNS = (
    "checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata_type, metadata, "
    "channel_versions"
)
_SET_CHECKPOINT = ", ".join(
    f"{c} = excluded.{c}"
    for c in (
        "parent_checkpoint_id",
        "run_id",
        "type",
        "checkpoint",
        "metadata_type",
        "metadata",
        "channel_versions",
        "created_at",
    )
)
_CHECKPOINT_PK = "(tenant_id, thread_id, checkpoint_ns, checkpoint_id)"
_WRITES_PK = "(tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)"
_SET_WRITE = "channel = excluded.channel, type = excluded.type, blob = excluded.blob, " + (
    "task_path = excluded.task_path"
)
#: A pending write's columns as ``get`` returns them (arrays on PostgreSQL).
WRITE_COLUMNS = ("task_id", "idx", "channel", "type", "blob", "task_path")
_WRITES_ORDER = "task_path, task_id, idx"

_CHAIN = """
WITH RECURSIVE chain(channel, tip, version, base_version, seq, type, blob, depth) AS (
  SELECT channel, version, version, base_version, seq, type, blob, 0
  FROM graph_checkpoint_blobs
  WHERE {key} AND channel {channels} AND version {versions}
  UNION ALL
  SELECT chain.channel, chain.tip, b.version, b.base_version, b.seq, b.type, b.blob, chain.depth + 1
  FROM chain JOIN graph_checkpoint_blobs AS b
    ON b.tenant_id = :tenant_id AND b.thread_id = :thread_id AND b.checkpoint_ns = :checkpoint_ns
   AND b.channel = chain.channel AND b.version = chain.base_version
  WHERE chain.depth < 1000000
)
SELECT channel, tip, version, base_version, seq, type, blob, depth FROM chain
"""
# No ORDER BY: the kept PostgreSQL connections run with enable_sort off (for the
# message reads), which made the planner's choice for a sorted chain ~1,000x slower;
# ``get`` orders the rows (a few per value).


# PostgreSQL: each value row looked up by its whole key, a LATERAL lookup per wanted value
# and per link (LIMIT 1, the key being unique, keeps the planner from flattening it into a
# join). Written as the SQLite one, or without the LIMIT, the planner of a table not yet
# analyzed scanned all of the thread's rows per step: a read's cost grew with the thread
# (10-15 ms at 2,400 rows, against 0.1 ms).
_PG_CHAIN = """
WITH RECURSIVE chain(channel, tip, version, base_version, seq, type, blob, depth) AS (
  SELECT a.channel, a.version, a.version, a.base_version, a.seq, a.type, a.blob, 0
  FROM unnest(CAST(:channels AS text[]), CAST(:versions AS text[])) AS w(channel, version)
  JOIN LATERAL (
    SELECT * FROM graph_checkpoint_blobs AS x
    WHERE x.tenant_id = :tenant_id AND x.thread_id = :thread_id
      AND x.checkpoint_ns = :checkpoint_ns AND x.channel = w.channel AND x.version = w.version
    LIMIT 1
  ) AS a ON true
  UNION ALL
  SELECT chain.channel, chain.tip, b.version, b.base_version, b.seq, b.type, b.blob, chain.depth + 1
  FROM chain JOIN LATERAL (
    SELECT * FROM graph_checkpoint_blobs AS x
    WHERE x.tenant_id = :tenant_id AND x.thread_id = :thread_id
      AND x.checkpoint_ns = :checkpoint_ns AND x.channel = chain.channel
      AND x.version = chain.base_version
    LIMIT 1
  ) AS b ON true
  WHERE chain.depth < 1000000
)
SELECT channel, tip, version, base_version, seq, type, blob, depth FROM chain
"""


def _pg(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (no ``::`` casts in these statements)."""
    return re.sub(r":([a-z_]+)", r"%(\1)s", sql.replace("%", "%%"))


class CheckpointSQL:
    """The checkpoint statements of one dialect, and the units of work over them."""

    def __init__(self, dialect_name: str) -> None:
        self.pg = dialect_name == "postgresql"
        if self.pg:
            self._init_pg()
        else:
            self._init_sqlite()

    # --- SQLite: several statements in the write transaction -------------------------

    def _init_sqlite(self) -> None:
        self.base = (
            f"SELECT 1 FROM graph_checkpoint_blobs WHERE {_KEY} AND channel = :c AND version = :v"
        )
        self._blob_inserts: dict[tuple[int, int], str] = {}
        self.upsert = (
            "INSERT INTO graph_checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id, "
            "parent_checkpoint_id, run_id, type, checkpoint, metadata_type, metadata, "
            "channel_versions, created_at) VALUES (:tenant_id, :thread_id, :checkpoint_ns, "
            ":checkpoint_id, :parent_checkpoint_id, :run_id, :type, :checkpoint, :metadata_type, "
            ":metadata, :channel_versions, :created_at) "
            f"ON CONFLICT {_CHECKPOINT_PK} DO UPDATE SET {_SET_CHECKPOINT}"
        )
        insert = (
            "INSERT INTO graph_checkpoint_writes (tenant_id, thread_id, checkpoint_ns, "
            "checkpoint_id, task_id, idx, channel, type, blob, task_path) VALUES (:tenant_id, "
            ":thread_id, :checkpoint_ns, :checkpoint_id, :task_id, :idx, :channel, :type, :blob, "
            f":task_path) ON CONFLICT {_WRITES_PK} DO "
        )
        self.writes_keep = insert + "NOTHING"
        self.writes_replace = insert + "UPDATE SET " + _SET_WRITE
        select = f"SELECT {_CHECKPOINT_COLUMNS} FROM graph_checkpoints WHERE {_KEY}"
        self.latest = select + " ORDER BY checkpoint_id DESC LIMIT 1"
        self.one = select + " AND checkpoint_id = :checkpoint_id"
        self.writes = (
            f"SELECT {', '.join(WRITE_COLUMNS)} FROM graph_checkpoint_writes "
            f"WHERE {_KEY} AND checkpoint_id = :checkpoint_id ORDER BY {_WRITES_ORDER}"
        )
        listed = "IN (SELECT value FROM json_each(:{}))"
        self.chain = _CHAIN.format(
            key=_KEY, channels=listed.format("channels"), versions=listed.format("versions")
        )
        self.writes_of = (
            f"SELECT checkpoint_id, {', '.join(WRITE_COLUMNS)} FROM graph_checkpoint_writes "
            f"WHERE {_KEY} AND checkpoint_id {listed.format('ids')} "
            f"ORDER BY checkpoint_id, {_WRITES_ORDER}"
        )

    # --- PostgreSQL: one statement per call --------------------------------------------

    def _init_pg(self) -> None:
        self.put_one = _pg(
            f"""
WITH ok AS (
  SELECT count(found.*) = :n_bases AS ok
  FROM unnest(CAST(:base_channels AS text[]), CAST(:base_versions AS text[]))
    AS w(channel, version)
  JOIN LATERAL (
    SELECT 1 FROM graph_checkpoint_blobs AS x
    WHERE x.{_KEY.replace(" AND ", " AND x.")} AND x.channel = w.channel AND x.version = w.version
    LIMIT 1
  ) AS found ON true
), b AS (
  INSERT INTO graph_checkpoint_blobs (tenant_id, thread_id, checkpoint_ns, channel, version,
    type, blob, base_version, seq)
  SELECT :tenant_id, :thread_id, :checkpoint_ns, u.channel, u.version, u.type, u.blob,
    u.base_version, u.seq
  FROM ok, unnest(CAST(:channels AS text[]), CAST(:versions AS text[]), CAST(:types AS text[]),
    CAST(:blobs AS bytea[]), CAST(:bases AS text[]), CAST(:seqs AS int[]))
    AS u(channel, version, type, blob, base_version, seq)
  WHERE ok.ok
  ON CONFLICT DO NOTHING
  RETURNING 1
), c AS (
  INSERT INTO graph_checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id,
    parent_checkpoint_id, run_id, type, checkpoint, metadata_type, metadata, channel_versions,
    created_at)
  SELECT :tenant_id, :thread_id, :checkpoint_ns, :checkpoint_id, :parent_checkpoint_id,
    :run_id, :type, CAST(:checkpoint AS bytea), :metadata_type, CAST(:metadata AS bytea),
    CAST(:channel_versions AS jsonb), CAST(:created_at AS bigint)
  FROM ok WHERE ok.ok
  ON CONFLICT {_CHECKPOINT_PK} DO UPDATE SET {_SET_CHECKPOINT}
)
SELECT ok, (SELECT count(*) FROM b) FROM ok
"""
        ).replace("%(blobs)s", "%(blobs)b")
        insert = _pg(
            f"""
INSERT INTO graph_checkpoint_writes (tenant_id, thread_id, checkpoint_ns, checkpoint_id,
  task_id, idx, channel, type, blob, task_path)
SELECT :tenant_id, :thread_id, :checkpoint_ns, :checkpoint_id, u.*
FROM unnest(CAST(:task_ids AS text[]), CAST(:idxs AS int[]), CAST(:channels AS text[]),
  CAST(:types AS text[]), CAST(:blobs AS bytea[]), CAST(:task_paths AS text[]))
  AS u(task_id, idx, channel, type, blob, task_path)
ON CONFLICT {_WRITES_PK} DO """
        ).replace("%(blobs)s", "%(blobs)b")
        self.writes_keep = insert + "NOTHING"
        self.writes_replace = insert + "UPDATE SET " + _SET_WRITE
        aggregated = ", ".join(f"array_agg(w.{c} ORDER BY {_WRITES_ORDER})" for c in WRITE_COLUMNS)
        select = _pg(
            f"""
SELECT {_CHECKPOINT_COLUMNS}, w.* FROM graph_checkpoints AS c
LEFT JOIN LATERAL (
  SELECT {aggregated} FROM graph_checkpoint_writes AS w
  WHERE w.tenant_id = c.tenant_id AND w.thread_id = c.thread_id
    AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id
) AS w ON true
WHERE c.{_KEY.replace(" AND ", " AND c.")}"""
        )
        self.latest = select + " ORDER BY c.checkpoint_id DESC LIMIT 1"
        self.one = select + " AND c.checkpoint_id = %(checkpoint_id)s"
        self.chain = _pg(_PG_CHAIN)
        self.writes_of = _pg(
            f"SELECT checkpoint_id, {', '.join(WRITE_COLUMNS)} FROM graph_checkpoint_writes "
            f"WHERE {_KEY} AND checkpoint_id = ANY(CAST(:ids AS text[])) "
            f"ORDER BY checkpoint_id, {_WRITES_ORDER}"
        )

    # --- units of work -----------------------------------------------------------------

    def put(
        self,
        key: dict[str, str],
        row: dict[str, Any],
        blobs: Sequence[dict[str, Any]],
        bases: set[tuple[str, str]],
    ) -> Steps[int | None]:
        """Store the checkpoint and its values: how many values were new (not stored
        already); None (nothing written) if a base is missing."""
        if self.pg:
            params = {**key, **row}
            params["n_bases"] = len(bases)
            params["base_channels"] = [c for c, _ in bases]
            params["base_versions"] = [v for _, v in bases]
            for name, column in _BLOB_ARRAYS:
                params[name] = [b[column] for b in blobs]
            found = yield Stmt(self.put_one, params)
            return int(found[0][1]) if found[0][0] else None
        new = 0
        if blobs:
            values: dict[str, Any] = dict(key)
            for i, b in enumerate(blobs):
                for name, column in _BLOB_PARAMS:
                    values[f"{name}{i}"] = b[column]
            for j, (channel, version) in enumerate(sorted(bases)):
                values[f"xc{j}"], values[f"xv{j}"] = channel, version
            new = yield Stmt(self.insert_blobs(len(blobs), len(bases)), values, COUNT)
            if new < len(blobs):  # stored already, or a base is missing (then none was)
                for channel, version in bases:
                    if not (yield Stmt(self.base, {**key, "c": channel, "v": version})):
                        return None
        yield Stmt(self.upsert, {**key, **row}, COUNT)
        return new

    def insert_blobs(self, n: int, n_bases: int) -> str:
        """SQLite: one INSERT of ``n`` values, none of them unless the ``n_bases`` bases are
        all stored; compiled once per shape."""
        sql = self._blob_inserts.get((n, n_bases))
        if sql is None:
            rows = ", ".join(
                "(" + ", ".join(f":{name}{i}" for name, _ in _BLOB_PARAMS) + ")" for i in range(n)
            )
            # Each base looked up by the whole primary key (a row-value IN over the pairs
            # would scan every value of the thread: a put's cost would grow with it).
            guard = " AND ".join(
                f"EXISTS (SELECT 1 FROM graph_checkpoint_blobs WHERE {_KEY} "
                f"AND channel = :xc{j} AND version = :xv{j})"
                for j in range(n_bases)
            )
            sql = self._blob_inserts[n, n_bases] = (
                "INSERT INTO graph_checkpoint_blobs (tenant_id, thread_id, checkpoint_ns, "
                "channel, version, type, blob, base_version, seq) SELECT :tenant_id, "
                ":thread_id, :checkpoint_ns, column1, column2, column3, column4, column5, "
                f"column6 FROM (VALUES {rows}) WHERE {guard or 'true'} ON CONFLICT DO NOTHING"
            )
        return sql

    def put_writes(
        self, key: dict[str, str], checkpoint_id: str, writes: Sequence[Any], replace: bool
    ) -> Steps[None]:
        """Store a task's writes (``PendingWrite``) after a checkpoint, in one statement on PostgreSQL."""
        sql = self.writes_replace if replace else self.writes_keep
        # One row per (task, idx): the last given wins a replace, the first is kept otherwise
        # (what one upsert per row, in order, did).
        unique: dict[tuple[str, int], Any] = {}
        for w in writes:
            if replace or (w.task_id, w.idx) not in unique:
                unique[(w.task_id, w.idx)] = w
        rows = list(unique.values())
        if self.pg:
            yield Stmt(
                sql,
                {
                    **key,
                    "checkpoint_id": checkpoint_id,
                    "task_ids": [w.task_id for w in rows],
                    "idxs": [w.idx for w in rows],
                    "channels": [w.channel for w in rows],
                    "types": [w.value.type for w in rows],
                    "blobs": [w.value.data for w in rows],
                    "task_paths": [w.task_path for w in rows],
                },
                COUNT,
            )
            return
        params = [
            {
                **key,
                "checkpoint_id": checkpoint_id,
                "task_id": w.task_id,
                "idx": w.idx,
                "channel": w.channel,
                "type": w.value.type,
                "blob": w.value.data,
                "task_path": w.task_path,
            }
            for w in rows
        ]
        yield Stmt(sql, params, MANY)

    def get(
        self,
        key: dict[str, str],
        checkpoint_id: str | None,
        wanted: Callable[[dict[str, str]], list[tuple[str, str]]],
        load_json: Callable[[Any], Any],
    ) -> Steps[tuple[Any, dict[str, Any], list[Any], list[Any]] | None]:
        """The checkpoint's row (``_CHECKPOINT_COLUMNS`` but the versions), its channel
        versions, its writes (rows of ``WRITE_COLUMNS``) and the chain rows of the values
        ``wanted(channel_versions)`` names (each value's rows from its full value on, the
        depth last); None if there is no such checkpoint."""
        if checkpoint_id is None:
            found = yield Stmt(self.latest, key)
        else:
            found = yield Stmt(self.one, {**key, "checkpoint_id": checkpoint_id})
        if not found:
            return None
        row = found[0]
        versions = load_json(row[6])
        if self.pg:
            arrays = row[7:]
            writes = list(zip(*arrays, strict=True)) if arrays[0] is not None else []
        else:
            ident = row[0]
            writes = yield Stmt(self.writes, {**key, "checkpoint_id": ident})
        chain = yield from self.chain_rows(key, wanted(versions))
        return row[:6], versions, writes, chain

    def chain_rows(self, key: dict[str, str], want: Sequence[tuple[str, str]]) -> Steps[list[Any]]:
        """The chain rows of the wanted (channel, version) values of one thread and namespace:
        each value's rows from its full value on (channel, tip, version, base_version, seq,
        type, blob, depth)."""
        if not want:
            return []
        if self.pg:  # the wanted (channel, version) pairs
            params = {**key, "channels": [c for c, _ in want], "versions": [v for _, v in want]}
        else:  # the channels and the versions: other pairs are left out below
            channels, values = sorted({c for c, _ in want}), sorted({v for _, v in want})
            params = {**key, "channels": _json(channels), "versions": _json(values)}
        pairs = set(want)
        chain = [r for r in (yield Stmt(self.chain, params)) if (r[0], r[1]) in pairs]
        chain.sort(key=lambda r: (r[0], r[1], -r[7]))  # per value: from its full value on
        return chain

    def writes_of_checkpoints(self, key: dict[str, str], ids: Sequence[str]) -> Steps[list[Any]]:
        """The writes of the checkpoints ``ids`` of one thread and namespace: rows of
        ``checkpoint_id`` then ``WRITE_COLUMNS``, in each checkpoint's order."""
        found: list[Any] = yield Stmt(
            self.writes_of, {**key, "ids": list(ids) if self.pg else _json(list(ids))}
        )
        return found


def _json(values: list[str]) -> str:
    return json.dumps(values)


# put()'s array parameters on PostgreSQL, from the blob rows' columns.
_BLOB_ARRAYS = (
    ("channels", "channel"),
    ("versions", "version"),
    ("types", "type"),
    ("blobs", "blob"),
    ("bases", "base_version"),
    ("seqs", "seq"),
)
_BLOB_PARAMS: tuple[tuple[str, str], ...] = (
    ("c", "channel"),
    ("v", "version"),
    ("t", "type"),
    ("b", "blob"),
    ("bv", "base_version"),
    ("s", "seq"),
)
"""SQLite's multi-row blob INSERT: the parameter prefix of each column, in VALUES order."""
