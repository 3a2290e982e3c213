"""Scorecards and cost trends: one builder for each page and its JSON twin."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from app.domain import PERCENTILE_KEYS, RunSource
from app.models import Endpoint, Run, RunStatus, RunStep, measured
from app.schemas import EndpointScorecard, LatencyPoint, TrendPoint
from app.services import endpoints as endpoint_service
from app.services import trends
from app.services.runs import LIST_COLUMNS
from app.snapshot import CostInputs, ProfileSnapshot
from app.summary import Judgement, RunEndpoint, RunSummary, Scorecard

EMPTY_LETTERS = [
    ("S", "Scale and complexity"),
    ("M", "Multidimensional performance"),
    ("A", "Architecture and software"),
    ("R", "Return on investment"),
    ("T", "Technology ecosystem"),
]


def _empty_letters() -> list[Judgement]:
    return [
        Judgement(
            letter=key,
            name=name,
            score=None,
            status="no run yet",
            evidence=[],
            how="Run a probe of this profile to score it.",
        )
        for key, name in EMPTY_LETTERS
    ]


TREND_DAYS = 30


# What a card reads of a run: never its environment, snapshots or steps.
CARD_COLUMNS = (
    Run.id, Run.endpoint_id, Run.source, Run.location, Run.created_at, Run.finished_at,
    Run.cost_per_million_tokens_at_slo, Run.scorecard,
)  # fmt: skip


async def latest_runs(
    session: AsyncSession,
    *,
    profile: str,
    endpoint_ids: list[int],
    columns: tuple[Any, ...] = CARD_COLUMNS,
    location: str | None = None,
) -> dict[int, Run]:
    """Each endpoint's latest measured run of the profile (from one location, or wherever it
    was measured): one index probe per endpoint, in one query, whatever the history holds (its
    stored judgement is the card). Only `columns` are loaded (reading another raises)."""
    if not endpoint_ids:
        return {}
    located = [Run.location == location] if location is not None else []
    latest = (
        select(Run.id)
        .where(Run.endpoint_id == Endpoint.id, Run.profile_name == profile, measured(), *located)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(1)
        .correlate(Endpoint)
        .scalar_subquery()
    )
    ids = (await session.scalars(select(latest).where(Endpoint.id.in_(endpoint_ids)))).all()
    rows = (
        await session.scalars(
            select(Run)
            .where(Run.id.in_([i for i in ids if i is not None]))
            .options(load_only(*columns, raiseload=True))
        )
    ).all()
    return {run.endpoint_id: run for run in rows}


def _card(endpoint: Endpoint, profile: str, latest: Run | None, trend: list[TrendPoint]) -> EndpointScorecard:
    card = (latest.scorecard if latest is not None else None) or Scorecard()
    return EndpointScorecard(
        **{**dict(card), "letters": card.letters or _empty_letters()},
        endpoint_id=endpoint.id,
        endpoint=endpoint.name,
        profile=profile,
        run_id=latest.id if latest else None,
        measured_at=(latest.finished_at or latest.created_at) if latest else None,
        cost_per_million_tokens_at_slo=latest.cost_per_million_tokens_at_slo if latest else None,
        pricing=CostInputs.of(endpoint).pricing,
        trend=trend,
        source=latest.source if latest else RunSource.smartbench.value,
        location=latest.location if latest else None,
    )


def of_run(summary: RunSummary) -> EndpointScorecard | None:
    """The scorecard of one stored run, as the run page shows it (no trend)."""
    card = summary.scorecard
    if card is None:
        return None
    endpoint = summary.endpoint if isinstance(summary.endpoint, RunEndpoint) else RunEndpoint()
    profile = summary.profile.name if isinstance(summary.profile, ProfileSnapshot) else summary.profile
    point = card.operating_point
    return EndpointScorecard(
        **dict(card),
        endpoint_id=endpoint.id or 0,
        endpoint=endpoint.name or "",
        profile=profile or "",
        run_id=summary.run_id,
        measured_at=None,
        cost_per_million_tokens_at_slo=point.cost_per_million_tokens if point is not None else None,
        pricing=(summary.cost_inputs or CostInputs()).pricing,
        trend=[],
        source=summary.source or RunSource.smartbench.value,
    )


async def cards_for(
    session: AsyncSession,
    *,
    endpoints: list[Endpoint],
    profile: str,
    now: datetime,
    location: str | None = None,
) -> list[EndpointScorecard]:
    """Cards for many endpoints in three queries: latest runs, and the daily trend buckets (of
    one location's runs where `location` is given)."""
    latest = await latest_runs(
        session, profile=profile, endpoint_ids=[e.id for e in endpoints], location=location
    )
    _, series = await trends.cost_series(
        session, profile=profile, since=now - timedelta(days=TREND_DAYS), until=now,
        endpoints=[(e.id, e.name) for e in endpoints], grain="day", location=location,
    )  # fmt: skip
    points: dict[int, list[TrendPoint]] = {}
    for one in series:
        points.setdefault(one.endpoint_id, []).extend(one.points)
    return [
        _card(e, profile, latest.get(e.id), sorted(points.get(e.id, []), key=lambda p: (p.at, p.synthetic)))
        for e in endpoints
    ]


async def endpoint_scorecard(
    session: AsyncSession, *, endpoint: Endpoint, profile: str, now: datetime
) -> EndpointScorecard:
    """One endpoint on one profile: its latest measured run's stored judgement, and the daily
    medians of its cost over TREND_DAYS days."""
    return (await cards_for(session, endpoints=[endpoint], profile=profile, now=now))[0]


async def profiles_with_runs(session: AsyncSession, *, endpoint_id: int | None = None) -> list[str]:
    query = select(Run.profile_name).where(Run.status == RunStatus.succeeded.value).distinct()
    if endpoint_id is not None:
        query = query.where(Run.endpoint_id == endpoint_id)
    return sorted((await session.scalars(query)).all())


async def for_endpoint(
    session: AsyncSession, *, endpoint_id: int, now: datetime, profile: str | None = None
) -> list[EndpointScorecard]:
    endpoint = await endpoint_service.get(session, endpoint_id)
    names = [profile] if profile else await profiles_with_runs(session, endpoint_id=endpoint_id)
    return [await endpoint_scorecard(session, endpoint=endpoint, profile=name, now=now) for name in names]


SORTS = ("name", "S", "M", "A", "R", "T", "cost")


async def overview(
    session: AsyncSession, *, profile: str, now: datetime, sort: str = "name"
) -> list[EndpointScorecard]:
    """Every endpoint's card on the profile, by name, by a letter (best first) or by cost
    (cheapest first); cards without the figure last."""
    endpoints = list((await session.scalars(select(Endpoint).order_by(Endpoint.name, Endpoint.id))).all())
    cards = await cards_for(session, endpoints=endpoints, profile=profile, now=now)

    def key(card: EndpointScorecard) -> tuple[bool, float, str]:
        if sort == "cost":
            cost = card.cost_per_million_tokens_at_slo
            return (cost is None, cost or 0.0, card.endpoint.lower())
        if sort in "SMART":
            score = next((entry.score for entry in card.letters if entry.letter == sort), None)
            return (score is None, -(score or 0.0), card.endpoint.lower())
        return (False, 0.0, card.endpoint.lower())

    return sorted(cards, key=key)


async def overview_page(
    session: AsyncSession, *, profile: str, now: datetime, limit: int, offset: int
) -> tuple[list[EndpointScorecard], int]:
    """One page of every endpoint's card on the profile, by name, and how many endpoints there are."""
    endpoints = list(
        (
            await session.scalars(
                select(Endpoint).order_by(Endpoint.name, Endpoint.id).offset(offset).limit(limit)
            )
        ).all()
    )
    total = await session.scalar(select(func.count(Endpoint.id))) or 0
    return await cards_for(session, endpoints=endpoints, profile=profile, now=now), int(total)


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


async def latency_history(
    session: AsyncSession,
    *,
    endpoint_id: int,
    profile: str,
    since: datetime,
    until: datetime,
    pct: str = "p99",
) -> list[LatencyPoint]:
    """Latency percentiles at each run's operating step, over time (endpoint page): one join on
    stored columns. Beyond RAW_LIMIT runs, the mean per time bucket (trends.grain_for)."""
    if pct not in PERCENTILE_KEYS.values():
        raise ValueError(f"no stored percentile {pct!r}")
    metrics = {f"{key}_ms": getattr(RunStep, f"{key}_ms_{pct}") for key in ("ttft", "tpot", "itl")}
    synthetic = (Run.source == RunSource.synthetic.value).label("synthetic")
    where = and_(
        trends.in_range(profile, since, until),
        Run.endpoint_id == endpoint_id,
        RunStep.run_id == Run.id,
        RunStep.step_index == Run.operating_step,
    )
    count = await session.scalar(
        select(func.count()).select_from(Run).join(RunStep, RunStep.run_id == Run.id).where(where)
    )
    if (count or 0) <= trends.RAW_LIMIT:
        rows = await session.execute(
            select(
                Run.id, Run.created_at, Run.finished_at, synthetic, *(m.label(k) for k, m in metrics.items())
            )
            .select_from(Run)
            .join(RunStep, RunStep.run_id == Run.id)
            .where(where)
            .order_by(Run.created_at, Run.id)
        )
        return [
            LatencyPoint(at=row.finished_at or row.created_at, run_id=row.id, synthetic=bool(row.synthetic),
                         **{key: getattr(row, key) for key in metrics})
            for row in rows
        ]  # fmt: skip
    _, width = trends.grain_for(until - since)
    bucket = trends.bucket_of(session, width).label("b")
    rows = await session.execute(
        select(
            bucket, synthetic, func.count().label("runs"), *(func.avg(m).label(k) for k, m in metrics.items())
        )
        .select_from(Run)
        .join(RunStep, RunStep.run_id == Run.id)
        .where(where)
        .group_by(bucket, synthetic)
        .order_by(bucket, synthetic)
    )
    return [
        LatencyPoint(at=trends.bucket_start(int(row.b), width), run_id=None, runs=int(row.runs),
                     synthetic=bool(row.synthetic), **{key: getattr(row, key) for key in metrics})
        for row in rows
    ]  # fmt: skip


async def measured_endpoints(
    session: AsyncSession, *, profile: str, limit: int, location: str | None = None
) -> list[Endpoint]:
    """The endpoints with a measured run of the profile (from one location, or any), by name (in SQL)."""
    located = [Run.location == location] if location is not None else []
    has_run = (
        select(Run.id)
        .where(Run.endpoint_id == Endpoint.id, Run.profile_name == profile, measured(), *located)
        .exists()
    )
    rows = await session.scalars(
        select(Endpoint).where(has_run).order_by(Endpoint.name, Endpoint.id).limit(limit)
    )
    return list(rows.all())


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
