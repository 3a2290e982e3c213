"""smartbench's own Prometheus metrics: queue depth, runs by status, schedules, endpoints."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Endpoint, Run, Schedule


async def prometheus_text(session: AsyncSession, *, active_here: int) -> str:
    by_status = dict(
        (await session.execute(select(Run.status, func.count(Run.id)).group_by(Run.status))).all()
    )
    endpoints = await session.scalar(select(func.count(Endpoint.id))) or 0
    enabled = await session.scalar(select(func.count(Schedule.id)).where(Schedule.enabled.is_(True))) or 0
    lines = [
        "# HELP smartbench_runs Runs in the database by status.",
        "# TYPE smartbench_runs gauge",
        *(f'smartbench_runs{{status="{status}"}} {count}' for status, count in sorted(by_status.items())),
        "# HELP smartbench_endpoints Registered endpoints.",
        "# TYPE smartbench_endpoints gauge",
        f"smartbench_endpoints {endpoints}",
        "# HELP smartbench_schedules_enabled Enabled schedules.",
        "# TYPE smartbench_schedules_enabled gauge",
        f"smartbench_schedules_enabled {enabled}",
        "# HELP smartbench_runs_executing_here Runs this process is executing now.",
        "# TYPE smartbench_runs_executing_here gauge",
        f"smartbench_runs_executing_here {active_here}",
    ]
    return "\n".join(lines) + "\n"
