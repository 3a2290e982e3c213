"""trend queries: the operating step, price and serving-stack keys of each run, and their index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 12:10:00
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of app/domain.py's definitions as of this revision.
PRICE_FIELDS = ("gpu_count", "price_per_gpu_hour", "overhead_per_hour",
                "input_price_per_million", "output_price_per_million")  # fmt: skip
STACK_FIELDS = ("model", "engine", "engine_version", "quantization", "gpu_model", "gpu_count")
TREND_INDEX = ("endpoint_id", "profile_name", "status", "created_at", "source", "cost_per_million_tokens_at_slo",
               "output_tokens_per_s_at_slo", "quality_degraded", "price_key", "stack_key", "id")  # fmt: skip
MEASURED_SQL = "status = 'succeeded' AND source <> 'synthetic'"
BATCH = 2000


def _key(snapshot: object, fields: tuple[str, ...]) -> str:
    if isinstance(snapshot, str):
        snapshot = json.loads(snapshot)
    snap = snapshot if isinstance(snapshot, dict) else {}
    picked = {name: snap.get(name) for name in fields}
    return hashlib.sha1(json.dumps(picked, sort_keys=True).encode(), usedforsecurity=False).hexdigest()[:16]


def _step(scorecard: object) -> int | None:
    if isinstance(scorecard, str):
        scorecard = json.loads(scorecard)
    point = (scorecard or {}).get("operating_point") if isinstance(scorecard, dict) else None
    index = (point or {}).get("step_index")
    return index if isinstance(index, int) else None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("operating_step", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("price_key", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("stack_key", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_runs_trend", list(TREND_INDEX), unique=False)
        batch_op.create_index(
            "ix_runs_measured",
            ["endpoint_id", "profile_name", "created_at"],
            unique=False,
            sqlite_where=sa.text(MEASURED_SQL),
            postgresql_where=sa.text(MEASURED_SQL),
        )
    bind = op.get_bind()
    runs = sa.table(
        "runs",
        sa.column("id", sa.Integer),
        sa.column("cost_snapshot", sa.JSON),
        sa.column("endpoint_snapshot", sa.JSON),
        sa.column("scorecard", sa.JSON),
        sa.column("operating_step", sa.Integer),
        sa.column("price_key", sa.String),
        sa.column("stack_key", sa.String),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(runs.c.id, runs.c.cost_snapshot, runs.c.endpoint_snapshot, runs.c.scorecard)
            .where(runs.c.id > last)
            .order_by(runs.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            runs.update().where(runs.c.id == sa.bindparam("rid")),
            [
                {
                    "rid": row.id,
                    "operating_step": _step(row.scorecard),
                    "price_key": _key(row.cost_snapshot, PRICE_FIELDS),
                    "stack_key": _key(row.endpoint_snapshot, STACK_FIELDS),
                }
                for row in rows
            ],
        )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_measured")
        batch_op.drop_index("ix_runs_trend")
        batch_op.drop_column("stack_key")
        batch_op.drop_column("price_key")
        batch_op.drop_column("operating_step")
