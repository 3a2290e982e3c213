"""Scorecards and cost trends: one builder for each page and its JSON twin."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from app.models import Endpoint, Run, RunStatus, RunStep
from app.schemas import CostSeries, CostTrends, Letter, Scorecard, TrendPoint
from app.services import endpoints as endpoint_service
from app.services.runs import LIST_COLUMNS

EMPTY_LETTERS = [
    ("S", "Scale and complexity"),
    ("M", "Multidimensional performance"),
    ("A", "Architecture and software"),
    ("R", "Return on investment"),
    ("T", "Technology ecosystem"),
]


def _empty_letters() -> list[Letter]:
    return [
        Letter(
            letter=key,
            name=name,
            score=None,
            status="no run yet",
            evidence=[],
            how="Run a probe of this profile to score it.",
        )
        for key, name in EMPTY_LETTERS
    ]


# A trend point needs these columns of a run, never its JSON snapshots.
POINT_COLUMNS = (Run.id, Run.finished_at, Run.created_at, Run.cost_per_million_tokens_at_slo,
                 Run.output_tokens_per_s_at_slo, Run.quality_degraded)  # fmt: skip


def _point(run: Any) -> TrendPoint:
    return TrendPoint(
        run_id=run.id,
        at=run.finished_at or run.created_at,
        cost_per_million_tokens=run.cost_per_million_tokens_at_slo,
        output_tokens_per_s=run.output_tokens_per_s_at_slo,
        degraded=run.quality_degraded,
    )


async def endpoint_scorecard(
    session: AsyncSession, *, endpoint: Endpoint, profile: str, now: datetime, days: int = 30
) -> Scorecard:
    points = (
        await session.execute(
            select(*POINT_COLUMNS)
            .where(
                Run.endpoint_id == endpoint.id,
                Run.profile_name == profile,
                Run.status == RunStatus.succeeded.value,
                Run.created_at >= now - timedelta(days=days),
            )
            .order_by(Run.created_at, Run.id)
        )
    ).all()
    # The card is the latest successful run's stored judgement: one row, whatever the history.
    latest = await session.scalar(
        select(Run)
        .where(
            Run.endpoint_id == endpoint.id,
            Run.profile_name == profile,
            Run.status == RunStatus.succeeded.value,
        )
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(1)
    )
    card: dict[str, Any] = (latest.scorecard if latest is not None else None) or {}
    return Scorecard(
        endpoint_id=endpoint.id,
        endpoint=endpoint.name,
        profile=profile,
        run_id=latest.id if latest else None,
        measured_at=(latest.finished_at or latest.created_at) if latest else None,
        letters=[Letter(**entry) for entry in card.get("letters", [])] or _empty_letters(),
        operating_point=card.get("operating_point"),
        capacity=card.get("capacity"),
        slo=card.get("slo"),
        cost_per_million_tokens_at_slo=latest.cost_per_million_tokens_at_slo if latest else None,
        quality=card.get("quality") or {"degraded": False, "reasons": []},
        pricing=endpoint_service.pricing_kind(endpoint),
        trend=[_point(row) for row in points],
    )


async def profiles_with_runs(session: AsyncSession, *, endpoint_id: int | None = None) -> list[str]:
    query = select(Run.profile_name).where(Run.status == RunStatus.succeeded.value).distinct()
    if endpoint_id is not None:
        query = query.where(Run.endpoint_id == endpoint_id)
    return sorted((await session.scalars(query)).all())


async def for_endpoint(
    session: AsyncSession, *, endpoint_id: int, now: datetime, profile: str | None = None
) -> list[Scorecard]:
    endpoint = await endpoint_service.get(session, endpoint_id)
    names = [profile] if profile else await profiles_with_runs(session, endpoint_id=endpoint_id)
    return [await endpoint_scorecard(session, endpoint=endpoint, profile=name, now=now) for name in names]


async def overview(session: AsyncSession, *, profile: str, now: datetime) -> list[Scorecard]:
    endpoints = (await session.scalars(select(Endpoint).order_by(Endpoint.name))).all()
    return [await endpoint_scorecard(session, endpoint=e, profile=profile, now=now) for e in endpoints]


async def default_profile(session: AsyncSession) -> str:
    """The overview opens on `chat` once it has been measured (the flagship profile), else on
    the profile measured most recently, so it always opens on data."""
    measured = await session.scalar(
        select(Run.id).where(Run.status == RunStatus.succeeded.value, Run.profile_name == "chat").limit(1)
    )
    if measured is not None:
        return "chat"
    latest = await session.scalar(
        select(Run.profile_name)
        .where(Run.status == RunStatus.succeeded.value)
        .order_by(Run.created_at.desc())
        .limit(1)
    )
    return latest or "chat"


async def cost_trends(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    profile: str | None,
    endpoint_id: int | None = None,
) -> CostTrends:
    query = (
        select(*POINT_COLUMNS, Run.endpoint_id, Run.profile_name, Endpoint.name.label("endpoint_name"))
        .join(Endpoint, Endpoint.id == Run.endpoint_id)
        .where(Run.status == RunStatus.succeeded.value, Run.created_at >= since, Run.created_at <= until)
        .order_by(Run.created_at, Run.id)
    )
    if profile:
        query = query.where(Run.profile_name == profile)
    if endpoint_id is not None:
        query = query.where(Run.endpoint_id == endpoint_id)
    series: dict[tuple[int, str], CostSeries] = {}
    for row in (await session.execute(query)).all():
        key = (row.endpoint_id, row.profile_name)
        if key not in series:
            series[key] = CostSeries(
                endpoint_id=row.endpoint_id, endpoint=row.endpoint_name, profile=row.profile_name, points=[]
            )
        series[key].points.append(_point(row))
    return CostTrends(since=since, until=until, profile=profile, series=list(series.values()))


async def latency_history(
    session: AsyncSession, *, endpoint_id: int, profile: str, since: datetime, pct: str = "p99"
) -> list[dict[str, Any]]:
    """Latency percentiles at each run's operating step, over time (endpoint page)."""
    rows = (
        await session.scalars(
            select(Run)
            .where(
                Run.endpoint_id == endpoint_id,
                Run.profile_name == profile,
                Run.status == RunStatus.succeeded.value,
                Run.created_at >= since,
            )
            .order_by(Run.created_at)
        )
    ).all()
    steps = {
        (step.run_id, step.step_index): step
        for step in (
            await session.scalars(select(RunStep).where(RunStep.run_id.in_([r.id for r in rows])))
        ).all()
    }  # one query for all runs' steps, not one per run
    history = []
    for run in rows:
        point = (run.scorecard or {}).get("operating_point") or {}
        step = steps.get((run.id, point.get("step_index", 0)))
        if step is None:
            continue
        history.append(
            {
                "at": run.finished_at or run.created_at,
                "run_id": run.id,
                f"ttft_{pct}": getattr(step, f"ttft_ms_{pct}"),
                f"tpot_{pct}": getattr(step, f"tpot_ms_{pct}"),
                f"itl_{pct}": getattr(step, f"itl_ms_{pct}"),
            }
        )
    return history


async def run_steps(session: AsyncSession, *, run_id: int) -> list[dict[str, Any]]:
    rows = (
        await session.scalars(select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.step_index))
    ).all()
    return [dict(row.summary) for row in rows]


async def recent_runs(session: AsyncSession, *, endpoint_id: int, limit: int = 20) -> list[Run]:
    return list(
        (
            await session.scalars(
                select(Run)
                .options(load_only(*LIST_COLUMNS, raiseload=True))
                .where(Run.endpoint_id == endpoint_id)
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(limit)
            )
        ).all()
    )
