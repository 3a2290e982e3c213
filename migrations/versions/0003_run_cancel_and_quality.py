"""run cancellation requests, measurement quality, each sample's end, the run list's keyset index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request_samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("end_ms", sa.Float(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("quality_degraded", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index("ix_runs_created_at_id", ["created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_created_at_id")
        batch_op.drop_column("quality_degraded")
        batch_op.drop_column("cancel_requested_at")
    with op.batch_alter_table("request_samples", schema=None) as batch_op:
        batch_op.drop_column("end_ms")
