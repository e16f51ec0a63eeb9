"""graph checkpoint blobs: seq, a value's number in its chain of deltas

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

The LangGraph saver bases each list delta on the value numbered ``seq & (seq - 1)``
so reading a value walks at most one row per set bit of its number; rows written
before this revision have no number (NULL), and the saver starts a new chain
(a full value) from them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("graph_checkpoint_blobs", sa.Column("seq", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("graph_checkpoint_blobs", schema=None) as batch_op:
        batch_op.drop_column("seq")
