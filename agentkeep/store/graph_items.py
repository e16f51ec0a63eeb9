"""Long-term memory items (LangGraph's ``BaseStore`` model): JSON objects by namespace and key.

A namespace is a tuple of labels (``("memories", "alice")``); it is stored as
the labels joined by ``.``, which no label may contain (LangGraph forbids it
too), so the items under a prefix are a range of the primary key on both
backends. An item may expire: ``ttl_minutes`` after it was written or, when a
read asks for it (``refresh_ttl``), after it was last read. An expired item is
invisible at once and deleted by :meth:`GraphItems.purge_expired`.

``search`` filters on value fields the way LangGraph's ``InMemoryStore`` does
(equality, nested objects, lists, and ``$eq``/``$ne``/``$gt``/``$gte``/``$lt``/
``$lte``), evaluated here, in Python, over the prefix's items read a page at a
time; a comparison between values of different JSON types (or with a missing
field) does not match, where ``InMemoryStore`` would raise or compare ``True``
equal to ``1``. ``agentkeep.integrations.langgraph.AgentkeepStore`` is the
LangGraph store over this resource.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agentkeep.errors import InvalidInput
from agentkeep.models.common import from_micros, to_micros, utcnow_micros
from agentkeep.store._base import Resource, keys_in
from agentkeep.store.schema import graph_store_items as t

__all__ = [
    "GraphItems",
    "ItemWrite",
    "StoredItem",
    "check_filter",
    "check_labels",
    "check_write",
    "namespace_has_label",
]

SEPARATOR = "."
_MAX_NAMESPACE_BYTES = 1024  # the primary key stays well inside PostgreSQL's index row limit
_MAX_KEY_BYTES = 512
_PAGE = 500  # items read at a time while filtering
_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_ORDER = (t.c.updated_at.desc(), t.c.namespace, t.c.key)


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One item; ``expires_at`` is None for an item that does not expire."""

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class ItemWrite(NamedTuple):
    """A put (``value``: the item's new value) or, with ``value=None``, a delete."""

    namespace: tuple[str, ...]
    key: str
    value: Mapping[str, Any] | None
    ttl_minutes: float | None = None


# --- input checks ---------------------------------------------------------------------


def check_labels(labels: Any, field: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    """A namespace (or a prefix of one) as a tuple of labels, each checked."""
    if isinstance(labels, str) or not isinstance(labels, (tuple, list)):
        raise InvalidInput("must be a tuple of string labels", field=field)
    if not labels and not allow_empty:
        raise InvalidInput("must have at least one label", field=field)
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise InvalidInput("must be a non-empty string", field=f"{field}[{i}]")
        if SEPARATOR in label or "\x00" in label:
            raise InvalidInput(
                f"must not contain {SEPARATOR!r} (it separates labels) or NUL",
                field=f"{field}[{i}]",
            )
    encoded = SEPARATOR.join(labels)
    if len(encoded.encode("utf-8")) > _MAX_NAMESPACE_BYTES:
        raise InvalidInput(
            f"must be at most {_MAX_NAMESPACE_BYTES} bytes with its separators", field=field
        )
    return tuple(labels)


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInput("must be a non-empty string", field="key")
    if "\x00" in key or len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise InvalidInput(f"must be at most {_MAX_KEY_BYTES} bytes, without NUL", field="key")
    return key


def _check_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"must be a dict (a JSON object), not {type(value).__name__}", field="value"
        )
    if not all(isinstance(k, str) for k in value):
        raise InvalidInput("must have string keys", field="value")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"must be JSON-serializable ({exc})", field="value") from exc
    if "\\u0000" in text:
        raise InvalidInput("must not hold a NUL character", field="value")
    return dict(value)


def _check_ttl(ttl: Any) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise InvalidInput("must be a number of minutes or None", field="ttl")
    if ttl <= 0:
        raise InvalidInput("must be a positive number of minutes", field="ttl")
    return float(ttl)


def _check_count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("must be a non-negative integer", field=field)
    return value


def check_write(w: ItemWrite) -> tuple[str, str, dict[str, Any] | None, float | None]:
    """A put or delete checked: (encoded namespace, key, value or None, ttl minutes)."""
    ns = check_labels(w.namespace, "namespace", allow_empty=False)
    key = _check_key(w.key)
    value = None if w.value is None else _check_value(w.value)
    return SEPARATOR.join(ns), key, value, _check_ttl(w.ttl_minutes)


def check_filter(flt: Any, field: str = "filter") -> dict[str, Any] | None:
    """A search filter, its operators checked (so a bad one fails before anything runs)."""
    if flt is None:
        return None
    if not isinstance(flt, Mapping) or not all(isinstance(k, str) for k in flt):
        raise InvalidInput("must be a dict of value fields to match", field=field)
    for name, wanted in flt.items():
        if isinstance(wanted, Mapping) and any(str(k).startswith("$") for k in wanted):
            unknown = sorted(str(k) for k in wanted if k not in _OPERATORS)
            if unknown:
                raise InvalidInput(
                    f"unknown operator {unknown[0]!r} (known: {', '.join(sorted(_OPERATORS))})",
                    field=f"{field}.{name}",
                )
        elif isinstance(wanted, Mapping):
            check_filter(wanted, f"{field}.{name}")
    return dict(flt)


# --- filters, as LangGraph's InMemoryStore evaluates them -----------------------------


def matches(value: Mapping[str, Any], flt: Mapping[str, Any] | None) -> bool:
    """Whether an item's value meets every condition of ``flt``."""
    return not flt or all(_compare(value.get(k), wanted) for k, wanted in flt.items())


def _compare(have: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        if any(k.startswith("$") for k in wanted):
            return all(_apply(have, op, operand) for op, operand in wanted.items())
        return isinstance(have, Mapping) and all(
            _compare(have.get(k), w) for k, w in wanted.items()
        )
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(have, (list, tuple))
            and len(have) == len(wanted)
            and all(_compare(h, w) for h, w in zip(have, wanted, strict=True))
        )
    return _equal(have, wanted)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``; ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _apply(have: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return _equal(have, operand)
    if op == "$ne":
        return not _equal(have, operand)
    if not (_number(have) and _number(operand)) and not (
        isinstance(have, str) and isinstance(operand, str)
    ):
        return False  # numbers compare with numbers, strings with strings
    if op == "$gt":
        return bool(have > operand)
    if op == "$gte":
        return bool(have >= operand)
    if op == "$lt":
        return bool(have < operand)
    if op == "$lte":
        return bool(have <= operand)
    raise InvalidInput(f"unknown operator {op!r}", field="filter")


# --- SQL ------------------------------------------------------------------------------


def _under(prefix: tuple[str, ...]) -> list[sa.ColumnElement[bool]]:
    """The namespaces equal to ``prefix`` or below it: a key range ("/" follows ".")."""
    if not prefix:
        return []
    p = SEPARATOR.join(prefix)
    return [
        sa.or_(
            t.c.namespace == p,
            sa.and_(t.c.namespace >= p + SEPARATOR, t.c.namespace < p + "/"),
        )
    ]


def namespace_has_label(column: sa.ColumnElement[Any], label: str) -> sa.ColumnElement[bool]:
    """Whether one whole label of the encoded namespace in ``column`` is ``label`` (case-sensitive)."""
    if not label or SEPARATOR in label or "\x00" in label:
        return sa.false()
    wrapped = sa.literal(SEPARATOR, sa.Text()) + column + SEPARATOR
    needle = f"{SEPARATOR}{label}{SEPARATOR}"
    return sa.func.replace(wrapped, needle, "") != wrapped


def _live(now: int) -> sa.ColumnElement[bool]:
    return sa.or_(t.c.expires_at.is_(None), t.c.expires_at > now)


def _decode(namespace: str) -> tuple[str, ...]:
    return tuple(namespace.split(SEPARATOR))


def _item(row: Any, expires_at: int | None) -> StoredItem:
    return StoredItem(
        namespace=_decode(row["namespace"]),
        key=row["key"],
        value=dict(row["value"]),
        created_at=from_micros(row["created_at"]),  # type: ignore[arg-type]
        updated_at=from_micros(row["updated_at"]),  # type: ignore[arg-type]
        expires_at=from_micros(expires_at),
    )


def _ns_matches(labels: tuple[str, ...], kind: str, path: Sequence[str]) -> bool:
    """A namespace against a ``prefix`` or ``suffix`` pattern ("*" matches any one label)."""
    if len(labels) < len(path):
        return False
    ours = labels[: len(path)] if kind == "prefix" else labels[len(labels) - len(path) :]
    return all(p == "*" or p == label for label, p in zip(ours, path, strict=True))


def _check_conditions(conditions: Iterable[Any]) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for i, condition in enumerate(conditions):
        kind, path = condition
        if kind not in ("prefix", "suffix"):
            raise InvalidInput("must be 'prefix' or 'suffix'", field=f"match_conditions[{i}]")
        out.append((str(kind), check_labels(path, f"{kind}")))
    return out


class GraphItems(Resource):
    """``store.graph_items``: this tenant's long-term memory items (LangGraph's store)."""

    kind = "graph_store_item"

    # --- writes -----------------------------------------------------------------------

    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        *,
        ttl_minutes: float | None = None,
        now: datetime | None = None,
    ) -> None:
        """Create or replace the item (its ``created_at`` stays); it expires after ``ttl_minutes``."""
        self.write([ItemWrite(namespace, key, value, ttl_minutes)], now=now)

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        """Delete the item if there is one."""
        self.write([ItemWrite(namespace, key, None)])

    def write(self, writes: Sequence[ItemWrite], *, now: datetime | None = None) -> None:
        """Apply puts and deletes in one transaction, the last one of each item winning.

        Every write is checked first: a bad one raises ``InvalidInput`` naming
        its field, and nothing is written.
        """
        last: dict[tuple[str, str], tuple[dict[str, Any] | None, float | None]] = {}
        for w in writes:
            ns, key, value, ttl = check_write(w)
            last[(ns, key)] = (value, ttl)
        if not last:
            return
        at = _micros(now)
        rows = [
            self._row(ns, key, value, ttl, at)
            for (ns, key), (value, ttl) in last.items()
            if value is not None
        ]
        gone = [(ns, key) for (ns, key), (value, _) in last.items() if value is None]
        with self._core.write("writing graph store items") as conn:
            for start in range(0, len(gone), 500):
                conn.execute(
                    sa.delete(t).where(
                        t.c.tenant_id == self.tenant_id,
                        keys_in((t.c.namespace, t.c.key), gone[start : start + 500]),
                    )
                )
            if rows:
                conn.execute(self._upsert(at), rows)

    def _row(
        self, ns: str, key: str, value: dict[str, Any], ttl: float | None, at: int
    ) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "namespace": ns,
            "key": key,
            "value": value,
            "created_at": at,
            "updated_at": at,
            "ttl_minutes": ttl,
            "expires_at": None if ttl is None else at + round(ttl * 60_000_000),
        }

    def _upsert(self, at: int) -> Any:
        """Insert or replace; an item that had expired (not yet purged) is created anew."""
        stmt = self._core.dialect.insert(t)
        new = stmt.excluded
        expired = sa.and_(t.c.expires_at.is_not(None), t.c.expires_at <= at)
        return stmt.on_conflict_do_update(
            index_elements=list(t.primary_key),
            set_={
                "value": new.value,
                "updated_at": new.updated_at,
                "ttl_minutes": new.ttl_minutes,
                "expires_at": new.expires_at,
                "created_at": sa.case((expired, new.created_at), else_=t.c.created_at),
            },
        )

    def purge_expired(self, *, all_tenants: bool = False, now: datetime | None = None) -> int:
        """Delete the expired items (this tenant's, or every tenant's); how many."""
        where = [t.c.expires_at.is_not(None), t.c.expires_at <= _micros(now)]
        if not all_tenants:
            where.append(t.c.tenant_id == self.tenant_id)
        with self._core.read("looking for expired graph store items") as conn:
            if conn.execute(sa.select(t.c.key).where(*where).limit(1)).first() is None:
                return 0  # a periodic sweep never takes the write lock for nothing
        with self._core.write("purging expired graph store items") as conn:
            return int(conn.execute(sa.delete(t).where(*where)).rowcount)

    # --- reads ------------------------------------------------------------------------

    def get(
        self,
        namespace: tuple[str, ...],
        key: str,
        *,
        refresh_ttl: bool = False,
        now: datetime | None = None,
    ) -> StoredItem | None:
        """The item, or None (also when it has expired); ``refresh_ttl`` restarts its TTL."""
        ns = SEPARATOR.join(check_labels(namespace, "namespace"))
        key = _check_key(key)
        at = _micros(now)
        stmt = sa.select(t).where(
            t.c.tenant_id == self.tenant_id, t.c.namespace == ns, t.c.key == key, _live(at)
        )
        with self._core.read("reading a graph store item") as conn:
            rows = list(conn.execute(stmt).mappings())
        return next(iter(self._refreshed(rows, refresh_ttl, at)), None)

    def search(
        self,
        namespace_prefix: tuple[str, ...] = (),
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool = False,
        now: datetime | None = None,
    ) -> list[StoredItem]:
        """Items under ``namespace_prefix`` whose value meets ``filter``, most recently
        updated first (then by namespace and key); ``refresh_ttl`` restarts their TTLs."""
        prefix = check_labels(namespace_prefix, "namespace_prefix")
        flt = check_filter(filter)
        limit, offset = _check_count(limit, "limit"), _check_count(offset, "offset")
        at = _micros(now)
        if limit == 0:
            return []
        stmt = sa.select(t).where(t.c.tenant_id == self.tenant_id, _live(at), *_under(prefix))
        stmt = stmt.order_by(*_ORDER)
        with self._core.read("searching graph store items") as conn:
            if not flt:
                rows = list(conn.execute(stmt.limit(limit).offset(offset)).mappings())
            else:
                rows = self._filtered(conn, stmt, flt, limit, offset)
        return self._refreshed(rows, refresh_ttl, at)

    @staticmethod
    def _filtered(
        conn: Connection, stmt: sa.Select[Any], flt: dict[str, Any], limit: int, offset: int
    ) -> list[Any]:
        """The rows meeting ``flt``, past the first ``offset`` of them: read a page at a time."""
        found: list[Any] = []
        skip, read = offset, 0
        while True:
            page = list(conn.execute(stmt.limit(_PAGE).offset(read)).mappings())
            read += len(page)
            for row in page:
                if not matches(row["value"], flt):
                    continue
                if skip:
                    skip -= 1
                    continue
                found.append(row)
                if len(found) == limit:
                    return found
            if len(page) < _PAGE:
                return found

    def _refreshed(self, rows: list[Any], refresh: bool, at: int) -> list[StoredItem]:
        """The rows as items; with ``refresh``, those with a TTL expire a TTL from ``at``."""
        renewed = {
            (r["namespace"], r["key"]): at + round(r["ttl_minutes"] * 60_000_000)
            for r in rows
            if refresh and r["ttl_minutes"] is not None
        }
        if renewed:
            stmt = (
                sa.update(t)
                .where(
                    t.c.tenant_id == self.tenant_id,
                    t.c.namespace == sa.bindparam("ns"),
                    t.c.key == sa.bindparam("k"),
                    _live(at),
                )
                .values(expires_at=sa.bindparam("expires"))
            )
            params = [{"ns": ns, "k": k, "expires": e} for (ns, k), e in renewed.items()]
            with self._core.write("refreshing graph store item TTLs") as conn:
                conn.execute(stmt, params)
        return [_item(r, renewed.get((r["namespace"], r["key"]), r["expires_at"])) for r in rows]

    def list_namespaces(
        self,
        *,
        prefix: Sequence[str] | None = None,
        suffix: Sequence[str] | None = None,
        conditions: Iterable[tuple[str, Sequence[str]]] = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
        now: datetime | None = None,
    ) -> list[tuple[str, ...]]:
        """The namespaces holding a live item, sorted, cut to ``max_depth`` labels (and
        then distinct), matching ``prefix`` and ``suffix`` ("*" matches any one label).

        ``conditions``: more ``("prefix" | "suffix", path)`` patterns, all to be met.
        """
        wanted = _check_conditions(
            [
                *conditions,
                *([("prefix", prefix)] if prefix else []),
                *([("suffix", suffix)] if suffix else []),
            ]
        )
        if max_depth is not None and (
            isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1
        ):
            raise InvalidInput("must be a positive integer or None", field="max_depth")
        limit, offset = _check_count(limit, "limit"), _check_count(offset, "offset")
        lead = next((p for kind, p in wanted if kind == "prefix"), ())
        literal = tuple(lead[: lead.index("*")] if "*" in lead else lead)
        stmt = (
            sa.select(t.c.namespace)
            .distinct()
            .where(t.c.tenant_id == self.tenant_id, _live(_micros(now)), *_under(literal))
        )
        with self._core.read("listing graph store namespaces") as conn:
            found = {_decode(ns) for ns in conn.execute(stmt).scalars()}
        kept = [ns for ns in found if all(_ns_matches(ns, k, p) for k, p in wanted)]
        if max_depth is not None:
            kept = list({ns[:max_depth] for ns in kept})
        return sorted(kept)[offset : offset + limit]


def _micros(now: datetime | None) -> int:
    if now is None:
        return utcnow_micros()
    return to_micros(now)  # type: ignore[return-value]
