"""The measurement's shared vocabulary: an SLO and what meeting it means, the load of a step,
and the quality of a step's measurement. The probe's step summary, the scoring, the services
and the pages all use these, so a step can never meet the SLO in one place and break it in
another. Pure: no I/O, no database, no web."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import Field

# The rules of regressions and outages (app/scoring/regression.py), bounded once for the
# environment (config.Settings), the site settings an admin saves and the API's shapes.
BaselineRuns = Annotated[int, Field(ge=2, le=50, description="good runs whose median is the baseline")]
RegressionThresholdPct = Annotated[
    float, Field(gt=0, le=1000, description="the least relative change that counts")
]
RegressionErrorPoints = Annotated[
    float, Field(gt=0, le=100, description="the least rise of the error rate (percentage points) that counts")
]
DownAfterFailures = Annotated[int, Field(ge=1, le=100, description="failed runs in a row that mean down")]
DownLocations = Annotated[
    int, Field(ge=1, le=100, description="locations (of those probing it) failing that mean down")
]


class RunSource(StrEnum):
    """Where a run's figures came from (`runs.source`)."""

    smartbench = "smartbench"  # measured by smartbench's own probe
    synthetic = "synthetic"  # generated history (smartbench seed, the demo): shown, labelled, never scored
    # imported from another tool's result files (app/importers)
    aiperf = "aiperf"
    genai_perf = "genai-perf"
    vllm = "vllm"
    guidellm = "guidellm"
    inference_perf = "inference-perf"

    @property
    def is_measured(self) -> bool:
        """A measurement (smartbench's or a tool's): scorecards, trends and the planner may rest on it."""
        return self is not RunSource.synthetic

    @property
    def is_imported(self) -> bool:
        return self not in (RunSource.smartbench, RunSource.synthetic)


OWN_SOURCES = (RunSource.smartbench.value, RunSource.synthetic.value)  # the rest are imports


PERCENTILE_KEYS = {50.0: "p50", 90.0: "p90", 95.0: "p95", 99.0: "p99"}
DEFAULT_PERCENTILE = 99.0


def percentile_key(percentile: float | None) -> str:
    """A profile's SLO percentile as the statistic's key ("p99"); unset or unknown: the default."""
    return PERCENTILE_KEYS.get(float(percentile or DEFAULT_PERCENTILE), PERCENTILE_KEYS[DEFAULT_PERCENTILE])


def per_gpu(tokens_per_s: float | None, gpus: int | None) -> float:
    """A throughput per GPU; without a declared GPU count, per endpoint."""
    return (tokens_per_s or 0.0) / (gpus or 1)


def user_rate_at(tpot_ms: float) -> float:
    """Tokens/s one user sees at a time per output token (ms): where a TPOT limit sits on a
    tokens-per-user axis."""
    return 1000.0 / tpot_ms


MAX_ERROR_RATE = 0.01  # a step that drops more than 1 % of its requests meets no SLO
SLO_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")


@dataclass(frozen=True)
class SLO:
    """Latency limits in ms at one percentile (50, 90, 95 or 99). A request meets it when each
    of its latencies is within its limit; a step meets it per `step_meets`."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float = DEFAULT_PERCENTILE

    def __post_init__(self) -> None:
        if float(self.percentile) not in PERCENTILE_KEYS:
            raise ValueError(f"an SLO percentile is one of 50, 90, 95 or 99, not {self.percentile:g}")

    @property
    def defined(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))

    @property
    def key(self) -> str:
        """The summary statistic the limits apply to: p50, p90, p95 or p99."""
        return PERCENTILE_KEYS[float(self.percentile)]

    def limits(self) -> list[tuple[str, float]]:
        return [
            (m, float(v))
            for m, v in zip(SLO_METRICS, (self.ttft_ms, self.tpot_ms, self.e2e_ms), strict=True)
            if v is not None
        ]

    def request_meets(self, ttft: float | None, tpot: float | None, e2e: float | None) -> bool:
        """One request: every limit holds (a latency it has no value for breaks its limit)."""
        values = {"ttft_ms": ttft, "tpot_ms": tpot, "e2e_ms": e2e}
        return all(
            (v := values[m]) is not None and math.isfinite(v) and v <= limit for m, limit in self.limits()
        )

    def step_meets(self, *, sent: int, completed: int, failed: int, at: Mapping[str, float | None]) -> bool:
        """A step: at least one request completed, no more than 1 % of the requests sent
        failed, and every limit holds at the SLO's percentile (`at`: metric -> its value at
        `key`; app/summary.StepSummary.meets passes its own)."""
        if not completed:
            return False
        if sent and failed / sent > MAX_ERROR_RATE:
            return False
        for metric, limit in self.limits():
            value = at.get(metric)
            if value is None or not math.isfinite(value) or value > limit:  # NaN never meets a limit
                return False
        return True

    def as_dict(self) -> dict[str, float | None]:
        return {
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "e2e_ms": self.e2e_ms,
            "percentile": self.percentile,
        }


def load_kind(request_rate: float | None) -> str:
    """`concurrency` (closed loop) or `rate` (open loop, requests per second)."""
    return "concurrency" if request_rate is None else "rate"


def load_of(concurrency: int | None, request_rate: float | None) -> float:
    """A step's offered load: its concurrency, or its request rate in an open loop."""
    return float((concurrency if request_rate is None else request_rate) or 0)


def load_label(concurrency: int | None, request_rate: float | None) -> str:
    """`c=8` or `2.5/s`: how a step's load is written on every page and table."""
    return label_of(load_kind(request_rate), load_of(concurrency, request_rate))


def label_of(kind: str, load: float) -> str:
    """`c=8` for a concurrency (`kind` "concurrency"), `2.5/s` for a request rate."""
    return f"c={int(load)}" if kind == "concurrency" else f"{load:g}/s"


# -- the conformance checklist (app/probe/checklist.py runs it; the A and T letters read it) -----------

CHECKLIST_VERSION = "2026.12-1"  # structured output: 256 tokens, inconclusive when cut
# (id, title, weight): the weight is how widely the feature is used by applications (T letter).
CHECKLIST: tuple[tuple[str, str, float], ...] = (
    ("chat", "chat completions", 3.0),
    ("completions", "text completions", 1.0),
    ("streaming", "streaming (SSE)", 3.0),
    ("usage_in_stream", "usage in the stream (stream_options.include_usage)", 2.0),
    ("per_chunk_usage", "per-chunk usage (continuous_usage_stats)", 0.5),
    ("max_tokens", "max_tokens honoured", 2.0),
    ("stop", "stop sequences honoured", 2.0),
    ("n", "n > 1 (or a clear refusal)", 0.5),
    ("logprobs", "logprobs", 1.0),
    ("tool_calls", "tool calls (streamed deltas, JSON arguments)", 3.0),
    ("structured_output", "structured output (json_schema response format)", 2.0),
    ("reasoning", "reasoning content separated from the answer", 1.0),
    ("seed", "seed repeatability", 0.5),
    ("models", "/v1/models lists the model", 2.0),
    ("error_bad_model", "404 in OpenAI's error shape for an unknown model", 1.0),
    ("error_bad_request", "400/422 in OpenAI's error shape for a bad request", 1.0),
    ("rate_limit", "429 carries Retry-After", 1.0),
)
TITLES = {cid: title for cid, title, _ in CHECKLIST}
WEIGHTS = {cid: weight for cid, _, weight in CHECKLIST}


# Check answers that judge nothing: no 429 was met, or the answer was cut by max_tokens before it
# could be judged. They count neither way.
UNJUDGED = frozenset({"not_observed", "inconclusive"})


def conformance(answers: Mapping[str, str]) -> float | None:
    """The weighted share of checks passed (check id -> status; not_observed and inconclusive
    left out): T's conformance term."""
    total = passed = 0.0
    for cid, status in answers.items():
        if status in UNJUDGED:
            continue
        weight = WEIGHTS.get(cid, 1.0)
        total += weight
        passed += weight if status == "passed" else 0.0
    return passed / total if total else None


def engines_comparable(declared: str | None, detected: str) -> bool:
    """Whether a detected engine can be held against the declared one: both known, and the
    declaration names an engine (not "other", not a hosted API that may run anything)."""
    return bool(declared) and detected != "unknown" and declared not in ("other", "hosted-api")
