"""Inspection claims on endpoints; skipped schedule slots merged into one run with a count

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("inspecting_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("skipped_slots", sa.Integer(), nullable=True))
    op.execute("UPDATE runs SET skipped_slots = 1 WHERE status = 'skipped_overlap'")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("skipped_slots")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("inspecting_since")
