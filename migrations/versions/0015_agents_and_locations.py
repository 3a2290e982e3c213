"""Agents and locations: agent tokens, agents, a location and attempt on every run, locations on
schedules, a location on alerts and change points

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 13:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_agent_tokens_location", "agent_tokens", ["location"])
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=True),
        sa.Column("client_rate", sa.Float(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_run_id", sa.Integer(), nullable=True),
        sa.Column("offline_since", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["agent_tokens.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_agents_token_id", "agents", ["token_id"])
    op.create_index("ix_agents_location", "agents", ["location"])
    op.create_index("ix_agents_last_seen_at", "agents", ["last_seen_at"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("location", sa.String(length=64), server_default="local", nullable=False))
        batch.add_column(sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch.add_column(sa.Column("agent_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_runs_agent_id_agents", "agents", ["agent_id"], ["id"], ondelete="SET NULL"
        )
        batch.drop_constraint("uq_runs_schedule_id_scheduled_for", type_="unique")
        batch.create_unique_constraint(
            "uq_runs_schedule_slot_location", ["schedule_id", "scheduled_for", "location"]
        )
        batch.create_index("ix_runs_location", ["location"])
    for table in ("alerts", "change_points"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("location", sa.String(length=64), server_default="local", nullable=False)
            )
    with op.batch_alter_table("alerts") as batch:  # an agent's alerts have no endpoint
        batch.alter_column("endpoint_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("agent_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_alerts_agent_id_agents", "agents", ["agent_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("locations", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(
            sa.Column("location_mode", sa.String(length=16), server_default="all", nullable=False)
        )
        batch.add_column(
            sa.Column("location_turn", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    op.execute("DELETE FROM alerts WHERE endpoint_id IS NULL")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint("fk_alerts_agent_id_agents", type_="foreignkey")
        batch.drop_column("agent_id")
        batch.alter_column("endpoint_id", existing_type=sa.Integer(), nullable=False)
    for table in ("alerts", "change_points"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("location")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("location_turn")
        batch.drop_column("location_mode")
        batch.drop_column("locations")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_location")
        batch.drop_constraint("uq_runs_schedule_slot_location", type_="unique")
        batch.create_unique_constraint("uq_runs_schedule_id_scheduled_for", ["schedule_id", "scheduled_for"])
        batch.drop_constraint("fk_runs_agent_id_agents", type_="foreignkey")
        batch.drop_column("agent_id")
        batch.drop_column("attempt")
        batch.drop_column("location")
    op.drop_index("ix_agents_last_seen_at", table_name="agents")
    op.drop_index("ix_agents_location", table_name="agents")
    op.drop_index("ix_agents_token_id", table_name="agents")
    op.drop_table("agents")
    op.drop_index("ix_agent_tokens_location", table_name="agent_tokens")
    op.drop_table("agent_tokens")
