"""Agents (OpenAI assistants): create, read, update with a version, delete, list.

Every update keeps the agent as it was in ``agent_versions`` (the current
version is the ``agents`` row), so ``get(id, version=N)`` and
``versions(id)`` show any earlier version; deleting the agent deletes them.
"""

from __future__ import annotations

import builtins
import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput, NotFound
from agentkeep.ids import new_id
from agentkeep.models import Agent, Page
from agentkeep.models.common import Order, check_limit, check_metadata, utcnow_micros
from agentkeep.store._base import Resource, Row, row_by_id, row_times
from agentkeep.store._listing import Filters
from agentkeep.store._steps import COUNT, Op, Read, Steps, Stmt, Write, op, single
from agentkeep.store._validate import UNSET, check_object, check_tools, opt_text, require_str
from agentkeep.store.message_sql import b, const
from agentkeep.store.schema import agent_versions as vt
from agentkeep.store.schema import agents as t

__all__ = ["Agents"]


# An earlier version of an agent (``get(id, version=N)``).
_VERSION = sa.select(vt).where(
    vt.c.tenant_id == sa.bindparam("tenant_id"),
    vt.c.id == sa.bindparam("id"),
    vt.c.version == sa.bindparam("version"),
)


def _versions(descending: bool, after: bool) -> sa.Select[Any]:
    """The kept versions of agent ``:a`` (``:t``), ``:n`` of them, after version ``:v``
    in the order when ``after``."""
    where = [vt.c.tenant_id == sa.bindparam("t"), vt.c.id == sa.bindparam("a")]
    if after:
        v = sa.bindparam("v", type_=sa.Integer())
        where.append(vt.c.version < v if descending else vt.c.version > v)
    order = vt.c.version.desc() if descending else vt.c.version.asc()
    return sa.select(vt).where(*where).order_by(order).limit(b("n")).offset(const(0))


def _to_agent(row: Row) -> Agent:
    return Agent.model_construct(**row_times(row, "created_at", "updated_at"))


class Agents(Resource):
    """``store.agents``: the agents (assistants) of this tenant."""

    kind = "agent"

    @op
    def create(
        self,
        *,
        model: str,
        name: str | None = None,
        description: str | None = None,
        instructions: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Op[Agent]:
        """Create an agent; ``extra`` keeps any other settings (temperature, ...). One
        statement."""
        values = {
            "tenant_id": self.tenant_id,
            "id": (require_str(id, "id", max_len=64) if id is not None else new_id("asst")),
            "model": require_str(model, "model"),
            "name": opt_text(name, "name", 256),
            "description": opt_text(description, "description", 512),
            "instructions": opt_text(instructions, "instructions", 256_000),
            "tools": check_tools(tools),
            "metadata": check_metadata(metadata),
            "extra": check_object(extra, "extra"),
            "version": 1,
        }
        now = utcnow_micros()
        values["created_at"] = values["updated_at"] = now
        sql = self._core.message_sql
        insert = Stmt(sql.insert_row(t), sql.insert_params(t, values), COUNT)
        yield Write("creating an agent", single(insert))
        return _to_agent(values)

    @op
    def get(self, agent_id: str, *, version: int | None = None, lock: bool = False) -> Op[Agent]:
        """An agent by id; with ``version``, the agent as it was at that version.

        ``lock=True`` inside ``store.transaction()`` holds the agent until the
        transaction ends, so a read-modify-write of it cannot lose a change.
        One read (two statements for an earlier version), compiled once per dialect.
        """
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise InvalidInput("must be a positive integer", field="version")
            if lock:
                raise InvalidInput("an earlier version cannot be locked", field="lock")
        sql = self._core.message_sql
        current = sql.compiled(row_by_id(t, lock and self._core.dialect.skip_locked))
        params = {"tenant_id": self.tenant_id, "id": agent_id, "version": version}

        def steps() -> Steps[dict[str, Any]]:
            found = yield Stmt(current, params)
            if not found:
                raise NotFound("agent", agent_id)
            row = sql.named_row(t, found[0])
            if version is None or version == row["version"]:
                return row
            found = yield Stmt(sql.compiled(_VERSION), params)
            if not found:
                raise NotFound("agent version", f"{agent_id}@{version}")
            return sql.named_row(vt, found[0])

        row = yield (Write("locking an agent", steps) if lock else Read("reading an agent", steps))
        return _to_agent(row)

    @op
    def versions(
        self,
        agent_id: str,
        *,
        limit: int = 20,
        after_version: int | None = None,
        order: Order = "desc",
    ) -> Op[Page[Agent]]:
        """The agent's versions, the current one included, newest first by default.

        Each item is the agent as it was at ``item.version`` (``updated_at``:
        when that version was made). Page on with
        ``after_version=page.items[-1].version``. Versions made before the
        upgrade that added this history (revision 0007) were not kept. One read
        (the agent, then its kept versions), compiled once per order.
        """
        check_limit(limit)
        if after_version is not None and (
            isinstance(after_version, bool) or not isinstance(after_version, int)
        ):
            raise InvalidInput("must be an integer", field="after_version")
        if order not in ("asc", "desc"):
            raise InvalidInput("must be 'asc' or 'desc'", field="order")
        sql = self._core.message_sql
        current = Stmt(
            sql.compiled(row_by_id(t, False)), {"tenant_id": self.tenant_id, "id": agent_id}
        )
        shape = sql.shaped(
            ("agent_versions", order, after_version is not None),
            functools.partial(_versions, order == "desc", after_version is not None),
        )
        params = {"t": self.tenant_id, "a": agent_id, "v": after_version, "n": limit + 1}

        def steps() -> Steps[tuple[dict[str, Any], builtins.list[dict[str, Any]]]]:
            found = yield current
            if not found:
                raise NotFound("agent", agent_id)
            rows = yield shape.stmt(params)
            return sql.named_row(t, found[0]), [sql.named_row(vt, r) for r in rows]

        row, kept = yield Read("reading an agent's versions", steps)
        older = [_to_agent(r) for r in kept]
        cur = _to_agent(row)
        in_range = after_version is None or (
            cur.version < after_version if order == "desc" else cur.version > after_version
        )
        now = [cur] if in_range else []
        # the current version is the newest: first in descending order, last in ascending
        items = now + older if order == "desc" else older + now
        has_more = len(items) > limit
        items = items[:limit]
        return Page(items=items, has_more=has_more, first_id=None, last_id=None)

    @op
    def update(
        self,
        agent_id: str,
        *,
        expected_version: int | None = None,
        model: str = UNSET,
        name: str | None = UNSET,
        description: str | None = UNSET,
        instructions: str | None = UNSET,
        tools: list[dict[str, Any]] = UNSET,
        metadata: dict[str, str] = UNSET,
        extra: dict[str, Any] = UNSET,
    ) -> Op[Agent]:
        """Change the given fields; with ``expected_version``, only if nobody changed it since.

        The agent as it was is kept (``versions``) in the same write: one statement on
        PostgreSQL, two on SQLite, after a read of its version when none is expected.
        """
        changes: dict[str, Any] = {}
        if model is not UNSET:
            changes["model"] = require_str(model, "model")
        if name is not UNSET:
            changes["name"] = opt_text(name, "name", 256)
        if description is not UNSET:
            changes["description"] = opt_text(description, "description", 512)
        if instructions is not UNSET:
            changes["instructions"] = opt_text(instructions, "instructions", 256_000)
        if tools is not UNSET:
            changes["tools"] = check_tools(tools)
        if metadata is not UNSET:
            changes["metadata"] = check_metadata(metadata)
        if extra is not UNSET:
            changes["extra"] = check_object(extra, "extra")
        row = yield from self._update_op(
            t, agent_id, "updating an agent", changes, expected_version=expected_version, keep=vt
        )
        return _to_agent(row)

    @op
    def delete(self, agent_id: str) -> Op[None]:
        """Delete an agent; its runs and usage keep their ``agent_id``."""
        yield from self._delete_row(t, agent_id, "deleting an agent")

    @op
    def list(
        self,
        *,
        name: str | None = None,
        model: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
    ) -> Op[Page[Agent]]:
        """Agents, newest first by default; ``name`` / ``model`` match exactly, ``metadata``
        pairs must all be present, ``created_after`` / ``created_before`` bound the creation time.
        """
        where = Filters()
        where.equal(
            (t.c.name, opt_text(name, "name", 256)),
            (t.c.model, None if model is None else require_str(model, "model")),
        )
        pg = self._core.dialect.name == "postgresql"
        where.metadata(t.c.metadata, check_metadata(metadata, "metadata"), pg)
        where.between(t.c.created_at, created_after, created_before)
        return (
            yield from self._page_op(
                t,
                where,
                _to_agent,
                what="listing agents",
                limit=limit,
                after=after,
                before=before,
                order=order,
            )
        )
