"""State documents: ``(namespace, key) -> JSON value`` with a version.

For what an agent keeps beside its messages: todo lists, history windows,
compression records, caches, agent info. ``put`` with ``expected_version``
is a compare-and-set (``0``: the document must not exist yet).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.models import StateDoc
from agentkeep.models.common import check_limit, from_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store._validate import require_str
from agentkeep.store.message_sql import dump_json
from agentkeep.store.schema import state_docs as t

__all__ = ["StateDocs"]


def to_doc(row: Mapping[Any, Any]) -> StateDoc:
    data = dict(row)
    data["created_at"] = from_micros(data["created_at"])
    data["updated_at"] = from_micros(data["updated_at"])
    return StateDoc.model_construct(**data)


def _check_version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("must be a non-negative integer", field="expected_version")
    return value


def _conflict(namespace: str, key: str, current: int, expected: int) -> Conflict:
    state = "does not exist" if current == 0 else f"is at version {current}"
    return Conflict(
        f"state document {namespace}/{key} {state}, not version {expected}; reload and retry",
        current_version=current,
        requested_version=expected,
    )


def _mine() -> list[sa.ColumnElement[bool]]:
    return [
        t.c.tenant_id == sa.bindparam("tenant_id"),
        t.c.namespace == sa.bindparam("namespace"),
        t.c.key == sa.bindparam("key"),
    ]


_GET = sa.select(t).where(*_mine())
_VERSION = sa.select(t.c.version).where(*_mine())


class StateDocs(Resource):
    """``store.state``: this tenant's keyed JSON documents.

    Every method is an operation (``_steps``), on the store's own connections: a put
    is one statement (an upsert, or at ``expected_version`` an insert or an update made
    only at that version), so the async API awaits them without a worker thread.
    """

    kind = "state_doc"

    def _ids(self, namespace: str, key: str) -> tuple[str, str]:
        return require_str(namespace, "namespace", max_len=256), require_str(
            key, "key", max_len=512
        )

    def _params(self, namespace: str, key: str) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "namespace": namespace, "key": key}

    @op
    def get(self, namespace: str, key: str) -> Op[StateDoc]:
        """The document at ``(namespace, key)``; ``NotFound`` if there is none."""
        namespace, key = self._ids(namespace, key)
        sql = self._core.message_sql
        read = Stmt(sql.compiled(_GET), self._params(namespace, key))
        found = yield Read("reading a state document", single(read))
        if not found:
            raise NotFound("state document", f"{namespace}/{key}")
        return to_doc(sql.named_row(t, found[0]))

    @op
    def put(
        self, namespace: str, key: str, value: Any, *, expected_version: int | None = None
    ) -> Op[StateDoc]:
        """Create or replace a document; its version goes up by one on every put.

        With ``expected_version``, only if the stored version is that one
        (``0``: only if there is none yet); else ``Conflict``. One statement.
        """
        namespace, key = self._ids(namespace, key)
        expected = _check_version(expected_version)
        try:
            text = dump_json(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"must be JSON-serializable ({exc})", field="value") from exc
        sql = self._core.message_sql
        mode = "upsert" if expected is None else "insert" if expected == 0 else "update"
        params = {**self._params(namespace, key), "value": text, "now": utcnow_micros()}
        params["expected"] = expected
        write = sql.shaped(("state_put", mode), lambda: self._put_stmt(mode)).stmt(params)
        current = Stmt(sql.compiled(_VERSION), self._params(namespace, key))

        def steps() -> Steps[list[Any]]:
            rows: list[Any] = yield write
            if not rows:
                found = yield current
                raise _conflict(namespace, key, found[0][0] if found else 0, expected or 0)
            return rows

        rows = yield Write("writing a state document", steps)
        return to_doc(sql.named_row(t, rows[0]))

    def _put_stmt(self, mode: str) -> Any:
        """``put``'s statement: ``upsert`` (any version), ``insert`` (none yet) or
        ``update`` (at ``:expected``)."""
        sql = self._core.message_sql
        now = sa.bindparam("now", type_=sa.BigInteger)
        value = sql.json_param("value")
        if mode == "update":
            stmt = sa.update(t).where(*_mine(), t.c.version == sa.bindparam("expected"))
            stmt = stmt.values(value=value, version=t.c.version + 1, updated_at=now)
            return stmt.returning(*t.c)
        insert = self._core.dialect.insert(t).values(
            tenant_id=sa.bindparam("tenant_id"),
            namespace=sa.bindparam("namespace"),
            key=sa.bindparam("key"),
            value=value,
            version=1,
            created_at=now,
            updated_at=now,
        )
        if mode == "insert":
            return insert.on_conflict_do_nothing().returning(*t.c)
        return insert.on_conflict_do_update(
            index_elements=list(t.primary_key),
            set_={
                "value": insert.excluded.value,
                "version": t.c.version + 1,
                "updated_at": insert.excluded.updated_at,
            },
        ).returning(*t.c)

    @op
    def delete(self, namespace: str, key: str, *, expected_version: int | None = None) -> Op[None]:
        """Delete a document (only at ``expected_version`` if given); ``NotFound`` if there is none."""
        namespace, key = self._ids(namespace, key)
        expected = _check_version(expected_version)
        sql = self._core.message_sql
        at_version = expected is not None

        def build() -> sa.Delete:
            where = _mine() + ([t.c.version == sa.bindparam("expected")] if at_version else [])
            return sa.delete(t).where(*where)

        params = {**self._params(namespace, key), "expected": expected}
        delete = sql.shaped(("state_delete", at_version), build).stmt(params, COUNT)
        current = Stmt(sql.compiled(_VERSION), self._params(namespace, key))

        def steps() -> Steps[None]:
            if (yield delete):
                return
            found = yield current
            if not found:
                raise NotFound("state document", f"{namespace}/{key}")
            raise _conflict(namespace, key, found[0][0], expected or 0)

        yield Write("deleting a state document", steps)

    @op
    def list(
        self,
        namespace: str,
        *,
        prefix: str | None = None,
        limit: int = 100,
        after_key: str | None = None,
    ) -> Op[list[StateDoc]]:
        """Documents of a namespace in key order; pass the last key as ``after_key`` to read on."""
        namespace = require_str(namespace, "namespace", max_len=256)
        check_limit(limit)
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidInput("must be a string", field="prefix")
        if after_key is not None and not isinstance(after_key, str):
            raise InvalidInput("must be a string", field="after_key")
        prefixed, after = bool(prefix), after_key is not None

        def build() -> sa.Select[Any]:
            where = [
                t.c.tenant_id == sa.bindparam("tenant_id"),
                t.c.namespace == sa.bindparam("namespace"),
            ]
            if prefixed:
                # substr, not LIKE: case-sensitive and wildcard-free on every backend
                start = sa.func.substr(t.c.key, 1, sa.bindparam("prefix_len", type_=sa.Integer))
                where.append(start == sa.bindparam("prefix"))
            if after:
                where.append(t.c.key > sa.bindparam("after_key"))
            return sa.select(t).where(*where).order_by(t.c.key).limit(sa.bindparam("limit"))

        params = {
            "tenant_id": self.tenant_id,
            "namespace": namespace,
            "prefix": prefix,
            "prefix_len": len(prefix or ""),
            "after_key": after_key,
            "limit": limit,
        }
        return (yield from self._docs(("state_list", prefixed, after), build, params))

    @op
    def with_key(self, key: str, *, limit: int = 100) -> Op[builtins.list[StateDoc]]:
        """The documents stored under ``key`` in any namespace, in namespace order.

        For documents kept per session (``state.put("todos", session.id, ...)``).
        """
        key = require_str(key, "key", max_len=512)
        check_limit(limit)

        def build() -> sa.Select[Any]:
            where = (t.c.tenant_id == sa.bindparam("tenant_id"), t.c.key == sa.bindparam("key"))
            return sa.select(t).where(*where).order_by(t.c.namespace).limit(sa.bindparam("limit"))

        params = {"tenant_id": self.tenant_id, "key": key, "limit": limit}
        return (yield from self._docs(("state_with_key",), build, params))

    def _docs(
        self, shape: tuple[Any, ...], build: Callable[[], sa.Select[Any]], params: dict[str, Any]
    ) -> Op[builtins.list[StateDoc]]:
        sql = self._core.message_sql
        rows = yield Read("reading state documents", single(sql.shaped(shape, build).stmt(params)))
        return [to_doc(sql.named_row(t, r)) for r in rows]
