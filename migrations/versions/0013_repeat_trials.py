"""Repeat trials: a profile measures each step several times; each request keeps its trial

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 20:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("trials", sa.Integer(), nullable=False, server_default=sa.text("1")))
        batch.add_column(
            sa.Column("trial_cooldown_s", sa.Float(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("request_samples") as batch:
        batch.add_column(sa.Column("trial", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_samples") as batch:
        batch.drop_column("trial")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("trial_cooldown_s")
        batch.drop_column("trials")
