"""Change points in an endpoint's history on a profile (app/changepoints.py), scanned when runs
land: TTFT and TPOT at each run's operating step (at the profile's SLO percentile), throughput
at the SLO and cost per million tokens at the SLO. Stored (derived: each scan replaces the
endpoint's and profile's), listed in the API, drawn on the trend charts and the endpoint page.
Each location's runs are a series of their own: a location whose network adds 100 ms is not a
step in another's history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.changepoints import find
from app.domain import PERCENTILE_KEYS, RunSource, percentile_key
from app.models import ChangePoint, Run, RunStatus, RunStep
from app.schemas import ChangePointRead

MAX_RUNS = 1000  # the latest runs a scan reads
SERIES = {
    "ttft_ms": "TTFT",
    "tpot_ms": "TPOT",
    "output_tokens_per_s_at_slo": "output tokens/s at the SLO",
    "cost_per_million_tokens_at_slo": "$ per million tokens at the SLO",
}
HIGHER_IS_BETTER = {"output_tokens_per_s_at_slo"}


async def rescan(
    session: AsyncSession, *, endpoint_id: int, profile: str, now: datetime
) -> list[ChangePoint]:
    """Scan the endpoint's succeeded runs of the profile (generated history included, marked)
    and store what is found in place of what was; returns the change points that are new."""
    latest = (
        await session.scalars(
            select(Run.profile_snapshot)
            .where(Run.endpoint_id == endpoint_id, Run.profile_name == profile)
            .order_by(Run.created_at.desc())
            .limit(1)
        )
    ).first()
    pct = percentile_key(latest.slo_percentile if latest is not None else None)
    if pct not in PERCENTILE_KEYS.values():
        pct = "p99"
    rows = (
        await session.execute(
            select(
                Run.id, Run.created_at, Run.finished_at, Run.source, Run.location, Run.cost_per_million_tokens_at_slo,
                Run.output_tokens_per_s_at_slo, getattr(RunStep, f"ttft_ms_{pct}").label("ttft_ms"),
                getattr(RunStep, f"tpot_ms_{pct}").label("tpot_ms"),
            )
            .select_from(Run)
            .outerjoin(RunStep, (RunStep.run_id == Run.id) & (RunStep.step_index == Run.operating_step))
            .where(Run.endpoint_id == endpoint_id, Run.profile_name == profile,
                   Run.status == RunStatus.succeeded.value)
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(MAX_RUNS)
        )
    ).all()  # fmt: skip
    rows = list(reversed(rows))
    before = {
        (c.metric, c.run_id)
        for c in (
            await session.scalars(
                select(ChangePoint).where(
                    ChangePoint.endpoint_id == endpoint_id, ChangePoint.profile_name == profile
                )
            )
        ).all()
    }
    await session.execute(
        delete(ChangePoint).where(ChangePoint.endpoint_id == endpoint_id, ChangePoint.profile_name == profile)
    )
    found: list[ChangePoint] = []
    for location in sorted({row.location for row in rows}):
        here = [row for row in rows if row.location == location]
        for metric in SERIES:
            series = [(row, float(v)) for row in here if (v := getattr(row, metric)) is not None]
            for shift in find([v for _, v in series]):
                row = series[shift.index][0]
                found.append(
                    ChangePoint(
                        endpoint_id=endpoint_id, profile_name=profile, metric=metric, run_id=row.id,
                        at=row.finished_at or row.created_at, before=shift.before, after=shift.after,
                        change_pct=shift.change_pct, p_value=shift.p_value,
                        synthetic=row.source == RunSource.synthetic.value, found_at=now, location=location,
                    )
                )  # fmt: skip
    session.add_all(found)
    await session.flush()
    return [c for c in found if (c.metric, c.run_id) not in before]


async def listing(
    session: AsyncSession, *, endpoint_id: int, profile: str | None = None
) -> list[ChangePointRead]:
    query = select(ChangePoint).where(ChangePoint.endpoint_id == endpoint_id)
    if profile is not None:
        query = query.where(ChangePoint.profile_name == profile)
    points = (await session.scalars(query.order_by(ChangePoint.at, ChangePoint.metric))).all()
    return [to_read(c) for c in points]


def to_read(point: ChangePoint) -> ChangePointRead:
    worse = (point.change_pct < 0) == (point.metric in HIGHER_IS_BETTER)
    return ChangePointRead(
        endpoint_id=point.endpoint_id, profile=point.profile_name, metric=point.metric,
        label=SERIES.get(point.metric, point.metric), run_id=point.run_id, at=point.at, before=point.before,
        after=point.after, change_pct=point.change_pct, p_value=point.p_value, synthetic=point.synthetic,
        direction="worse" if worse else "better", location=point.location,
    )  # fmt: skip
