"""The capacity planner: for a demand (concurrent users or requests per second) on a profile,
with headroom, what each endpoint with a recent good run needs: replicas and GPUs, dollars per
hour and month, energy per month, cost per million tokens, and the run it rests on.

One replica is the endpoint as measured: it carries the load of its SLO operating point (the
concurrency, or the request rate, at which the profile's SLO still holds), no more. Where the SLO
held at the heaviest load the run measured, a replica carries at least that much: the replicas
and dollars are then an upper bound, and the row says so (`at_least`).
    replicas = ceil(demand x (1 + headroom) / load at the operating point)
    $/hour   = replicas x (gpu_count x price per GPU-hour + overhead + electricity for its power)
Hosted APIs (priced per token) have no replicas: they cost the tokens the demand sends,
    $/hour = demand tokens/s x 3600 x the run's cost per million tokens / 1e6,
where a user sends the operating point's tokens/s divided by its concurrency. For a
concurrency sweep, the requests/s a replica serves is its output tokens/s at the operating point
divided by the profile's mean output length."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Endpoint, Run
from app.services import scorecards
from app.summary import OperatingPoint

HOURS_PER_MONTH = 730.0
RECENT = timedelta(days=30)


@dataclass(frozen=True)
class PlanRow:
    endpoint_id: int
    endpoint: str
    run_id: int
    measured_at: datetime | None
    pricing: str  # gpu_hour | per_token
    load_per_replica: float | None  # users (concurrency) or requests/s at the SLO, one replica
    replicas: int | None
    gpus: int | None
    dollars_per_hour: float | None
    dollars_per_month: float | None
    kwh_per_month: float | None
    energy_source: str | None
    cost_per_million_tokens: float | None
    degraded: bool
    at_least: bool = False  # the SLO never broke: a replica carries at least this; replicas at most


async def plan(
    session: AsyncSession,
    *,
    profile: str,
    demand: float,
    unit: Literal["users", "rps"],
    headroom: float,
    now: datetime,
) -> list[PlanRow]:
    endpoints = list((await session.scalars(select(Endpoint).order_by(Endpoint.name))).all())
    latest = await scorecards.latest_runs(
        session,
        profile=profile,
        endpoint_ids=[e.id for e in endpoints],
        columns=(*scorecards.CARD_COLUMNS, Run.cost_snapshot, Run.profile_snapshot),
    )
    rows = []
    for endpoint in endpoints:
        run = latest.get(endpoint.id)
        if run is None or (run.finished_at or run.created_at) < now - RECENT:
            continue
        point = run.scorecard.operating_point if run.scorecard is not None else None
        if point is None:
            continue
        rows.append(_row(endpoint, run, point, demand, unit, headroom))
    return rows


def _row(
    endpoint: Endpoint, run: Run, point: OperatingPoint, demand: float, unit: str, headroom: float
) -> PlanRow:
    inputs = run.cost_snapshot
    need = demand * (1.0 + headroom)
    concurrency = point.load if point.load_kind == "concurrency" else None
    rate = point.load if point.load_kind == "rate" else None
    total_tps = point.total_tokens_per_s
    rps = rate
    out_mean = run.profile_snapshot.output_tokens_mean
    if rps is None and point.output_tokens_per_s and out_mean:
        rps = point.output_tokens_per_s / out_mean  # requests/s a closed loop completes there
    per_replica = concurrency if unit == "users" else rps
    cost = point.cost_per_million_tokens
    watts = None
    if point.tokens_per_joule and point.output_tokens_per_s:
        watts = point.output_tokens_per_s / point.tokens_per_joule
    degraded = bool(point.degraded)
    # Per-token pricing, unless self-hosted below: the demand's tokens at the run's measured cost
    # per million tokens.
    tokens_per_unit = total_tps / per_replica if total_tps and per_replica else None
    per_hour = need * tokens_per_unit * 3600.0 * cost / 1e6 if tokens_per_unit and cost is not None else None
    row = PlanRow(
        endpoint_id=endpoint.id, endpoint=endpoint.name, run_id=run.id, measured_at=run.finished_at or run.created_at,
        cost_per_million_tokens=cost, energy_source=point.energy_source, degraded=degraded, pricing="per_token", at_least=point.at_least,
        load_per_replica=per_replica, replicas=None, gpus=None, dollars_per_hour=per_hour,
        dollars_per_month=per_hour * HOURS_PER_MONTH if per_hour is not None else None, kwh_per_month=None,
    )  # fmt: skip
    if inputs.self_hosted:
        replicas = math.ceil(need / per_replica - 1e-9) if per_replica else None
        hourly = inputs.hourly_cost
        if hourly is not None and inputs.electricity_price_per_kwh is not None and watts:
            hourly += watts / 1000.0 * inputs.electricity_price_per_kwh
        per_hour = replicas * hourly if replicas is not None and hourly is not None else None
        return replace(
            row, pricing="gpu_hour", replicas=replicas,
            gpus=replicas * (inputs.gpu_count or 0) if replicas is not None else None,
            dollars_per_hour=per_hour, dollars_per_month=per_hour * HOURS_PER_MONTH if per_hour is not None else None,
            kwh_per_month=replicas * watts / 1000.0 * HOURS_PER_MONTH if replicas is not None and watts else None,
        )  # fmt: skip
    return row


SORTS = ("dollars_per_hour", "replicas", "gpus", "cost_per_million_tokens", "kwh_per_month", "endpoint")


def sort_rows(rows: list[PlanRow], key: str) -> list[PlanRow]:
    if key == "endpoint":
        return sorted(rows, key=lambda r: r.endpoint.lower())
    return sorted(rows, key=lambda r: (getattr(r, key) is None, getattr(r, key) or 0.0, r.endpoint.lower()))
