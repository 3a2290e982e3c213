"""The probe's data: what to send, how long to wait, and what one request looked like."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.datasets import DatasetContent
from app.domain import SLO
from app.probe.search import SearchSpec
from app.security.outbound import OutboundPolicy
from app.snapshot import ProfileSnapshot
from app.summary import StepSummary
from app.workloads import WorkloadSpec


class ErrorKind(StrEnum):
    connect_error = "connect_error"
    auth_error = "auth_error"
    timeout_connect = "timeout_connect"
    timeout_ttft = "timeout_ttft"
    timeout_idle = "timeout_idle"
    timeout_total = "timeout_total"
    protocol_error = "protocol_error"
    truncated = "truncated"
    too_large = "too_large"
    cancelled = "cancelled"
    # plus "http_<status>" for other non-2xx answers


@dataclass(frozen=True)
class Timeouts:
    """Per-phase limits in seconds. `idle` is the longest allowed gap between two reads;
    `total` bounds the whole request, so a server that drips a byte a second is still cut."""

    connect: float = 10.0
    ttft: float = 60.0
    idle: float = 30.0
    total: float = 600.0


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024 * 1024
    max_line_bytes: int = 1024 * 1024
    max_error_body_bytes: int = 64 * 1024
    # Where the probe may connect; None: anywhere (the CLI's own probe).
    outbound: OutboundPolicy | None = None


@dataclass(frozen=True)
class Target:
    base_url: str  # ends in /v1
    model: str
    api: str = "chat"  # chat | completions
    api_key: str | None = None

    @property
    def url(self) -> str:
        path = "/chat/completions" if self.api == "chat" else "/completions"
        return self.base_url.rstrip("/") + path


@dataclass(slots=True)
class Sample:
    """One request as the probe saw it. Times are perf_counter_ns; offsets derive from them."""

    seq: int
    step_index: int = 0
    warmup: bool = False
    requested_output_tokens: int | None = None
    sent_ns: int = 0
    first_content_ns: int | None = None  # TTFT: first chunk with reasoning, answer or tool call
    first_answer_ns: int | None = None  # TTFAT: first chunk with answer content
    last_content_ns: int | None = None
    end_ns: int | None = None
    chunk_ns: list[int] = field(default_factory=list)  # arrival of each content chunk
    chunk_tokens: list[int] | None = None  # tokens per content chunk, when known
    input_tokens: int | None = None  # from usage
    output_tokens: int | None = None  # from usage (reasoning + answer)
    reasoning_tokens: int | None = None
    tokenizer_output_tokens: int | None = None
    token_source: str = "estimated"  # usage | tokenizer | estimated
    finish_reason: str | None = None
    error_kind: str | None = None
    error_detail: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    chunk_texts: list[str] | None = None  # each chunk's text, kept only when a tokenizer will count it
    # What the workload made of it (app/probe/plans.py) and what the server said of its prompt.
    requested_input_tokens: int | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, where sent
    expected_cached_tokens: int | None = None  # what the workload's sharing lets a cache serve
    session: int | None = None
    turn: int | None = None  # 1 for a session's first request
    scheduled_ns: int | None = None  # open loop and traces: when it was due to leave
    hold_until_ns: int | None = None  # started ahead: the client holds its bytes until then
    answer_text: str | None = None  # kept for a session's next turn, then dropped
    trial: int | None = None  # which of the step's repeat trials (0-based); None without trials

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_content_ns is None else (self.first_content_ns - self.sent_ns) / 1e6

    @property
    def ttfat_ms(self) -> float | None:
        return None if self.first_answer_ns is None else (self.first_answer_ns - self.sent_ns) / 1e6

    @property
    def e2e_ms(self) -> float | None:
        end = self.last_content_ns if self.last_content_ns is not None else self.end_ns
        return None if end is None else (end - self.sent_ns) / 1e6

    @property
    def dispatch_lag_ms(self) -> float | None:
        """How late it left against its schedule (open loop and trace replay)."""
        return None if self.scheduled_ns is None else max(0.0, (self.sent_ns - self.scheduled_ns) / 1e6)

    @property
    def osl(self) -> int | None:
        if self.output_tokens is not None:
            return self.output_tokens
        return self.tokenizer_output_tokens


@dataclass(frozen=True)
class Workload:
    input_tokens: int = 128
    input_spread: float = 0.0
    output_tokens: int = 128
    output_spread: float = 0.0
    mode: str = "concurrency"  # concurrency | rate
    levels: tuple[float, ...] = (1,)
    arrival: str = "poisson"  # poisson | constant
    max_concurrency: int | None = None
    requests_per_step: int | None = 64
    duration_per_step_s: float | None = None
    warmup_requests: int = 0
    slo: SLO = field(default_factory=SLO)
    seed: int = 0
    search: SearchSpec | None = None  # an SLO search instead of the fixed levels (probe/search.py)
    trials: int = 1  # each step measured this many times (probe/trials.py)
    trial_cooldown_s: float = 0.0
    # What the requests are (app/workloads.py) and, for traces and datasets, the records.
    spec: WorkloadSpec = field(default_factory=WorkloadSpec)
    content: DatasetContent | None = None

    @classmethod
    def from_profile(cls, profile: ProfileSnapshot, content: DatasetContent | None = None) -> Workload:
        """The load a profile asks for: the one translation, used by the executor (a run's
        snapshot) and by `smartbench probe` (its flags as a profile). `content`: the dataset
        its workload names, loaded."""
        spec = profile.workload or WorkloadSpec()
        return cls(
            input_tokens=int(profile.input_tokens_mean or 0),
            input_spread=float(profile.input_tokens_spread or 0.0),
            output_tokens=int(profile.output_tokens_mean or 0),
            output_spread=float(profile.output_tokens_spread or 0.0),
            mode=profile.load_mode or "concurrency",
            levels=tuple(float(v) for v in profile.load_levels or ()),
            arrival=profile.arrival or "poisson",
            max_concurrency=profile.max_concurrency,
            requests_per_step=profile.requests_per_step,
            duration_per_step_s=profile.duration_per_step_s,
            warmup_requests=int(profile.warmup_requests or 0),
            slo=profile.slo,
            search=SearchSpec.from_profile(profile),
            trials=max(1, int(profile.trials or 1)),
            trial_cooldown_s=float(profile.trial_cooldown_s or 0.0),
            seed=spec.seed,
            spec=spec,
            content=content,
        )


@dataclass
class StepResult:
    index: int
    concurrency: int | None
    request_rate: float | None
    samples: list[Sample]
    summary: StepSummary
    context_tokens: int | None = None  # long_context: the prompt length this step sent
