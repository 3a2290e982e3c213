"""Whether two runs differ, figure by figure, from their per-request samples (app/confidence.py):
the compare page (each endpoint against the first), the run page (against the run before it on
the same endpoint and profile) and their JSON twins.

Two runs are compared at one load level both measured: the level of A's operating point where B
measured it too, else the heaviest level both completed requests at. The headline figures are
TTFT and TPOT at the median and at the SLO's percentile. Each side's run-to-run spread of each
figure comes from its endpoint's recent history at that load (the runs up to and including it),
else from the step's repeat trials, else it is assumed (app/confidence.py says how it is used)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.confidence import (
    ASSUMED,
    HISTORY_RUNS,
    Comparison,
    Difference,
    PeriodComparison,
    Spread,
    difference,
    family_level,
    requests_needed,
    spread_of,
)
from app.domain import percentile_key
from app.errors import ValidationFailed
from app.models import RequestSample, Run, RunStatus, RunStep, measured
from app.probe.stats import tpot_ms
from app.services import runs
from app.services.records import sample_from_row
from app.summary import StepSummary

MAX_SAMPLES = 20_000  # per step read back
HISTORY_READ = 20  # runs read for a side's run-to-run spread
PERIOD_RUNS = 5  # runs a period needs before it is compared
PERIOD_READ = 500  # runs read per period (the newest)
PERIOD_DAYS = 7  # the endpoint page: the last week against the week before
CACHED = 256  # comparisons kept in memory (finished runs never change)


_cache: OrderedDict[tuple[int, int, int, int, str], Comparison] = OrderedDict()


def forget() -> None:
    """Drop the cached comparisons: they are keyed by run id, which names a run only within one
    database (an app opening its database starts with none)."""
    _cache.clear()


Spreads = dict[tuple[str, str], Spread]  # (metric, statistic) -> its run-to-run spread
FIGURES = [("ttft_ms", "TTFT", 0), ("tpot_ms", "TPOT", 1)]


def _statistics(percentile: str) -> list[str]:
    return ["p50"] if percentile == "p50" else ["p50", percentile]


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


class StepValues:
    """A step's TTFT and TPOT per completed, measured request, with the trial each came from."""

    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.tpot: list[float] = []
        self.ttft_trial: list[int] = []
        self.tpot_trial: list[int] = []

    def pair(self) -> tuple[list[float], list[float]]:
        return self.ttft, self.tpot

    def trial_spreads(self, percentile: str) -> Spreads:
        """Each figure's spread across the step's repeat trials (none under TRIALS_NEEDED)."""
        found: Spreads = {}
        for metric, _, k in FIGURES:
            values, trials = (self.ttft, self.ttft_trial) if k == 0 else (self.tpot, self.tpot_trial)
            by_trial: dict[int, list[float]] = {}
            for value, trial in zip(values, trials, strict=True):
                by_trial.setdefault(trial, []).append(value)
            for stat in _statistics(percentile):
                q = float(stat.removeprefix("p"))
                per_trial = [float(np.percentile(v, q)) for _, v in sorted(by_trial.items()) if v]
                if (spread := spread_of(per_trial, "trials")) is not None:
                    found[(metric, stat)] = spread
        return found


async def _values(session: AsyncSession, run_id: int, step_index: int) -> StepValues:
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
    found = StepValues()
    for row in rows:
        sample = sample_from_row(row, None)
        trial = row.trial or 0
        if (t := sample.ttft_ms) is not None:
            found.ttft.append(t)
            found.ttft_trial.append(trial)
        if (p := tpot_ms(sample)) is not None:
            found.tpot.append(p)
            found.tpot_trial.append(trial)
    return found


async def history_spreads(session: AsyncSession, run: Run, load: float, percentile: str) -> Spreads:
    """Each figure's run-to-run spread over the endpoint's measured runs of this profile up to
    and including `run`, at this load (none under HISTORY_RUNS runs)."""
    ids = list(
        (
            await session.scalars(
                select(Run.id)
                .where(
                    Run.endpoint_id == run.endpoint_id,
                    Run.profile_name == run.profile_name,
                    measured(),
                    Run.created_at <= run.created_at,
                )
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(HISTORY_READ)
            )
        ).all()
    )
    if len(ids) < HISTORY_RUNS:
        return {}
    steps = await _steps(session, ids)
    series: dict[tuple[str, str], list[float]] = {}
    for run_id in reversed(ids):  # oldest first
        at = [step for step in steps[run_id] if step.load == load and step.requests.completed > 0]
        if not at:
            continue
        for metric, _, _ in FIGURES:
            distribution = at[0].ttft_ms if metric == "ttft_ms" else at[0].tpot_ms
            for stat in _statistics(percentile):
                if (value := getattr(distribution, stat, None)) is not None:
                    series.setdefault((metric, stat), []).append(value)
    return {key: spread for key, values in series.items() if (spread := spread_of(values, "history"))}


async def spreads(
    session: AsyncSession, run: Run, load: float, values: StepValues, percentile: str
) -> Spreads:
    """A side's spreads: history where it has enough runs, else the step's trials (figures
    neither measures are assumed when compared)."""
    return {**values.trial_spreads(percentile), **await history_spreads(session, run, load, percentile)}


def _differences(
    a: tuple[list[float], list[float]],
    b: tuple[list[float], list[float]],
    percentile: str,
    spreads_a: Spreads | None = None,
    spreads_b: Spreads | None = None,
) -> list[Difference]:
    """The headline figures of B against A; a figure whose spread is not given is assumed. The
    family is the figures with enough requests to be told (a p99 of 300 requests is not one)."""
    statistics = _statistics(percentile)
    told = sum(
        min(len(a[k]), len(b[k])) >= requests_needed(stat) for _, _, k in FIGURES for stat in statistics
    )
    level = family_level(told)
    found = []
    for metric, name, k in FIGURES:
        for stat in statistics:
            spread_a = (spreads_a or {}).get((metric, stat), ASSUMED)
            spread_b = (spreads_b or {}).get((metric, stat), ASSUMED)
            label = f"{name} {stat}"
            found.append(
                difference(
                    metric, stat, label, a[k], b[k], confidence=level, spread_a=spread_a, spread_b=spread_b
                )
            )
    return found


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
    spreads_a = await spreads(session, a, found.load, values_a, percentile)
    spreads_b = await spreads(session, b, found.load, values_b, percentile)
    found.differences = await asyncio.to_thread(
        _differences, values_a.pair(), values_b.pair(), percentile, spreads_a, spreads_b
    )
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
                measured(),
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


async def _period_runs(
    session: AsyncSession, endpoint_id: int, profile: str, since: datetime, until: datetime
) -> list[Run]:
    return list(
        (
            await session.scalars(
                select(Run)
                .where(
                    Run.endpoint_id == endpoint_id,
                    Run.profile_name == profile,
                    measured(),
                    Run.created_at >= since,
                    Run.created_at < until,
                )
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(PERIOD_READ)
            )
        ).all()
    )


async def compare_periods(
    session: AsyncSession,
    *,
    endpoint_id: int,
    profile: str,
    a: tuple[datetime, datetime],
    b: tuple[datetime, datetime],
) -> PeriodComparison:
    """Period B against period A: each measured run of the profile is one value of each figure
    (TTFT and TPOT at the median and the SLO's percentile, from its step at the compared load: B's
    newest operating load); the median over each period's runs is compared with a bootstrap over
    runs (at least PERIOD_RUNS a side)."""
    found = PeriodComparison(
        endpoint_id=endpoint_id, profile=profile, a_since=a[0], a_until=a[1], b_since=b[0], b_until=b[1]
    )
    runs_a = await _period_runs(session, endpoint_id, profile, *a)
    runs_b = await _period_runs(session, endpoint_id, profile, *b)
    found.runs_a, found.runs_b = len(runs_a), len(runs_b)
    points = [r.scorecard.operating_point for r in runs_b + runs_a if r.scorecard is not None]
    point = next((p for p in points if p is not None), None)
    if point is None:
        found.reason = "no measured run with an operating point in either period"
        return found
    found.load, found.load_kind = point.load, point.load_kind
    newest = runs_b[0] if runs_b else runs_a[0]
    pct = percentile_key(newest.profile_snapshot.slo_percentile if newest.profile_snapshot else None)
    statistics = _statistics(pct)
    steps = await _steps(session, [r.id for r in runs_a + runs_b])

    def values(side: list[Run], metric: str, stat: str) -> list[float]:
        out = []
        for run in side:
            at = [s for s in steps[run.id] if s.load == point.load and s.requests.completed > 0]
            if at:
                distribution = at[0].ttft_ms if metric == "ttft_ms" else at[0].tpot_ms
                if (v := getattr(distribution, stat, None)) is not None:
                    out.append(float(v))
        return out

    level = family_level(len(FIGURES) * len(statistics))
    for metric, name, _ in FIGURES:
        for stat in statistics:
            one = difference(
                metric, "p50", f"{name} {stat}", values(runs_a, metric, stat), values(runs_b, metric, stat),
                confidence=level, need=PERIOD_RUNS,
            )  # fmt: skip
            one.statistic = stat
            found.differences.append(one)
    return found


async def last_week(
    session: AsyncSession, *, endpoint_id: int, profile: str, now: datetime
) -> PeriodComparison:
    """The endpoint page's: the last PERIOD_DAYS against the PERIOD_DAYS before."""
    week = timedelta(days=PERIOD_DAYS)
    return await compare_periods(
        session, endpoint_id=endpoint_id, profile=profile, a=(now - 2 * week, now - week), b=(now - week, now)
    )
