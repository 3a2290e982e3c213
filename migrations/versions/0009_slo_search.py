"""SLO search: a profile may search for the heaviest load that meets its SLO

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 18:30:00
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
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("search", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(
            sa.Column("search_max_steps", sa.Integer(), nullable=False, server_default=sa.text("10"))
        )
        batch.add_column(
            sa.Column("search_budget_s", sa.Float(), nullable=False, server_default=sa.text("900"))
        )


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("search_budget_s")
        batch.drop_column("search_max_steps")
        batch.drop_column("search")
