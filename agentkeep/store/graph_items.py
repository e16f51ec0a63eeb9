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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.models.common import from_micros, to_micros, utcnow_micros
from agentkeep.store import graph_item_sql as gsql
from agentkeep.store._base import Resource
from agentkeep.store._steps import COUNT, MANY, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store.graph_item_sql import SEPARATOR
from agentkeep.store.message_sql import Shaped, dump_json
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

_MAX_NAMESPACE_BYTES = 1024  # the primary key stays well inside PostgreSQL's index row limit
_MAX_KEY_BYTES = 512
_PAGE = 500  # items read at a time while filtering
_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


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


def namespace_has_label(column: sa.ColumnElement[Any], label: str) -> sa.ColumnElement[bool]:
    """Whether one whole label of the encoded namespace in ``column`` is ``label`` (case-sensitive)."""
    if not label or SEPARATOR in label or "\x00" in label:
        return sa.false()
    wrapped = sa.literal(SEPARATOR, sa.Text()) + column + SEPARATOR
    needle = f"{SEPARATOR}{label}{SEPARATOR}"
    return sa.func.replace(wrapped, needle, "") != wrapped


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
    """``store.graph_items``: this tenant's long-term memory items (LangGraph's store).

    Every method is an operation (``_steps``) on the store's own connections: the
    async API awaits them without a worker thread.
    """

    kind = "graph_store_item"

    # --- writes -----------------------------------------------------------------------

    @op
    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        *,
        ttl_minutes: float | None = None,
        now: datetime | None = None,
    ) -> Op[None]:
        """Create or replace the item (its ``created_at`` stays); it expires after ``ttl_minutes``."""
        yield from self._write([ItemWrite(namespace, key, value, ttl_minutes)], now)

    @op
    def delete(self, namespace: tuple[str, ...], key: str) -> Op[None]:
        """Delete the item if there is one."""
        yield from self._write([ItemWrite(namespace, key, None)], None)

    @op
    def write(self, writes: Sequence[ItemWrite], *, now: datetime | None = None) -> Op[None]:
        """Apply puts and deletes in one transaction, the last one of each item winning.

        Every write is checked first: a bad one raises ``InvalidInput`` naming
        its field, and nothing is written.
        """
        yield from self._write(writes, now)

    def _write(self, writes: Sequence[ItemWrite], now: datetime | None) -> Op[None]:
        last: dict[tuple[str, str], tuple[dict[str, Any] | None, float | None]] = {}
        for w in writes:
            ns, key, value, ttl = check_write(w)
            last[(ns, key)] = (value, ttl)
        if not last:
            return
        at, tenant = _micros(now), self.tenant_id
        puts = [(ns, key, v, ttl) for (ns, key), (v, ttl) in last.items() if v is not None]
        gone = [(ns, key) for (ns, key), (v, _) in last.items() if v is None]
        expires = [None if ttl is None else at + round(ttl * 60_000_000) for *_, ttl in puts]
        if self._pg:
            upsert = self._sql(("upsert_many",), gsql.upsert_many).stmt(
                {
                    "tenant_id": tenant,
                    "at": at,
                    "namespaces": [p[0] for p in puts],
                    "keys": [p[1] for p in puts],
                    "values": [dump_json(p[2]) for p in puts],
                    "ttls": [p[3] for p in puts],
                    "expiress": expires,
                    "gone_namespaces": [g[0] for g in gone],
                    "gone_keys": [g[1] for g in gone],
                },
                COUNT,
            )

            def steps() -> Steps[None]:
                yield upsert

        else:
            delete = self._sql(("delete_one",), gsql.delete_one).sql
            upsert_sql = self._sql(("upsert_one",), gsql.upsert_one).sql
            deletes = [{"tenant_id": tenant, "namespace": ns, "key": k} for ns, k in gone]
            rows = [
                {
                    "tenant_id": tenant,
                    "namespace": ns,
                    "key": key,
                    "value_json": dump_json(value),
                    "at": at,
                    "ttl": ttl,
                    "expires": expiry,
                }
                for (ns, key, value, ttl), expiry in zip(puts, expires, strict=True)
            ]

            def steps() -> Steps[None]:
                if deletes:
                    yield Stmt(delete, deletes, MANY)
                if rows:
                    yield Stmt(upsert_sql, rows, MANY)

        yield Write("writing graph store items", steps)

    @op
    def purge_expired(self, *, all_tenants: bool = False, now: datetime | None = None) -> Op[int]:
        """Delete the expired items (this tenant's, or every tenant's); how many."""
        params = {"at": _micros(now), "tenant_id": self.tenant_id}
        look = self._sql(("expired", all_tenants), lambda: gsql.expired(all_tenants, delete=False))
        found = yield Read("looking for expired graph store items", single(look.stmt(params)))
        if not found:
            return 0  # a periodic sweep never takes the write lock for nothing
        purge = self._sql(("purge", all_tenants), lambda: gsql.expired(all_tenants, delete=True))
        gone: int = yield Write(
            "purging expired graph store items", single(purge.stmt(params, COUNT))
        )
        return gone

    # --- reads ------------------------------------------------------------------------

    @op
    def get(
        self,
        namespace: tuple[str, ...],
        key: str,
        *,
        refresh_ttl: bool = False,
        now: datetime | None = None,
    ) -> Op[StoredItem | None]:
        """The item, or None (also when it has expired); ``refresh_ttl`` restarts its TTL."""
        ns = SEPARATOR.join(check_labels(namespace, "namespace"))
        at = _micros(now)
        read = self._sql(("item",), gsql.item).stmt(
            {"tenant_id": self.tenant_id, "namespace": ns, "key": _check_key(key), "at": at}
        )
        rows = yield Read("reading a graph store item", single(read))
        found = yield from self._refreshed(self._named(rows), refresh_ttl, at)
        return next(iter(found), None)

    @op
    def search(
        self,
        namespace_prefix: tuple[str, ...] = (),
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool = False,
        now: datetime | None = None,
    ) -> Op[list[StoredItem]]:
        """Items under ``namespace_prefix`` whose value meets ``filter``, most recently
        updated first (then by namespace and key); ``refresh_ttl`` restarts their TTLs."""
        prefix = check_labels(namespace_prefix, "namespace_prefix")
        flt = check_filter(filter)
        limit, offset = _check_count(limit, "limit"), _check_count(offset, "offset")
        at = _micros(now)
        if limit == 0:
            return []
        page = self._sql(("search", bool(prefix)), lambda: gsql.search(bool(prefix)))
        params = {"tenant_id": self.tenant_id, "at": at}
        if prefix:
            params.update(gsql.prefix_params(prefix))

        def steps() -> Steps[list[dict[str, Any]]]:
            if not flt:
                rows: list[Any] = yield page.stmt({**params, "limit": limit, "offset": offset})
                return self._named(rows)
            return (yield from self._filtered(page, params, flt, limit, offset))

        rows = yield Read("searching graph store items", steps)
        found: list[StoredItem] = yield from self._refreshed(rows, refresh_ttl, at)
        return found

    def _filtered(
        self, page: Shaped, params: dict[str, Any], flt: dict[str, Any], limit: int, offset: int
    ) -> Steps[list[dict[str, Any]]]:
        """The rows meeting ``flt``, past the first ``offset`` of them (by column name): read
        a page at a time."""
        found: list[dict[str, Any]] = []
        skip, read = offset, 0
        while True:
            rows: list[Any] = yield page.stmt({**params, "limit": _PAGE, "offset": read})
            read += len(rows)
            for row in self._named(rows):
                if not matches(row["value"], flt):
                    continue
                if skip:
                    skip -= 1
                    continue
                found.append(row)
                if len(found) == limit:
                    return found
            if len(rows) < _PAGE:
                return found

    def _named(self, rows: list[Any]) -> list[dict[str, Any]]:
        """Rows of every column as the driver returns them, by column name (values loaded)."""
        named_row = self._core.message_sql.named_row
        return [named_row(t, r) for r in rows]

    def _refreshed(
        self, named: list[dict[str, Any]], refresh: bool, at: int
    ) -> Op[list[StoredItem]]:
        """The rows (by column name) as items; with ``refresh``, those with a TTL expire a
        TTL from ``at``."""
        renewed = {
            (r["namespace"], r["key"]): at + round(r["ttl_minutes"] * 60_000_000)
            for r in named
            if refresh and r["ttl_minutes"] is not None
        }
        if renewed:
            tenant = self.tenant_id
            if self._pg:
                stmt = self._sql(("refresh_many",), gsql.refresh_many).stmt(
                    {
                        "tenant_id": tenant,
                        "at": at,
                        "namespaces": [ns for ns, _ in renewed],
                        "keys": [k for _, k in renewed],
                        "expiress": list(renewed.values()),
                    },
                    COUNT,
                )
            else:
                params = [
                    {"tenant_id": tenant, "at": at, "namespace": ns, "key": k, "expires": e}
                    for (ns, k), e in renewed.items()
                ]
                stmt = Stmt(self._sql(("refresh_one",), gsql.refresh_one).sql, params, MANY)
            yield Write("refreshing graph store item TTLs", single(stmt))
        return [_item(r, renewed.get((r["namespace"], r["key"]), r["expires_at"])) for r in named]

    @op
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
    ) -> Op[list[tuple[str, ...]]]:
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
        params: dict[str, Any] = {"tenant_id": self.tenant_id, "at": _micros(now)}
        if literal:
            params.update(gsql.prefix_params(literal))
        listed = self._sql(("namespaces", bool(literal)), lambda: gsql.namespaces(bool(literal)))
        rows = yield Read("listing graph store namespaces", single(listed.stmt(params)))
        found = {_decode(row[0]) for row in rows}
        kept = [ns for ns in found if all(_ns_matches(ns, k, p) for k, p in wanted)]
        if max_depth is not None:
            kept = list({ns[:max_depth] for ns in kept})
        return sorted(kept)[offset : offset + limit]

    # --- statements -------------------------------------------------------------------

    @property
    def _pg(self) -> bool:
        return bool(self._core.dialect.name == "postgresql")

    def _sql(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Shaped:
        """A statement of :mod:`graph_item_sql`, compiled once for the store's dialect."""
        return self._core.message_sql.shaped(("graph_items", *key), build)


def _micros(now: datetime | None) -> int:
    if now is None:
        return utcnow_micros()
    return to_micros(now)  # type: ignore[return-value]
