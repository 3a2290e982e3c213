"""Whether two runs differ, figure by figure, from their per-request samples (app/confidence.py):
the compare page (each endpoint against the first), the run page (against the run before it on
the same endpoint and profile) and their JSON twins.

Two runs are compared at one load level both measured: the level of A's operating point where B
measured it too, else the heaviest level both completed requests at. The headline figures are
TTFT and TPOT at the median and at the SLO's percentile."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.confidence import Comparison, Difference, difference, family_level
from app.domain import RunSource, percentile_key
from app.errors import ValidationFailed
from app.models import RequestSample, Run, RunStatus, RunStep
from app.probe.stats import tpot_ms
from app.services import runs
from app.services.records import sample_from_row
from app.summary import StepSummary

MAX_SAMPLES = 20_000  # per step read back
CACHED = 256  # comparisons kept in memory (finished runs never change)


_cache: OrderedDict[tuple[int, int, int, int, str], Comparison] = OrderedDict()


def matched_steps(
    a: list[StepSummary], b: list[StepSummary], point_step: int | None
) -> tuple[int, int] | None:
    """(A's step index, B's) at one load level both measured; None when they share none."""

    def done(step: StepSummary) -> bool:
        return step.requests.completed > 0

    by_load = {step.load: j for j, step in enumerate(b) if done(step)}
    if point_step is not None and 0 <= point_step < len(a) and a[point_step].load in by_load:
        return point_step, by_load[a[point_step].load]
    common = [(step.load, i) for i, step in enumerate(a) if done(step) and step.load in by_load]
    if not common:
        return None
    load, i = max(common)
    return i, by_load[load]


async def _values(session: AsyncSession, run_id: int, step_index: int) -> tuple[list[float], list[float]]:
    """TTFT and TPOT of a step's completed, measured requests."""
    rows = (
        await session.scalars(
            select(RequestSample)
            .where(
                RequestSample.run_id == run_id,
                RequestSample.step_index == step_index,
                RequestSample.warmup.is_(False),
                RequestSample.error_kind.is_(None),
            )
            .limit(MAX_SAMPLES)
        )
    ).all()
    ttft: list[float] = []
    tpot: list[float] = []
    for row in rows:
        sample = sample_from_row(row, None)
        if (t := sample.ttft_ms) is not None:
            ttft.append(t)
        if (p := tpot_ms(sample)) is not None:
            tpot.append(p)
    return ttft, tpot


def _differences(
    a: tuple[list[float], list[float]], b: tuple[list[float], list[float]], percentile: str
) -> list[Difference]:
    figures = [("ttft_ms", "TTFT", 0), ("tpot_ms", "TPOT", 1)]
    statistics = ["p50"] if percentile == "p50" else ["p50", percentile]
    level = family_level(len(figures) * len(statistics))
    return [
        difference(metric, stat, f"{name} {stat}", a[k], b[k], confidence=level)
        for metric, name, k in figures
        for stat in statistics
    ]


async def compare_runs(session: AsyncSession, a: Run, b: Run, *, percentile: str = "p99") -> Comparison:
    """B against A (both finished runs)."""
    found = Comparison(run_a=a.id, run_b=b.id)
    steps = await _steps(session, [a.id, b.id])
    point = a.scorecard.operating_point if a.scorecard is not None else None
    pair = matched_steps(steps[a.id], steps[b.id], point.step_index if point is not None else None)
    if pair is None:
        found.reason = "the runs share no load level with completed requests"
        return found
    i, j = pair
    key = (a.id, b.id, i, j, percentile)
    if (cached := _cache.get(key)) is not None:
        _cache.move_to_end(key)
        return cached
    found.load, found.load_kind = steps[a.id][i].load, steps[a.id][i].load_kind
    values_a = await _values(session, a.id, i)
    values_b = await _values(session, b.id, j)
    found.differences = await asyncio.to_thread(_differences, values_a, values_b, percentile)
    if not {a.status, b.status} & {RunStatus.queued.value, RunStatus.running.value}:  # finished: fixed
        _cache[key] = found
        if len(_cache) > CACHED:
            _cache.popitem(last=False)
    return found


async def _steps(session: AsyncSession, run_ids: list[int]) -> dict[int, list[StepSummary]]:
    rows = (
        await session.execute(
            select(RunStep.run_id, RunStep.step_index, RunStep.summary)
            .where(RunStep.run_id.in_(run_ids))
            .order_by(RunStep.run_id, RunStep.step_index)
        )
    ).all()
    found: dict[int, list[StepSummary]] = {run_id: [] for run_id in run_ids}
    for run_id, index, summary in rows:
        steps = found[run_id]
        while len(steps) < index:  # a step index never written (an old run): keep positions
            steps.append(StepSummary())
        steps.append(summary)
    return found


async def previous_run(session: AsyncSession, run: Run) -> Run | None:
    """The run before this one on the same endpoint and profile that succeeded (measured)."""
    return (
        await session.scalars(
            select(Run)
            .where(
                Run.endpoint_id == run.endpoint_id,
                Run.profile_name == run.profile_name,
                Run.status == RunStatus.succeeded.value,
                Run.source != RunSource.synthetic.value,
                Run.created_at < run.created_at,
            )
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(1)
        )
    ).first()


async def against(session: AsyncSession, run_id: int, other_id: int | None = None) -> Comparison | None:
    """This run (B) against `other_id` (A), by default the run before it on its endpoint and
    profile; None when there is no such run."""
    run = await runs.get(session, run_id)
    if other_id is not None:
        other: Run | None = await runs.get(session, other_id)
    else:
        other = await previous_run(session, run)
    if other is None:
        return None
    if other.id == run.id:
        raise ValidationFailed("a run compared against itself")
    pct = percentile_key(
        other.profile_snapshot.slo_percentile if other.profile_snapshot is not None else None
    )
    return await compare_runs(session, other, run, percentile=pct)
