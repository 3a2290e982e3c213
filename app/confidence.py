"""How sure a figure is: whether two sets of requests differ, and by how much.

A difference between two steps (two endpoints, two runs, two periods) is judged from their
per-request samples: the change of a statistic (the median, the SLO's percentile) from A to B as
a share of A, with a percentile-bootstrap confidence interval (scipy.stats.bootstrap, requests
resampled within each side). The headline figures of one comparison form a family: their
intervals are Bonferroni-adjusted so that together they hold at 95 % (with four figures, each
at 98.75 %), and "no significant difference" is then wrong at most one time in twenty for the
whole comparison, not for each figure. A figure whose interval excludes zero is significant.

A run is itself one draw: an unchanged endpoint measured again moves by a few percent (the
machine, the network, the server's state), and resampling one run's requests cannot see that. So
each side's statistic carries its run-to-run spread (a relative standard deviation, `Spread`):
measured from the endpoint's recent history of the same figure at the same load, else from the
step's repeat trials, else assumed (RUN_SPREAD_ASSUMED, and the comparison says so). Each bootstrap
replicate of log(B / A) is given a run offset for each side drawn from normal distributions of
those spreads, a two-level (hierarchical) bootstrap whose upper level is parametric, and the
interval is read from the percentiles of the result. pyperf compares runs of separate processes
for the same reason (one process under-states the variation between processes); asv declares a
step only beyond a factor as well as significant.

A tail statistic needs requests beyond it: the p99 of 200 requests rests on two. A statistic is
compared only where each side has at least MIN_TAIL requests beyond it (p99: 1,000 requests);
else the figure says "too few requests to tell"."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from pydantic import BaseModel, Field, computed_field
from scipy import stats

CONFIDENCE = 0.95  # the whole comparison's
RESAMPLES = 1000
MAX_PER_SIDE = 3000  # a larger side is thinned at random (seeded) before resampling
OFFSETS = 10  # run offsets drawn for each bootstrap replicate
MIN_TAIL = 10  # requests beyond a statistic, on each side, before it is compared
SEED = 20_21
# A statistic's run-to-run spread where it has not been measured: 100 pairs of steps on two
# identical simulators (the busy 2-core CI machine) moved TTFT p50 by 2.3 % (SD of the pair's
# change), 1.6 % a run; real endpoints move more, which their history then measures.
RUN_SPREAD_ASSUMED = 0.015
HISTORY_RUNS = 6  # runs before the spread is read from history (five changes between them)
TRIALS_NEEDED = 3  # trials of a step before its spread is read from them


class Spread(BaseModel):
    """How much one statistic moves from one run of an unchanged endpoint to the next."""

    value: float = Field(description="relative standard deviation of the statistic between runs")
    source: str = Field(description="history | trials | assumed | known (given by the caller)")
    runs: int = Field(default=0, description="the runs or trials it was measured from")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        if self.source == "known":
            return f"{self.value * 100:.1f} % known"
        if self.source == "assumed":
            return f"{self.value * 100:.1f} % assumed (not yet measured: {HISTORY_RUNS} runs or {TRIALS_NEEDED} trials measure it)"
        return f"{self.value * 100:.1f} % from {self.runs} {'runs' if self.source == 'history' else 'trials'}"


ASSUMED = Spread(value=RUN_SPREAD_ASSUMED, source="assumed")


def spread_of(values: Sequence[float], source: str) -> Spread | None:
    """The run-to-run spread of a statistic from its values in consecutive runs (history, oldest
    first) or in a step's trials. History reads the changes between consecutive runs, robustly
    (the median absolute change / (0.6745 x sqrt 2)), so that a step in the series (a change
    point) does not count as spread; trials, measured minutes apart, use their standard deviation.
    None below the runs or trials needed."""
    x = np.log(np.asarray([v for v in values if v is not None and v > 0], dtype=float))
    if source == "history":
        if x.size < HISTORY_RUNS:
            return None
        value = float(np.median(np.abs(np.diff(x)))) / (0.6745 * math.sqrt(2.0))
    else:
        if x.size < TRIALS_NEEDED:
            return None
        value = float(x.std(ddof=1))
    return Spread(value=value, source=source, runs=int(x.size))


class Difference(BaseModel):
    """One figure of two sides: B against A."""

    metric: str  # ttft_ms | tpot_ms | e2e_ms
    statistic: str  # p50 | p90 | p95 | p99
    label: str  # "TTFT p50"
    a: float | None = None
    b: float | None = None
    n_a: int = 0
    n_b: int = 0
    change_pct: float | None = Field(default=None, description="(B / A - 1) x 100")
    low_pct: float | None = None
    high_pct: float | None = None
    confidence: float = Field(default=CONFIDENCE, description="this figure's interval level (Bonferroni)")
    family_confidence: float = Field(default=CONFIDENCE, description="the comparison's figures together")
    significant: bool | None = Field(default=None, description="null: too few requests to tell")
    reason: str | None = None  # why it could not be told
    lower_is_better: bool = True
    spread_a: Spread | None = Field(default=None, description="A's run-to-run spread in the interval")
    spread_b: Spread | None = Field(default=None, description="B's run-to-run spread in the interval")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> str:
        """better | worse | same | unknown (B against A)."""
        if self.significant is None or self.change_pct is None:
            return "unknown"
        if not self.significant:
            return "same"
        return "better" if (self.change_pct < 0) == self.lower_is_better else "worse"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        """ "23 % lower TTFT p50 (95 % CI 19-27 %)", or "no significant difference in TTFT p50
        (-2 %, 95 % CI -6 to +2 %)", or why it cannot be told."""
        level = f"{self.family_confidence * 100:g} % CI"
        if (
            self.significant is None
            or self.change_pct is None
            or self.low_pct is None
            or self.high_pct is None
        ):
            return f"{self.label}: {self.reason or 'not measured on both sides'}"
        if not self.significant:
            return (
                f"no significant difference in {self.label} ({self.change_pct:+.1f} %, "
                f"{level} {self.low_pct:+.1f} to {self.high_pct:+.1f} %)"
            )
        word = "lower" if self.change_pct < 0 else "higher"
        low, high = sorted((abs(self.low_pct), abs(self.high_pct)))
        return f"{abs(self.change_pct):.1f} % {word} {self.label} ({level} {low:.1f}-{high:.1f} %)"


class Family(BaseModel):
    """B against A at one load level: the headline figures, whose intervals hold together."""

    load: float | None = Field(
        default=None, description="the load level compared (concurrency or requests/s)"
    )
    load_kind: str | None = None
    confidence: float = Field(default=CONFIDENCE, description="the intervals hold together at this level")
    differences: list[Difference] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="why nothing could be compared")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spread_note(self) -> str | None:
        """Where the run-to-run spread in the intervals came from, in words."""
        told = [
            d
            for d in self.differences
            if d.significant is not None and d.spread_a is not None and d.spread_b is not None
        ]
        if not told:
            return None
        parts = []
        for side in ("A", "B"):
            measured: dict[str, list[str]] = {}
            assumed: list[str] = []
            for d in told:
                spread = d.spread_a if side == "A" else d.spread_b
                assert spread is not None
                if spread.source == "assumed":
                    assumed.append(d.label)
                else:
                    how = f"from {spread.runs} {'runs' if spread.source == 'history' else spread.source}"
                    measured.setdefault(how, []).append(f"{d.label} {spread.value * 100:.1f} %")
            said = [f"{how}: {', '.join(figures)}" for how, figures in measured.items()]
            if assumed:
                said.append(f"{RUN_SPREAD_ASSUMED * 100:g} % assumed for {', '.join(assumed)}")
            parts.append(f"{side} {'; '.join(said)}")
        return "run-to-run spread, " + " | ".join(parts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def significant(self) -> bool:
        return any(d.significant for d in self.differences)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def headline(self) -> str:
        if self.reason is not None:
            return self.reason
        told = [d for d in self.differences if d.significant is not None]
        if not told:
            reasons = [d.reason for d in self.differences if d.reason]
            return reasons[0] if reasons else "too few requests to tell"
        found = [d.text for d in told if d.significant]
        return "; ".join(found) if found else "no significant difference"


class Comparison(Family):
    """Run B against run A, from their requests' samples."""

    run_a: int
    run_b: int


class PeriodComparison(Family):
    """Period B against period A on one endpoint and profile. Each run is one value of each figure
    (its step's statistic at the compared load); the figure compared is the median over the
    period's runs, with a bootstrap over runs, which carry their run-to-run spread themselves."""

    endpoint_id: int
    profile: str
    a_since: datetime
    a_until: datetime
    b_since: datetime
    b_until: datetime
    runs_a: int = 0
    runs_b: int = 0


def _quantile_of(statistic: str) -> float:
    return float(statistic.removeprefix("p")) / 100.0


def _thin(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return values if values.size <= MAX_PER_SIDE else rng.choice(values, MAX_PER_SIDE, replace=False)


def difference(
    metric: str,
    statistic: str,
    label: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    family_confidence: float = CONFIDENCE,
    lower_is_better: bool = True,
    spread_a: Spread | None = None,
    spread_b: Spread | None = None,
    need: int | None = None,
    seed: int = SEED,
) -> Difference:
    """B's `statistic` against A's, with its interval at `confidence`: from the requests alone
    when no spread is given, else with each side's run-to-run spread (see the module's text)."""
    q = _quantile_of(statistic)
    xa = np.asarray([v for v in a if v is not None and math.isfinite(v)], dtype=float)
    xb = np.asarray([v for v in b if v is not None and math.isfinite(v)], dtype=float)
    found = Difference(
        metric=metric, statistic=statistic, label=label, n_a=int(xa.size), n_b=int(xb.size),
        confidence=confidence, family_confidence=family_confidence, lower_is_better=lower_is_better,
        spread_a=spread_a, spread_b=spread_b,
    )  # fmt: skip
    if xa.size:
        found.a = float(np.quantile(xa, q))
    if xb.size:
        found.b = float(np.quantile(xb, q))
    need_given = need is not None
    need = need if need is not None else requests_needed(statistic)
    if min(xa.size, xb.size) < need:
        found.reason = f"too few {'runs' if need_given else 'requests'} to tell ({min(xa.size, xb.size)}; {statistic} needs {need} a side)"
        return found
    if not found.a or found.a <= 0:
        found.reason = f"A's {statistic} is zero"
        return found
    rng = np.random.default_rng(seed)
    xa, xb = _thin(xa, rng), _thin(xb, rng)

    def change(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.quantile(y, q, axis=axis) / np.quantile(x, q, axis=axis) - 1.0)

    result = stats.bootstrap(
        (xa, xb), change, vectorized=True, paired=False, n_resamples=RESAMPLES, batch=100,
        method="percentile", confidence_level=confidence, rng=rng,
    )  # fmt: skip
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    offset = math.hypot(spread_a.value if spread_a else 0.0, spread_b.value if spread_b else 0.0)
    if offset > 0:
        replicates = np.repeat(np.log1p(np.asarray(result.bootstrap_distribution, dtype=float)), OFFSETS)
        replicates = replicates + rng.normal(0.0, offset, replicates.size)
        tail_share = (1.0 - confidence) / 2.0
        low, high = (float(v) for v in np.expm1(np.quantile(replicates, [tail_share, 1.0 - tail_share])))
    found.change_pct = (found.b / found.a - 1.0) * 100.0 if found.b is not None else None
    found.low_pct, found.high_pct = low * 100.0, high * 100.0
    found.significant = not (low <= 0.0 <= high)
    return found


def requests_needed(statistic: str) -> int:
    """Requests a side before `statistic` is compared: MIN_TAIL beyond it."""
    q = _quantile_of(statistic)
    tail = min(q, 1.0 - q)
    return math.ceil(MIN_TAIL / tail) if tail > 0 else MIN_TAIL


def family_level(count: int, confidence: float = CONFIDENCE) -> float:
    """Each figure's level so that `count` intervals hold together at `confidence` (Bonferroni)."""
    return 1.0 - (1.0 - confidence) / max(1, count)


def mean_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float] | None:
    """The mean of a few trials and its t-based interval: (mean, low, high); None under two."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    mean = float(x.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half
