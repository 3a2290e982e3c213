"""Figures by where they were measured: each location's latest run of an endpoint side by side
(with the TCP connect time beside TTFT and TPOT, the network's share), and each agent's share of
steps flagged client-bound."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Run, RunStep, measured
from app.schemas import LocationFigures


async def by_location(
    session: AsyncSession, *, endpoint_id: int, per_location: int = 50
) -> list[LocationFigures]:
    """Each location's latest measured run of each profile on this endpoint (from its last
    `per_location` runs), its TTFT and TPOT medians at the operating step and the connect time."""
    locations = (
        await session.scalars(select(Run.location).where(Run.endpoint_id == endpoint_id).distinct())
    ).all()
    found: list[LocationFigures] = []
    for location in sorted(locations):
        latest = (
            await session.scalars(
                select(Run)
                .where(
                    Run.endpoint_id == endpoint_id,
                    Run.location == location,
                    measured(),
                )
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(per_location)
            )
        ).all()
        seen: set[str] = set()
        for run in latest:
            if run.profile_name in seen:
                continue
            seen.add(run.profile_name)
            point = run.scorecard.operating_point if run.scorecard is not None else None
            step_index = point.step_index if point is not None else 0
            summary = await session.scalar(
                select(RunStep.summary).where(RunStep.run_id == run.id, RunStep.step_index == step_index)
            )
            found.append(
                LocationFigures(
                    location=location,
                    profile=run.profile_name,
                    run_id=run.id,
                    at=run.created_at,
                    connect_ms=run.environment.connect_ms if run.environment is not None else None,
                    ttft_p50_ms=summary.ttft_ms.p50 if summary is not None else None,
                    tpot_p50_ms=summary.tpot_ms.p50 if summary is not None else None,
                    load=summary.load if summary is not None else None,
                    degraded=run.quality_degraded,
                )
            )
    return found


async def client_bound_shares(session: AsyncSession, *, since: datetime) -> dict[int, tuple[int, int]]:
    """Per agent, (its steps since `since`, those flagged client-bound): how often its host was
    too slow for the load it generated."""
    rows = await session.execute(
        select(
            Run.agent_id, func.count(RunStep.id), func.sum(case((RunStep.client_bound.is_(True), 1), else_=0))
        )
        .join(RunStep, RunStep.run_id == Run.id)
        .where(Run.agent_id.is_not(None), Run.created_at >= since)
        .group_by(Run.agent_id)
    )
    return {int(agent_id): (int(steps), int(bound or 0)) for agent_id, steps, bound in rows.all()}
