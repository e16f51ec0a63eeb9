"""``store.rate_limits``: request counters in fixed windows, shared by every process.

One row per (tenant, key): the start of the key's current window and the
requests counted in it. :meth:`RateLimits.hit` counts a request with one
atomic upsert (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): a row of
an earlier window starts again at 1, so every process on the database sees
the same count and none is lost. Windows are aligned on the Unix epoch
(``now - now % window``), so every process agrees where one ends.
"""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentkeep.errors import InvalidInput
from agentkeep.models import RateLimitHit
from agentkeep.models.common import from_micros, to_micros, utcnow_micros
from agentkeep.store._base import Resource
from agentkeep.store._steps import COUNT, Op, Steps, Stmt, Write, op, single
from agentkeep.store._validate import require_str
from agentkeep.store.message_sql import MessageSQL, b, const
from agentkeep.store.schema import rate_limits as t

__all__ = ["RateLimits"]

_MAX_WINDOW_MS = 86_400_000 * 366
_RESET = sa.delete(t).where(t.c.tenant_id == sa.bindparam("t"), t.c.key == sa.bindparam("k"))


def _positive_int(value: object, field: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInput(f"must be an integer from 1 to {maximum}", field=field)
    return value


# The upsert of hit(), compiled once per dialect (by the dialect's MessageSQL).
_HIT_SQL: weakref.WeakKeyDictionary[MessageSQL, str] = weakref.WeakKeyDictionary()


def _hit_sql(core: Any) -> str:
    sql: MessageSQL = core.message_sql
    compiled = _HIT_SQL.get(sql)
    if compiled is None:
        insert = core.dialect.insert(t)
        current = t.c.window_start >= insert.excluded.window_start
        stmt = (
            insert.values(tenant_id=b("t"), key=b("k"), window_start=b("w"), hits=const(1))
            .on_conflict_do_update(
                index_elements=[t.c.tenant_id, t.c.key],
                set_={
                    "hits": sa.case((current, t.c.hits + const(1)), else_=const(1)),
                    "window_start": sa.case(
                        (current, t.c.window_start), else_=insert.excluded.window_start
                    ),
                },
            )
            .returning(t.c.hits, t.c.window_start)
        )
        compiled = _HIT_SQL[sql] = sql.compile(stmt)
    return compiled


class RateLimits(Resource):
    """``store.rate_limits``: count requests per key in fixed windows."""

    kind = "rate limit"

    @op
    def hit(
        self, key: str, *, limit: int, window_ms: int, now: datetime | None = None
    ) -> Op[RateLimitHit]:
        """Count one request of ``key`` in its current window of ``window_ms``; the result.

        The request is counted even when it is over ``limit`` (``hit.allowed``
        is then False), so a client that keeps sending stays refused until
        the window ends. One statement, compiled once; native in the async API
        (the service counts every request with it).
        """
        name = require_str(key, "key", max_len=128)
        limit = _positive_int(limit, "limit", 1_000_000_000)
        window_ms = _positive_int(window_ms, "window_ms", _MAX_WINDOW_MS)
        if now is not None and not isinstance(now, datetime):
            raise InvalidInput("must be a datetime", field="now")
        micros = to_micros(now) if now is not None else None
        at = micros if micros is not None else utcnow_micros()
        window_us = window_ms * 1000
        start = at - at % window_us
        sql = _hit_sql(self._core)
        params = {"t": self.tenant_id, "k": name, "w": start}

        def steps() -> Steps[Any]:
            rows = yield Stmt(sql, params)
            return rows[0]

        hits, window_start = yield Write("counting a request", steps)
        began = from_micros(window_start)
        reset = from_micros(window_start + window_us)
        moment = from_micros(at)
        assert began is not None and reset is not None and moment is not None
        return RateLimitHit(
            key=name,
            limit=limit,
            window_ms=window_ms,
            count=int(hits),
            window_start=began,
            reset_at=reset,
            now=moment,
        )

    @op
    def reset(self, key: str) -> Op[None]:
        """Forget ``key``'s count (its next request starts a new window). One statement."""
        name = require_str(key, "key", max_len=128)
        stmt = Stmt(
            self._core.message_sql.compiled(_RESET), {"t": self.tenant_id, "k": name}, COUNT
        )
        yield Write("resetting a rate limit", single(stmt))
