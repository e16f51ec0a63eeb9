"""State documents: ``(namespace, key) -> JSON value`` with a version.

For what an agent keeps beside its messages: todo lists, history windows,
compression records, caches, agent info. ``put`` with ``expected_version``
is a compare-and-set (``0``: the document must not exist yet).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.models import StateDoc
from agentkeep.models.common import check_limit, from_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store._validate import require_str
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


class StateDocs(Resource):
    """``store.state``: this tenant's keyed JSON documents."""

    kind = "state_doc"

    def _ids(self, namespace: str, key: str) -> tuple[str, str]:
        return require_str(namespace, "namespace", max_len=256), require_str(
            key, "key", max_len=512
        )

    def _where(self, namespace: str, key: str) -> list[sa.ColumnElement[bool]]:
        return [t.c.tenant_id == self.tenant_id, t.c.namespace == namespace, t.c.key == key]

    def get(self, namespace: str, key: str) -> StateDoc:
        """The document at ``(namespace, key)``; ``NotFound`` if there is none."""
        namespace, key = self._ids(namespace, key)
        with self._core.read() as conn:
            row = conn.execute(sa.select(t).where(*self._where(namespace, key))).mappings().first()
        if row is None:
            raise NotFound("state document", f"{namespace}/{key}")
        return to_doc(row)

    def put(
        self, namespace: str, key: str, value: Any, *, expected_version: int | None = None
    ) -> StateDoc:
        """Create or replace a document; its version goes up by one on every put.

        With ``expected_version``, only if the stored version is that one
        (``0``: only if there is none yet); else ``Conflict``.
        """
        namespace, key = self._ids(namespace, key)
        expected = _check_version(expected_version)
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"must be JSON-serializable ({exc})", field="value") from exc
        try:
            return self._put(namespace, key, value, expected)
        except Conflict:
            if expected is not None:
                raise
            # A concurrent put created the document first: replace it.
            return self._put(namespace, key, value, expected)

    def _put(self, namespace: str, key: str, value: Any, expected: int | None) -> StateDoc:
        where = self._where(namespace, key)
        with self._core.write("writing a state document") as conn:
            stmt = sa.select(t).where(*where)
            if self._core.dialect.skip_locked:
                stmt = stmt.with_for_update()
            row = conn.execute(stmt).mappings().first()
            current = 0 if row is None else row["version"]
            if expected is not None and current != expected:
                state = "does not exist" if row is None else f"is at version {current}"
                raise Conflict(
                    f"state document {namespace}/{key} {state}, not version {expected}; reload and retry",
                    current_version=current,
                    requested_version=expected,
                )
            now = utcnow_micros()
            if row is None:
                values: dict[str, Any] = {
                    "tenant_id": self.tenant_id,
                    "namespace": namespace,
                    "key": key,
                    "value": value,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                conn.execute(sa.insert(t).values(values))
                return to_doc(values)
            changes = {"value": value, "version": current + 1, "updated_at": now}
            conn.execute(sa.update(t).where(*where).values(changes))
            return to_doc({**row, **changes})

    def delete(self, namespace: str, key: str, *, expected_version: int | None = None) -> None:
        """Delete a document (only at ``expected_version`` if given); ``NotFound`` if there is none."""
        namespace, key = self._ids(namespace, key)
        expected = _check_version(expected_version)
        where = self._where(namespace, key)
        with self._core.write("deleting a state document") as conn:
            if expected is not None:
                where.append(t.c.version == expected)
            result = conn.execute(sa.delete(t).where(*where))
            if result.rowcount == 0:
                exists = conn.execute(
                    sa.select(t.c.version).where(*self._where(namespace, key))
                ).scalar()
                if exists is None:
                    raise NotFound("state document", f"{namespace}/{key}")
                raise Conflict(
                    f"state document {namespace}/{key} is at version {exists}, not {expected}; reload and retry",
                    current_version=exists,
                    requested_version=expected,
                )

    def list(
        self,
        namespace: str,
        *,
        prefix: str | None = None,
        limit: int = 100,
        after_key: str | None = None,
    ) -> list[StateDoc]:
        """Documents of a namespace in key order; pass the last key as ``after_key`` to read on."""
        namespace = require_str(namespace, "namespace", max_len=256)
        check_limit(limit)
        where = [t.c.tenant_id == self.tenant_id, t.c.namespace == namespace]
        if prefix is not None:
            if not isinstance(prefix, str):
                raise InvalidInput("must be a string", field="prefix")
            if prefix:
                # substr, not LIKE: case-sensitive and wildcard-free on every backend
                where.append(sa.func.substr(t.c.key, 1, len(prefix)) == prefix)
        if after_key is not None:
            if not isinstance(after_key, str):
                raise InvalidInput("must be a string", field="after_key")
            where.append(t.c.key > after_key)
        with self._core.read() as conn:
            rows = conn.execute(
                sa.select(t).where(*where).order_by(t.c.key).limit(limit)
            ).mappings()
            return [to_doc(r) for r in rows]

    def with_key(self, key: str, *, limit: int = 100) -> builtins.list[StateDoc]:
        """The documents stored under ``key`` in any namespace, in namespace order.

        For documents kept per session (``state.put("todos", session.id, ...)``).
        """
        key = require_str(key, "key", max_len=512)
        check_limit(limit)
        stmt = (
            sa.select(t)
            .where(t.c.tenant_id == self.tenant_id, t.c.key == key)
            .order_by(t.c.namespace)
            .limit(limit)
        )
        with self._core.read() as conn:
            return [to_doc(r) for r in conn.execute(stmt).mappings()]
