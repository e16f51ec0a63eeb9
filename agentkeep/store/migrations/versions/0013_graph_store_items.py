"""graph_store_items: LangGraph's long-term memory (BaseStore items) by namespace and key

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

``namespace`` is the labels joined by "." (LangGraph forbids "." in a label);
on PostgreSQL it compares bytes (collation "C"), so a namespace prefix is a
range of the primary key whatever the database's collation. The partial index
on ``expires_at`` finds the expired items to sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "graph_store_items",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column(
            "namespace",
            sa.Text().with_variant(sa.Text(collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("ttl_minutes", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "namespace", "key", name=op.f("pk_graph_store_items")),
    )
    with op.batch_alter_table("graph_store_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_graph_store_items_expires_at"),
            ["expires_at"],
            unique=False,
            sqlite_where=sa.text("expires_at IS NOT NULL"),
            postgresql_where=sa.text("expires_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("graph_store_items", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_graph_store_items_expires_at"),
            sqlite_where=sa.text("expires_at IS NOT NULL"),
            postgresql_where=sa.text("expires_at IS NOT NULL"),
        )
    op.drop_table("graph_store_items")
