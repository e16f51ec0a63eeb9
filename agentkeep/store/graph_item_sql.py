"""The statements of the long-term memory items (``store.graph_items``), per dialect.

Built once with SQLAlchemy Core, every value a named parameter, and compiled
once per dialect (``MessageSQL.shaped``), so the operations of
:mod:`agentkeep.store.graph_items` run on the store's own driver connections:
the async API's without a worker thread. A write of many items (a LangGraph
batch) is one statement on PostgreSQL, whose own connections are in autocommit
(its puts and deletes from arrays, the deletes a data-modifying CTE), and a
statement per row in one transaction on SQLite.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agentkeep.store.schema import graph_store_items as t

__all__ = [
    "ORDER",
    "SEPARATOR",
    "delete_one",
    "expired",
    "item",
    "namespaces",
    "prefix_params",
    "refresh_many",
    "refresh_one",
    "search",
    "upsert_many",
    "upsert_one",
]

SEPARATOR = "."
#: A search's order: most recently updated first, then by namespace and key.
ORDER = (t.c.updated_at.desc(), t.c.namespace, t.c.key)

b = sa.bindparam
_TEXTS = ARRAY(sa.Text)


def _mine() -> sa.ColumnElement[bool]:
    return t.c.tenant_id == b("tenant_id", type_=sa.String)


def _live() -> sa.ColumnElement[bool]:
    """Not expired at ``:at`` (microseconds)."""
    return sa.or_(t.c.expires_at.is_(None), t.c.expires_at > b("at", type_=sa.BigInteger))


def _under() -> sa.ColumnElement[bool]:
    """The namespaces equal to ``:prefix`` or below it: a key range ("/" follows "."),
    its bounds :func:`prefix_params`."""
    return sa.or_(
        t.c.namespace == b("prefix"),
        sa.and_(t.c.namespace >= b("prefix_lo"), t.c.namespace < b("prefix_hi")),
    )


def prefix_params(labels: tuple[str, ...]) -> dict[str, str]:
    """The parameters of a statement under the namespace prefix ``labels`` (non-empty)."""
    p = SEPARATOR.join(labels)
    return {"prefix": p, "prefix_lo": p + SEPARATOR, "prefix_hi": p + "/"}


def item() -> sa.Select[Any]:
    """A live item by ``:namespace`` and ``:key``."""
    return sa.select(t).where(
        _mine(), t.c.namespace == b("namespace"), t.c.key == b("key"), _live()
    )


def search(prefixed: bool) -> sa.Select[Any]:
    """A page (``:limit``, ``:offset``) of the live items (under ``:prefix``), in ``ORDER``."""
    stmt = sa.select(t).where(_mine(), _live(), *([_under()] if prefixed else []))
    return stmt.order_by(*ORDER).limit(b("limit")).offset(b("offset"))


def namespaces(prefixed: bool) -> sa.Select[Any]:
    """The distinct namespaces holding a live item (under ``:prefix``)."""
    where = [_mine(), _live(), *([_under()] if prefixed else [])]
    return sa.select(t.c.namespace).distinct().where(*where)


def expired(all_tenants: bool, *, delete: bool) -> sa.Select[Any] | sa.Delete:
    """The items expired at ``:at`` (this tenant's, or every tenant's): one of them to
    look for, or all of them deleted."""
    where = [t.c.expires_at.is_not(None), t.c.expires_at <= b("at", type_=sa.BigInteger)]
    if not all_tenants:
        where.append(_mine())
    if delete:
        return sa.delete(t).where(*where)
    return sa.select(t.c.key).where(*where).limit(1)


def _created(excluded: Any) -> sa.ColumnElement[Any]:
    """An item put over one that had expired (not yet purged) is created anew."""
    at = b("at", type_=sa.BigInteger)
    had_expired = sa.and_(t.c.expires_at.is_not(None), t.c.expires_at <= at)
    return sa.case((had_expired, excluded.created_at), else_=t.c.created_at)


def _upserted(stmt: Any) -> Any:
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=list(t.primary_key),
        set_={
            "value": new.value,
            "updated_at": new.updated_at,
            "ttl_minutes": new.ttl_minutes,
            "expires_at": new.expires_at,
            "created_at": _created(new),
        },
    )


# --- SQLite: a statement per row, in the write's transaction ---------------------------


@functools.cache
def upsert_one() -> Any:
    """SQLite: put one item (``:value_json`` its JSON text) written at ``:at``."""
    at = b("at", type_=sa.BigInteger)
    values = {
        "tenant_id": b("tenant_id", type_=sa.String),
        "namespace": b("namespace"),
        "key": b("key"),
        "value": b("value_json", type_=sa.Text),
        "created_at": at,
        "updated_at": at,
        "ttl_minutes": b("ttl"),
        "expires_at": b("expires"),
    }
    return _upserted(sqlite_insert(t).values(values))


@functools.cache
def delete_one() -> sa.Delete:
    """SQLite: delete one item, if there is one."""
    return sa.delete(t).where(_mine(), t.c.namespace == b("namespace"), t.c.key == b("key"))


@functools.cache
def refresh_one() -> sa.Update:
    """SQLite: one live item expires at ``:expires`` instead."""
    where = (_mine(), t.c.namespace == b("namespace"), t.c.key == b("key"), _live())
    return sa.update(t).where(*where).values(expires_at=b("expires"))


# --- PostgreSQL: one statement from arrays ---------------------------------------------


def _unnest(*names: tuple[str, Any]) -> Any:
    return (
        sa.func.unnest(*(b(f"{n}s", type_=ARRAY(typ)) for n, typ in names))
        .table_valued(*(n for n, _ in names))
        .render_derived(name="u")
    )


@functools.cache
def upsert_many() -> Any:
    """PostgreSQL: put the items of the arrays ``:namespaces``, ``:keys``, ``:values``
    (JSON texts), ``:ttls`` and ``:expiress``, written at ``:at``, and delete those of
    ``:gone_namespaces`` and ``:gone_keys`` (a data-modifying CTE: no key is in both);
    one statement."""
    u = _unnest(
        ("namespace", sa.Text),
        ("key", sa.Text),
        ("value", sa.Text),
        ("ttl", sa.Float),
        ("expires", sa.BigInteger),
    )
    at = b("at", type_=sa.BigInteger)
    rows = sa.select(
        b("tenant_id", type_=sa.String),
        u.c.namespace,
        u.c.key,
        sa.cast(u.c.value, JSONB),
        at,
        at,
        u.c.ttl,
        u.c.expires,
    ).select_from(u)
    columns = [
        "tenant_id",
        "namespace",
        "key",
        "value",
        "created_at",
        "updated_at",
        "ttl_minutes",
        "expires_at",
    ]
    gone = (
        sa.func.unnest(b("gone_namespaces", type_=_TEXTS), b("gone_keys", type_=_TEXTS))
        .table_valued("namespace", "key")
        .render_derived(name="g")
    )
    deletes = sa.delete(t).where(_mine(), t.c.namespace == gone.c.namespace, t.c.key == gone.c.key)
    return _upserted(pg_insert(t).from_select(columns, rows)).add_cte(deletes.cte("gone"))


@functools.cache
def refresh_many() -> sa.Update:
    """PostgreSQL: the live items of ``:namespaces`` and ``:keys`` expire at ``:expiress``
    (arrays) instead."""
    u = _unnest(("namespace", sa.Text), ("key", sa.Text), ("expires", sa.BigInteger))
    where = (_mine(), t.c.namespace == u.c.namespace, t.c.key == u.c.key, _live())
    return sa.update(t).where(*where).values(expires_at=u.c.expires)
