"""usage_days: LLM usage summed per tenant, UTC day and key, filled from the rows already there;
llm_usage's (tenant_id, created_at) index also covers latency_ms

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DAY_MICROS = 86_400_000_000
_KEYS = ("provider", "model", "agent_id", "user_id", "status")
_SUMS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "unpriced_calls",
)


def _create() -> sa.Table:
    columns: list[sa.Column[Any]] = [
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.BigInteger(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("agent_id", sa.String(length=256), nullable=True),
        sa.Column("user_id", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
    ]
    return op.create_table(
        "usage_days",
        *columns,
        sa.PrimaryKeyConstraint("tenant_id", "day", "key_hash", name=op.f("pk_usage_days")),
    )


def _key_hash(row: Any) -> str:
    """As agentkeep.store.usage_days.key_hash at this revision."""
    key = json.dumps([row[k] for k in _KEYS], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _backfill(days: sa.Table) -> None:
    u = sa.table(
        "llm_usage",
        *(sa.column(name) for name in ("tenant_id", "created_at", *_KEYS)),
        *(sa.column(name) for name in ("input_tokens", "output_tokens", "cached_tokens")),
        sa.column("reasoning_tokens"),
        sa.column("cost_nano_usd"),
    )
    per_day = sa.literal(_DAY_MICROS, sa.BigInteger())
    day = sa.case(
        (u.c.created_at >= 0, u.c.created_at // per_day),
        else_=(u.c.created_at - sa.literal(_DAY_MICROS - 1, sa.BigInteger())) // per_day,
    ).label("day")
    keys = [u.c.tenant_id, day, *(u.c[k] for k in _KEYS)]
    f = sa.func
    sums = [
        f.count().label("calls"),
        *(f.sum(u.c[k]).label(k) for k in _SUMS[1:5]),
        f.coalesce(f.sum(u.c.cost_nano_usd), 0).label("cost_nano_usd"),
        f.sum(sa.case((u.c.cost_nano_usd.is_(None), 1), else_=0)).label("unpriced_calls"),
    ]
    conn = op.get_bind()
    batch: list[dict[str, Any]] = []
    for row in conn.execute(sa.select(*keys, *sums).group_by(*keys)).mappings().all():
        values = {k: row[k] for k in ("tenant_id", "day", *_KEYS)}
        values.update({k: int(row[k] or 0) for k in _SUMS}, key_hash=_key_hash(row))
        batch.append(values)
        if len(batch) >= 1000:
            conn.execute(sa.insert(days), batch)
            batch = []
    if batch:
        conn.execute(sa.insert(days), batch)


def upgrade() -> None:
    _backfill(_create())
    with op.batch_alter_table("llm_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_llm_usage_tenant_id_created_at"))
        batch_op.create_index(
            batch_op.f("ix_llm_usage_tenant_id_created_at_latency_ms"),
            ["tenant_id", "created_at", "latency_ms"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("llm_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_llm_usage_tenant_id_created_at_latency_ms"))
        batch_op.create_index(
            batch_op.f("ix_llm_usage_tenant_id_created_at"), ["tenant_id", "created_at"]
        )
    op.drop_table("usage_days")
