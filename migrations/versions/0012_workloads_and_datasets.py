"""Workloads: a profile's workload, stored datasets and traces, and what each request's
workload made of it (session, turn, cached prompt tokens, dispatch lag)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SAMPLE_COLUMNS = (
    ("requested_input_tokens", sa.Integer()),
    ("cached_tokens", sa.Integer()),
    ("expected_cached_tokens", sa.Integer()),
    ("session", sa.Integer()),
    ("turn", sa.Integer()),
    ("dispatch_lag_ms", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("workload", sa.JSON(), nullable=True))
    with op.batch_alter_table("request_samples") as batch:
        for name, kind in SAMPLE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("generated", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
    )


def downgrade() -> None:
    op.drop_table("datasets")
    with op.batch_alter_table("request_samples") as batch:
        for name, _ in reversed(SAMPLE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("workload")
