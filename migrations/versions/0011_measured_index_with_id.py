"""The scorecards' index ends with the run id: the latest measured run is one index probe, ties
on created_at broken by the id without sorting an endpoint's whole history

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in app/models.py (a migration keeps its own copy: the model may change later).
MEASURED_SQL = "status = 'succeeded' AND source <> 'synthetic'"


def _measured_index(columns: list[str]) -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_measured")
        batch.create_index(
            "ix_runs_measured",
            columns,
            unique=False,
            sqlite_where=sa.text(MEASURED_SQL),
            postgresql_where=sa.text(MEASURED_SQL),
        )


def upgrade() -> None:
    _measured_index(["endpoint_id", "profile_name", "created_at", "id"])


def downgrade() -> None:
    _measured_index(["endpoint_id", "profile_name", "created_at"])
