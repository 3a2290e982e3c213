"""The step summary, the scorecard and the run summary: one type each, serialised alike by
`smartbench probe --json`, `GET /api/v1/runs/{id}` and the run page (DESIGN.md, "Run summary
JSON"). The runs table keeps the step summaries and the scorecard as JSON, mapped to these types
(app/models.Typed).

The probe builds a StepSummary from its samples (app/probe/stats.py); the database keeps its
JSON; whoever reads it back validates it into the same type, so every reader sees the same keys,
including the derived `load` and `load_kind`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, computed_field, field_serializer

from app.domain import (
    DEFAULT_PERCENTILE,
    SLO,
    load_kind,
    load_label,
    load_of,
    percentile_key,
)
from app.environment import RunEnvironment, RunProgress
from app.security.redact import shown
from app.snapshot import CostInputs, EndpointSnapshot, ProfileSnapshot


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Distribution(_Model):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None


class Histogram(_Model):
    """Counts per bin: bin i holds values in [edges[i], edges[i + 1])."""

    edges: list[float] = Field(default_factory=list)
    counts: list[int] = Field(default_factory=list)

    @classmethod
    def of(cls, values: Sequence[float], bins: int = 20) -> Histogram:
        if not len(values):
            return cls()
        counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
        return cls(edges=[round(float(e), 3) for e in edges], counts=[int(c) for c in counts])


class TurnStats(_Model):
    """A multi-turn step's requests at one turn index (1: a session's first request)."""

    turn: int
    requests: int
    ttft_ms: Distribution = Field(default_factory=Distribution)
    input_tokens_mean: float | None = None
    cached_tokens_mean: float | None = None


class WorkloadStats(_Model):
    """What a step's traffic was and what the server made of it (DESIGN.md, "Workloads"):
    prompt-cache hits as the usage reported them, as the workload expected them and (in the
    telemetry) as the server's counters say; TTFT with and without a hit; per turn; how late
    requests left against their schedule."""

    kind: str = "synthetic"
    context_tokens: int | None = None  # long_context: the prompt length this step sent
    input_histogram: Histogram = Field(default_factory=Histogram)
    output_histogram: Histogram = Field(default_factory=Histogram)
    cache_reported: int = 0  # requests whose usage said how many prompt tokens were cached
    cache_hit_rate: float | None = None  # cached prompt tokens / prompt tokens, from usage
    expected_hit_rate: float | None = None  # what the workload's sharing allows, same basis
    cache_hit_requests: int = 0
    ttft_hit_ms: Distribution = Field(default_factory=Distribution)
    ttft_miss_ms: Distribution = Field(default_factory=Distribution)
    sessions: int | None = None
    by_turn: list[TurnStats] = Field(default_factory=list)
    dispatch_lag_ms: Distribution = Field(default_factory=Distribution)


class Requests(_Model):
    sent: int = 0
    completed: int = 0
    failed: int = 0
    errors: dict[str, int] = Field(default_factory=dict)


class StepSLO(_Model):
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float = DEFAULT_PERCENTILE
    met: bool = False
    good_requests: int = 0


class Quality(_Model):
    client_bound: bool = False
    client_notes: list[str] = Field(default_factory=list)
    client_cpu_pct: float | None = None
    osl_mismatch_pct: float | None = None
    osl_mismatch_flag: bool = False
    usage_tokenizer_diff_pct: float | None = None
    error_rate: float | None = None

    def reasons(self) -> list[str]:
        """Why a step's numbers are not a clean measurement of the server (empty: they are)."""
        reasons: list[str] = []
        if self.client_bound:
            notes = [n for n in self.client_notes if not str(n).startswith("probe CPU")]
            reasons.append("client-bound" + (f" ({'; '.join(notes)})" if notes else ""))
        if self.osl_mismatch_flag:
            pct = self.osl_mismatch_pct
            reasons.append(
                "output length off by " + (f"{pct:+.1f} %" if pct is not None else "more than 5 %")
            )
        return reasons


class Telemetry(_Model):
    """What the server's own metrics said during a step (app/probe/telemetry.py)."""

    source: str | None = None
    scrapes: int = 0
    window_s: float | None = None
    running_mean: float | None = None
    running_max: float | None = None
    waiting_mean: float | None = None
    waiting_max: float | None = None
    kv_usage_mean: float | None = None  # 0..1
    kv_usage_max: float | None = None
    prefix_hit_rate: float | None = None
    preemptions: float | None = None
    server_ttft_ms: float | None = None  # the server's own mean, from its histogram
    server_itl_ms: float | None = None
    power_w: float | None = None  # measured mean power over the step, all GPUs
    energy_j: float | None = None
    energy_source: str | None = None  # "energy counter" | "power gauge"
    series: list[list[float | None]] = Field(default_factory=list)  # [t s, running, waiting, kv, watts]


class StepCosts(_Model):
    """Cost and energy at a step's throughput (app/scoring/cost.step_costs)."""

    cost_per_million_output_tokens: float | None = None
    cost_per_million_tokens: float | None = None
    cost_per_million_good_tokens: float | None = None
    cost_per_million_tokens_blended: float | None = None
    tokens_per_joule: float | None = None
    energy_source: str | None = None  # "measured" (the server's DCGM metrics) | "declared" (watts typed in)


class Stop(_Model):
    """Why a step ended early (app/probe/guard.py): the measurement would only have gone on to
    measure a broken state."""

    reason: str  # saturated | errors | ttft
    at_s: float  # seconds into the step
    evidence: str
    skipped_levels: list[float] = Field(default_factory=list)  # the sweep's heavier levels, not run


class SteadyWindow(_Model):
    """Where a step's load was steady (app/probe/steady.py), in seconds from its first send."""

    start_s: float = 0.0
    end_s: float = 0.0
    requests: int = 0  # measured requests sent inside it
    excluded_ramp_up: int = 0  # requests sent before it
    settled_after: int = 0  # of those, the ones MSER-5 cut for unsettled latency
    whole_step: bool = True  # no window could be told apart: the figures are the whole step's
    reason: str | None = None  # why the whole step is used


class WholeStep(_Model):
    """A step's headline figures over all its measured requests, ramp-up and drain included
    (the step's own figures are its steady window's)."""

    duration_s: float = 0.0
    ttft_ms: Distribution = Field(default_factory=Distribution)
    tpot_ms: Distribution = Field(default_factory=Distribution)
    itl_ms: Distribution = Field(default_factory=Distribution)
    e2e_ms: Distribution = Field(default_factory=Distribution)
    output_tokens_per_s: float | None = None
    total_tokens_per_s: float | None = None
    requests_per_s: float | None = None


class TrialFigure(_Model):
    """One headline figure over a step's repeat trials: each trial's value, their mean with a
    t-based 95 % interval, and the coefficient of variation (sample sd / mean)."""

    metric: str  # a distribution ("ttft_ms") or a rate ("output_tokens_per_s")
    stat: str | None = None  # the distribution's statistic ("p99"); None for a rate
    values: list[float] = Field(default_factory=list)
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    cv: float | None = None
    higher_is_better: bool = False  # rates: the conservative end is the low one

    @property
    def conservative(self) -> float | None:
        """The end of the interval that flatters the endpoint least."""
        return self.low if self.higher_is_better else self.high


class Trials(_Model):
    """A step measured several times (a profile's `trials`): its figures are the means."""

    count: int
    cooldown_s: float = 0.0
    confidence: float = 0.95
    method: str = "t"  # t-based intervals over the trials' values
    figures: list[TrialFigure] = Field(default_factory=list)
    windows: list[SteadyWindow] = Field(default_factory=list)  # each trial's steady window

    def figure(self, metric: str, stat: str | None = None) -> TrialFigure | None:
        return next((f for f in self.figures if f.metric == metric and f.stat == stat), None)


class StepSummary(StepCosts):
    concurrency: int | None = None
    request_rate: float | None = None
    duration_s: float = 0.0
    requests: Requests = Field(default_factory=Requests)
    ttft_ms: Distribution = Field(default_factory=Distribution)
    ttfat_ms: Distribution = Field(default_factory=Distribution)
    itl_ms: Distribution = Field(default_factory=Distribution)
    tpot_ms: Distribution = Field(default_factory=Distribution)
    e2e_ms: Distribution = Field(default_factory=Distribution)
    input_tokens: Distribution = Field(default_factory=Distribution)
    output_tokens: Distribution = Field(default_factory=Distribution)
    input_tokens_per_s: float | None = None
    output_tokens_per_s: float | None = None
    total_tokens_per_s: float | None = None
    requests_per_s: float | None = None
    tokens_per_s_per_user: Distribution = Field(default_factory=Distribution)
    goodput_requests_per_s: float | None = None
    good_output_tokens_per_s: float | None = None
    good_tokens_per_s: float | None = None
    slo_attainment: float | None = None
    slo: StepSLO | None = None
    token_count_source: str | None = None
    itl_basis: str | None = None
    tokens_per_chunk_mean: float | None = None
    quality: Quality = Field(default_factory=Quality)
    telemetry: Telemetry | None = None
    workload: WorkloadStats | None = None
    steady: SteadyWindow | None = None  # the window the figures above describe
    whole_step: WholeStep | None = None  # the same figures over the whole step, where they differ
    trials: Trials | None = None  # repeat trials: the figures above are their means
    stopped: Stop | None = None  # ended early, and why: it never meets the SLO

    @property
    def server_hit_rate(self) -> float | None:
        """The prefix cache hit rate the server's own counters gave over the step."""
        return self.telemetry.prefix_hit_rate if self.telemetry is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def load(self) -> float:
        return load_of(self.concurrency, self.request_rate)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def load_kind(self) -> str:
        return load_kind(self.request_rate)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def load_label(self) -> str:
        return load_label(self.concurrency, self.request_rate)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def degraded(self) -> list[str]:
        """Why this step is not a clean measurement of the server; empty when it is."""
        return self.quality.reasons()

    # Figures the pages show, derived here so no template or chart works them out (not in the JSON).
    @property
    def clean(self) -> bool:
        """A clean measurement with no failed request: the step table's "clean" badge."""
        return not self.degraded and not self.requests.errors

    @property
    def slo_attainment_pct(self) -> float | None:
        return None if self.slo_attainment is None else 100.0 * self.slo_attainment

    def at(self, metric: str, key: str) -> float | None:
        """One statistic of one of its distributions, e.g. ("ttft_ms", "p99")."""
        found: Distribution = getattr(self, metric)
        value = getattr(found, key)
        return None if value is None else float(value)

    def conservative(self) -> StepSummary:
        """With repeat trials, the step at the end of each interval that flatters it least
        (latency at its upper bound, throughput at its lower): what the operating point and
        the capacity rest on. Without trials, itself."""
        if self.trials is None or self.trials.count < 2:
            return self
        update: dict[str, object] = {}
        for figure in self.trials.figures:
            bound = figure.conservative
            if bound is None:
                continue
            if figure.stat is None:
                update[figure.metric] = bound
            else:
                found: Distribution = update.get(figure.metric) or getattr(self, figure.metric)  # type: ignore[assignment]
                update[figure.metric] = found.model_copy(update={figure.stat: bound})
        return self.model_copy(update=update)

    def meets(self, slo: SLO) -> bool:
        """Whether this step meets `slo` (app/domain.SLO.step_meets: completed requests, at most
        1 % failed, every limit held at the SLO's percentile). A step stopped early never does."""
        if self.stopped is not None:
            return False
        return slo.step_meets(
            sent=self.requests.sent,
            completed=self.requests.completed,
            failed=self.requests.failed,
            at={metric: self.at(metric, slo.key) for metric, _ in slo.limits()},
        )


# -- the judgement of a run (app/scoring/smart.py builds it) ------------------------------------------

NOT_MEASURED = "not measured yet"


class Evidence(_Model):
    """One figure or fact a letter used: a number with its unit, a word, or a check's outcome."""

    label: str
    value: bool | int | float | str | None = None
    unit: str = ""


class Judgement(_Model):
    """One SMART letter: 0-100, or None ("not measured yet"), with what it rests on and how to
    redo it by hand."""

    letter: str
    name: str
    score: float | None = None
    status: str = NOT_MEASURED  # "scored" | "not measured yet"
    degraded: list[str] = Field(
        default_factory=list, description="why steps this letter rests on are degraded measurements"
    )
    evidence: list[Evidence] = Field(default_factory=list)
    how: str = ""

    @classmethod
    def of(
        cls,
        letter: str,
        name: str,
        score: float | None,
        evidence: list[Evidence],
        how: str,
        degraded: list[str] | None = None,
    ) -> Judgement:
        return cls(
            letter=letter,
            name=name,
            score=None if score is None else round(score, 1),
            status="scored" if score is not None else NOT_MEASURED,
            degraded=degraded or [],
            evidence=evidence,
            how=how,
        )


class OperatingPoint(StepCosts):
    """Where the endpoint gives the most throughput while meeting the SLO, with the costs there."""

    load: float
    load_kind: str  # concurrency | rate
    output_tokens_per_s: float
    total_tokens_per_s: float | None = None
    tokens_per_s_per_user: float | None = None
    step_index: int
    interpolated: bool = False
    next_step_index: int | None = None  # the step that breaks the SLO, when interpolated
    # The SLO held at the heaviest load measured: the endpoint carries at least this much; how
    # much more, only a heavier step (an SLO search) can tell.
    at_least: bool = False
    trials: int | None = None  # measured in repeat trials: the figures are their conservative bounds
    degraded: list[str] = Field(default_factory=list)
    # Used for its costs, not shown.
    input_tokens_per_s: float | None = Field(default=None, exclude=True)
    good_tokens_per_s: float | None = Field(default=None, exclude=True)

    @property
    def basis(self) -> str:
        """How the load was found: "at least" (the SLO never broke), "interpolated" (between a
        step that met the SLO and the next that broke it) or "measured" (a step, as measured)."""
        return "at least" if self.at_least else "interpolated" if self.interpolated else "measured"

    @property
    def step_indices(self) -> list[int]:
        return [self.step_index] + ([self.next_step_index] if self.next_step_index is not None else [])


class CardQuality(_Model):
    """degraded: the scores and cost rest on steps measured with a degraded client."""

    degraded: bool = False
    reasons: list[str] = Field(default_factory=list)


class Scorecard(_Model):
    """A run's judgement. Generated history (synthetic runs) keeps only its operating point."""

    operating_point: OperatingPoint | None = None
    quality: CardQuality = Field(
        default_factory=CardQuality,
        description="degraded: the scores and cost rest on steps measured with a degraded client",
    )
    capacity: float | None = None
    capacity_at_least: bool = Field(
        default=False,
        description="the SLO held at the heaviest concurrency measured: the capacity is at least `capacity`",
    )
    slo: SLO | None = None
    letters: list[Judgement] = Field(default_factory=list)


# -- the run ---------------------------------------------------------------------------------------


class RunEndpoint(EndpointSnapshot):
    """A stored run's endpoint: its id, and its stack as the run remembers it."""

    id: int | None = None


class RunSummary(_Model):
    """DESIGN's run summary: a stored run (endpoint, profile, cost inputs as snapshotted, steps,
    scorecard) or the probe CLI's."""

    run_id: int | None = None
    endpoint: str | RunEndpoint | None = None  # the probe's CLI: the base URL
    profile: str | ProfileSnapshot | None = None  # the probe's CLI: the profile's name
    started_at: str | None = None
    finished_at: str | None = None
    status: str
    error: str | None = None
    environment: RunEnvironment | None = None  # the target's excerpts in it shown by the context
    steps: list[StepSummary] = Field(default_factory=list)

    @field_serializer("error")
    def _error(self, value: str | None, info: SerializationInfo) -> str | None:
        return shown(value, info.context)  # a target's excerpt only for those who may see it

    # Stored runs add these.
    source: str | None = None
    trigger: str | None = None
    location: str | None = None  # where it was probed: "local" or an agents' location
    created_at: str | None = None
    cost_inputs: CostInputs | None = None
    progress: RunProgress | None = None
    scorecard: Scorecard | None = None

    @property
    def percentile(self) -> str:
        """The statistic its profile's SLO is judged at (p99 unless the profile says)."""
        return percentile_key(
            self.profile.slo_percentile if isinstance(self.profile, ProfileSnapshot) else None
        )
