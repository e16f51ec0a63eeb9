"""graph checkpoints: checkpoints, channel blobs and pending writes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 04:01:26.645717
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "graph_checkpoint_blobs",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=256), nullable=False),
        sa.Column("checkpoint_ns", sa.String(length=256), nullable=False),
        sa.Column("channel", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=True),
        sa.Column("base_version", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "thread_id",
            "checkpoint_ns",
            "channel",
            "version",
            name=op.f("pk_graph_checkpoint_blobs"),
        ),
    )
    op.create_table(
        "graph_checkpoint_writes",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=256), nullable=False),
        sa.Column("checkpoint_ns", sa.String(length=256), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=256), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=True),
        sa.Column("task_path", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "task_id",
            "idx",
            name=op.f("pk_graph_checkpoint_writes"),
        ),
    )
    op.create_table(
        "graph_checkpoints",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=256), nullable=False),
        sa.Column("checkpoint_ns", sa.String(length=256), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("parent_checkpoint_id", sa.String(length=64), nullable=True),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("checkpoint", sa.LargeBinary(), nullable=False),
        sa.Column("metadata_type", sa.String(length=32), nullable=False),
        sa.Column("metadata", sa.LargeBinary(), nullable=False),
        sa.Column(
            "channel_versions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            name=op.f("pk_graph_checkpoints"),
        ),
    )
    with op.batch_alter_table("graph_checkpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_graph_checkpoints_tenant_id_run_id"),
            ["tenant_id", "run_id"],
            unique=False,
            sqlite_where=sa.text("run_id IS NOT NULL"),
            postgresql_where=sa.text("run_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("graph_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_graph_checkpoints_tenant_id_run_id"),
            sqlite_where=sa.text("run_id IS NOT NULL"),
            postgresql_where=sa.text("run_id IS NOT NULL"),
        )

    op.drop_table("graph_checkpoints")
    op.drop_table("graph_checkpoint_writes")
    op.drop_table("graph_checkpoint_blobs")
