"""inspections (detected engine, evidence, the conformance checklist) and the electricity price

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "endpoint_id", sa.Integer(), sa.ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("engine", sa.String(50), nullable=False),
        sa.Column("engine_version", sa.String(100), nullable=True),
        sa.Column("declared_engine", sa.String(50), nullable=True),
        sa.Column("checklist_version", sa.String(20), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("metrics_exposed", sa.Boolean(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("checks_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_inspections_endpoint_created", "inspections", ["endpoint_id", "created_at"])
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("electricity_price_per_kwh", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("electricity_price_per_kwh")
    op.drop_index("ix_inspections_endpoint_created", table_name="inspections")
    op.drop_table("inspections")
