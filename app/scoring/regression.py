"""Regressions: a run's figures against the endpoint's baseline on the same profile.

Pure functions, no I/O. The baseline of a figure is the median of the last N good runs; the
noise is the baseline's own run-to-run spread (1.4826 x the median absolute deviation, a
standard deviation that one wild run cannot inflate). A figure regressed when it moved the wrong
way by more than both the relative threshold and three times that noise: a noisy endpoint must
move further before anyone is paged, a steady one is held to the threshold. The error rate is
judged in percentage points (a relative change of 0 % is undefined).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import Field

from app.environment import Record

NOISE_K = 3.0  # how many noise sigmas a change must exceed
MAD_TO_SIGMA = 1.4826  # a normal distribution's sigma from its median absolute deviation
MIN_BASELINE = 2  # runs a baseline needs before anything is judged


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    unit: str
    better: Literal["lower", "higher"]
    scale: Literal["relative", "points"] = "relative"


FIGURES: tuple[Figure, ...] = (
    Figure("ttft_ms", "TTFT", "ms", "lower"),
    Figure("tpot_ms", "TPOT", "ms", "lower"),
    Figure("output_tokens_per_s_at_slo", "output tokens/s at the SLO", "tok/s", "higher"),
    Figure("cost_per_million_tokens_at_slo", "cost per million tokens at the SLO", "$", "lower"),
    Figure("error_rate", "error rate", "%", "lower", "points"),
)
BY_KEY = {figure.key: figure for figure in FIGURES}


@dataclass(frozen=True)
class Change:
    """One figure of one run against its baseline."""

    metric: str
    baseline: float
    value: float
    change_pct: float | None  # relative change, signed (None for a zero baseline)
    change_points: float | None  # for the error rate: percentage points
    noise: float  # the baseline's robust sigma, in the figure's unit
    limit: float  # the change (in the figure's unit) beyond which it counts
    verdict: Literal["regression", "improvement", "steady"]
    baseline_runs: int


class AlertDetail(Record):
    """What an alert keeps besides its columns: for a regression or recovery, the `Change` with
    the load and percentile compared and the baseline's runs; for down, the failed runs and the
    last error (masked); for up, nothing."""

    metric: str | None = None
    baseline: float | None = None
    value: float | None = None
    change_pct: float | None = None
    change_points: float | None = None
    noise: float | None = None
    limit: float | None = None
    verdict: str | None = None
    baseline_runs: int | None = None
    load: str | None = None  # the step compared, as its label
    percentile: str | None = None
    baseline_run_ids: list[int] = Field(default_factory=list)
    failed_runs: int | None = None  # down
    error: str | None = None  # down: the last run's error, masked
    failing_locations: list[str] = Field(default_factory=list)  # down: where it failed N in a row
    locations: int | None = None  # down: how many locations probe the endpoint

    @classmethod
    def of(
        cls, change: Change, *, load: str | None, percentile: str, baseline_run_ids: list[int]
    ) -> AlertDetail:
        return cls(**asdict(change), load=load, percentile=percentile, baseline_run_ids=baseline_run_ids)


def robust_sigma(values: Sequence[float]) -> float:
    centre = statistics.median(values)
    return MAD_TO_SIGMA * statistics.median([abs(v - centre) for v in values])


def compare(
    figure: Figure, value: float, baseline: Sequence[float], *, threshold_pct: float, points: float
) -> Change | None:
    """The verdict on one figure, or None without a baseline to judge by. `threshold_pct`
    applies to relative figures, `points` (percentage points) to the error rate."""
    if len(baseline) < MIN_BASELINE:
        return None
    centre = statistics.median(baseline)
    noise = robust_sigma(baseline)
    if figure.scale == "points":
        limit = max(points / 100.0, NOISE_K * noise)
    else:
        limit = max(threshold_pct / 100.0 * abs(centre), NOISE_K * noise)
    delta = value - centre
    worse = delta > limit if figure.better == "lower" else -delta > limit
    better = -delta > limit if figure.better == "lower" else delta > limit
    verdict: Literal["regression", "improvement", "steady"] = (
        "regression" if worse else "improvement" if better else "steady"
    )
    return Change(
        metric=figure.key,
        baseline=centre,
        value=value,
        change_pct=(delta / abs(centre) * 100.0) if centre else None,
        change_points=delta * 100.0 if figure.scale == "points" else None,
        noise=noise,
        limit=limit,
        verdict=verdict,
        baseline_runs=len(baseline),
    )


def judge(
    current: Mapping[str, float | None],
    baseline: Sequence[Mapping[str, float | None]],
    *,
    threshold_pct: float,
    error_points: float,
) -> list[Change]:
    """Every figure the run and at least MIN_BASELINE baseline runs have, judged."""
    changes = []
    for figure in FIGURES:
        value = current.get(figure.key)
        history = [float(v) for run in baseline if (v := run.get(figure.key)) is not None]
        if value is None:
            continue
        change = compare(figure, float(value), history, threshold_pct=threshold_pct, points=error_points)
        if change is not None:
            changes.append(change)
    return changes


def reference_load(operating_loads: Sequence[float | None], lightest: float | None) -> float | None:
    """The load at which latency is compared: where the baseline's runs operate (the most
    common operating load; the lighter on a tie), else the lightest step."""
    loads = [load for load in operating_loads if load is not None]
    if not loads:
        return lightest
    counts: dict[float, int] = {}
    for load in loads:
        counts[load] = counts.get(load, 0) + 1
    return min(counts, key=lambda load: (-counts[load], load))


def describe(change: Change, *, at_load: str | None = None) -> str:
    """A one-line account of a change, for pages and messages."""
    figure = BY_KEY[change.metric]
    title = figure.title + (f" at {at_load}" if at_load and figure.key in ("ttft_ms", "tpot_ms") else "")
    if figure.scale == "points":
        return (
            f"{title} {change.baseline * 100:.2f} % → {change.value * 100:.2f} % "
            f"({change.change_points or 0.0:+.2f} points)"
        )
    moved = f" ({change.change_pct:+.1f} %)" if change.change_pct is not None else ""
    return f"{title} {_num(change.baseline)} → {_num(change.value)} {figure.unit}{moved}"


def _num(value: float) -> str:
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
