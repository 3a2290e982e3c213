"""Pydantic request/response shapes (XCreate, XUpdate, XRead), apart from the ORM tables."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
)

from app.confidence import Comparison, PeriodComparison
from app.datasets import DatasetStats
from app.domain import (
    BaselineRuns,
    DownAfterFailures,
    DownLocations,
    RegressionErrorPoints,
    RegressionThresholdPct,
)
from app.scoring.regression import AlertDetail
from app.security.redact import shown
from app.summary import Scorecard, StepSummary
from app.workloads import WorkloadSpec

T = TypeVar("T")

ENGINES = (
    "vllm",
    "sglang",
    "tensorrt-llm",
    "nim",
    "dynamo",
    "tgi",
    "llama.cpp",
    "ollama",
    "hosted-api",
    "other",
)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]*$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-/]*$")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
LocationName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
    ),
]
LocationMode = Literal["all", "round_robin", "any"]


def refuse_null(*fields: str) -> Any:
    """A validator for partial updates: these fields may be omitted (kept) but never set to null,
    so a null answers 422 naming the field instead of reaching a NOT NULL column."""

    def check(value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be empty; omit the field to keep its value")
        return value

    return field_validator(*fields, mode="before")(staticmethod(check))


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, str] | None = None


class ErrorBody(BaseModel):
    """The shape of every API error."""

    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    """Every list the API answers: one page of `items`, and `next`, the cursor of the following
    page (pass it back as `?cursor=`; null on the last page). `limit` is the page size; `total`
    is given where counting is cheap. A cursor is opaque: only a `next` from the same list."""

    items: list[T]
    next: str | None = Field(
        default=None, description="the cursor of the following page; null: the last page"
    )
    limit: int | None = None
    total: int | None = None


def offset_cursor(cursor: str | None) -> int:
    """The position an offset-paged list's cursor stands for (0 without one)."""
    if cursor is None or cursor == "":
        return 0
    if not cursor.isdigit() or len(cursor) > 10 or int(cursor) > 2**31 - 1:
        raise ValueError("not a cursor of this list: pass the `next` of its previous page")
    return int(cursor)


def next_offset_cursor(offset: int, limit: int, total: int) -> str | None:
    return str(offset + limit) if offset + limit < total else None


class SampleRead(BaseModel):
    """One request as the probe saw it (run_samples' columns; offsets in ms from the step's first send)."""

    seq: int
    step_index: int
    warmup: bool
    sent_offset_ms: float
    ttft_ms: float | None
    ttfat_ms: float | None
    e2e_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    requested_output_tokens: int | None
    requested_input_tokens: int | None = None
    cached_tokens: int | None = Field(
        default=None, description="prompt tokens the server served from its cache (usage)"
    )
    expected_cached_tokens: int | None = Field(
        default=None, description="what the workload's sharing lets a cache serve"
    )
    session: int | None = None
    turn: int | None = None
    dispatch_lag_ms: float | None = Field(default=None, description="how late it left against its schedule")
    trial: int | None = Field(default=None, description="which of the step's repeat trials (0-based)")
    chunk_count: int
    finish_reason: str | None
    error_kind: str | None
    error_detail: str | None
    http_status: int | None
    retry_after_s: float | None

    @field_serializer("error_detail")
    def _detail(self, value: str | None, info: SerializationInfo) -> str | None:
        return shown(value, info.context)  # a target's excerpt only for editors and admins


def normalise_http_url(value: str, *, what: str = "URL") -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"enter an http:// or https:// {what}, for example http://10.0.0.5:8000/v1")
    if parts.username or parts.password:
        raise ValueError("put credentials in the API key field, not in the URL")
    if parts.query or parts.fragment:
        raise ValueError(f"the {what} must not have a query string or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"the {what} has an invalid port") from exc
    if len(value) > 500:
        raise ValueError(f"the {what} is longer than 500 characters")
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


class EndpointFields(BaseModel):
    """Fields shared by create and update; each validated on its own."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    base_url: str | None = None
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = (
        None
    )
    api_flavor: Literal["chat", "completions"] | None = None
    api_key: SecretStr | None = None
    gpu_model: ShortText | None = None
    gpu_count: int | None = Field(default=None, ge=1, le=100_000)
    price_per_gpu_hour: float | None = Field(default=None, ge=0, le=10_000)
    overhead_per_hour: float | None = Field(default=None, ge=0, le=1_000_000)
    watts_per_gpu: float | None = Field(default=None, gt=0, le=10_000)
    input_price_per_million: float | None = Field(default=None, ge=0, le=10_000)
    output_price_per_million: float | None = Field(default=None, ge=0, le=10_000)
    electricity_price_per_kwh: float | None = Field(default=None, ge=0, le=10, description="$ per kWh")
    engine: ShortText | None = None
    quantization: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)] | None = None
    tags: list[str] | None = None
    metrics_url: str | None = None
    tokenizer: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    enabled: bool | None = None

    _not_null = refuse_null("name", "base_url", "model", "api_flavor", "enabled")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError("use letters, digits, spaces, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else normalise_http_url(value, what="base URL")

    @field_validator("metrics_url")
    @classmethod
    def _metrics_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return normalise_http_url(value, what="metrics URL")

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        if len(raw) > 4096:
            raise ValueError("the API key is longer than 4096 characters")
        if any(ch in raw for ch in "\r\n\x00"):
            raise ValueError("the API key must be a single line")
        return SecretStr(raw)

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = value.lower()
        if value not in ENGINES:
            raise ValueError("choose one of: " + ", ".join(ENGINES))
        return value

    @field_validator("quantization", "gpu_model", "tokenizer", "description")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned: list[str] = []
        for tag in value:
            tag = tag.strip()
            if not tag:
                continue
            if len(tag) > 40 or not TAG_RE.match(tag):
                raise ValueError(f"tag {tag[:40]!r}: use up to 40 letters, digits and . _ : - /")
            if tag not in cleaned:
                cleaned.append(tag)
        if len(cleaned) > 20:
            raise ValueError("at most 20 tags")
        return cleaned


class EndpointCreate(EndpointFields):
    name: Name
    base_url: str
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    api_flavor: Literal["chat", "completions"] = "chat"
    tags: list[str] | None = Field(default_factory=list)


class EndpointUpdate(EndpointFields):
    """Partial update: omitted fields stay. ``api_key``: omit to keep, ``""`` or null to remove."""


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    base_url: str
    model: str
    api_flavor: str
    api_key_set: bool
    api_key_last4: str | None
    gpu_model: str | None
    gpu_count: int | None
    price_per_gpu_hour: float | None
    overhead_per_hour: float | None
    watts_per_gpu: float | None
    input_price_per_million: float | None
    output_price_per_million: float | None
    electricity_price_per_kwh: float | None = None
    engine: str | None
    engine_version: str | None
    quantization: str | None
    tags: list[str]
    metrics_url: str | None
    tokenizer: str | None
    description: str | None
    enabled: bool
    pricing: Literal["gpu_hour", "per_token", "none"]
    created_at: datetime
    updated_at: datetime


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    read_only: bool = False
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="None: never expires")


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    prefix: str
    read_only: bool
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="Shown once; only its hash is stored.")


class Health(BaseModel):
    status: Literal["ok", "error"]
    database: Literal["ok", "error"]
    version: str
    detail: str | None = None


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as {field: message}, worded for people."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if not isinstance(part, int)]
        field = loc[0] if loc else "__all__"
        message = str(err.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        elif err.get("type") == "missing":
            message = "this field is required"
        out.setdefault(field, message)
    return out


def dump_unset(model: BaseModel) -> dict[str, object]:
    return model.model_dump(exclude_unset=True)


# -- workload profiles ------------------------------------------------------------------------------

ProfileName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$"),
]


class ProfileFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: ProfileName | None = None
    title: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    input_tokens_mean: int | None = Field(default=None, ge=1, le=1_000_000)
    input_tokens_spread: float | None = Field(default=None, ge=0, le=2)
    output_tokens_mean: int | None = Field(default=None, ge=1, le=1_000_000)
    output_tokens_spread: float | None = Field(default=None, ge=0, le=2)
    load_mode: Literal["concurrency", "rate"] | None = None
    load_levels: list[float] | None = Field(default=None, min_length=1, max_length=32)
    arrival: Literal["poisson", "constant"] | None = None
    max_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    requests_per_step: int | None = Field(default=None, ge=1, le=1_000_000)
    duration_per_step_s: float | None = Field(default=None, gt=0, le=86_400)
    warmup_requests: int | None = Field(default=None, ge=0, le=100_000)
    search: bool | None = Field(
        default=None,
        description="search for the heaviest load meeting the SLO between the lowest and highest level",
    )
    search_max_steps: int | None = Field(default=None, ge=2, le=40)
    search_budget_s: float | None = Field(default=None, gt=0, le=86_400)
    trials: int | None = Field(
        default=None, ge=1, le=10, description="each step measured this many times (mean, 95 % interval, CV)"
    )
    trial_cooldown_s: float | None = Field(default=None, ge=0, le=600, description="pause between trials")
    slo_ttft_ms: float | None = Field(default=None, gt=0)
    slo_tpot_ms: float | None = Field(default=None, gt=0)
    slo_e2e_ms: float | None = Field(default=None, gt=0)
    slo_percentile: Literal[50, 90, 95, 99] | None = None
    target_price_per_million: float | None = Field(default=None, gt=0)
    workload: WorkloadSpec | None = Field(
        default=None,
        description="the traffic: synthetic (the default), shared_prefix, multi_turn, trace, dataset or long_context",
    )

    _not_null = refuse_null(
        "name", "title", "input_tokens_mean", "input_tokens_spread", "output_tokens_mean",
        "output_tokens_spread", "load_mode", "load_levels", "arrival", "warmup_requests", "slo_percentile",
        "search", "search_max_steps", "search_budget_s", "trials", "trial_cooldown_s",
    )  # fmt: skip

    @field_validator("load_levels")
    @classmethod
    def _levels(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if any(v <= 0 or v > 100_000 for v in value):
                raise ValueError("levels must be positive (at most 100000)")
            value = sorted(set(value))
        return value


class ProfileCreate(ProfileFields):
    name: ProfileName
    title: Annotated[str, StringConstraints(max_length=200)] = ""
    input_tokens_mean: int = Field(ge=1, le=1_000_000)
    output_tokens_mean: int = Field(ge=1, le=1_000_000)
    input_tokens_spread: float = Field(default=0.0, ge=0, le=2)
    output_tokens_spread: float = Field(default=0.0, ge=0, le=2)
    load_mode: Literal["concurrency", "rate"] = "concurrency"
    load_levels: list[float] = Field(min_length=1, max_length=32)
    arrival: Literal["poisson", "constant"] = "poisson"
    warmup_requests: int = Field(default=0, ge=0, le=100_000)
    slo_percentile: Literal[50, 90, 95, 99] = 99
    search: bool = False
    search_max_steps: int = Field(default=10, ge=2, le=40)
    search_budget_s: float = Field(default=900.0, gt=0, le=86_400)
    trials: int = Field(default=1, ge=1, le=10)
    trial_cooldown_s: float = Field(default=0.0, ge=0, le=600)


class ProfileUpdate(ProfileFields):
    pass


class ProfileRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    title: str
    description: str | None
    builtin: bool
    input_tokens_mean: int
    input_tokens_spread: float
    output_tokens_mean: int
    output_tokens_spread: float
    load_mode: str
    load_levels: list[float]
    arrival: str
    max_concurrency: int | None
    requests_per_step: int | None
    duration_per_step_s: float | None
    warmup_requests: int
    search: bool
    search_max_steps: int
    search_budget_s: float
    trials: int = 1
    trial_cooldown_s: float = 0.0
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None
    slo_e2e_ms: float | None
    slo_percentile: float
    target_price_per_million: float | None
    workload: WorkloadSpec | None = None


# -- runs and scorecards ------------------------------------------------------------------------------


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: ProfileName = "chat"
    location: LocationName = Field(
        default="local", description="'local': this dashboard; else an agents' location"
    )


class RunAccepted(BaseModel):
    run_id: int
    status: str
    url: str


class RunListItem(BaseModel):
    id: int
    endpoint_id: int
    endpoint: str
    profile: str
    status: str
    trigger: str
    source: str = Field(default="smartbench", description='"synthetic" for generated history (never scored)')
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cost_per_million_tokens_at_slo: float | None
    output_tokens_per_s_at_slo: float | None
    quality_degraded: bool = False
    waiting_for: str | None = Field(default=None, description="why a queued run has not started yet")
    error: str | None
    location: str = Field(default="local", description="where it was probed: 'local' or an agents' location")

    @field_serializer("error")
    def _error(self, value: str | None, info: SerializationInfo) -> str | None:
        return shown(value, info.context)  # a target's excerpt only for editors and admins


class TrendPoint(BaseModel):
    """One run, or one time bucket of runs (then `at` is the bucket's start, the cost its median)."""

    run_id: int | None = Field(description="the run; in a bucket, set only when the bucket holds one run")
    at: datetime
    runs: int = 1
    cost_per_million_tokens: float | None = Field(description="the run's, or the bucket's median")
    cost_p10: float | None = Field(default=None, description="buckets: 10th percentile of the cost")
    cost_p90: float | None = Field(default=None, description="buckets: 90th percentile of the cost")
    output_tokens_per_s: float | None = Field(description="at the SLO: the run's, or the bucket's mean")
    degraded: bool = Field(default=False, description="a run here rests on a degraded measurement")
    synthetic: bool = Field(default=False, description="generated history, not a measurement")
    imported: int = Field(default=0, description="runs here imported from another tool")


class EndpointScorecard(Scorecard):
    """One endpoint on one profile: the latest measured run's scorecard (app/summary.Scorecard,
    as stored), and its 30-day trend."""

    endpoint_id: int
    endpoint: str
    profile: str
    run_id: int | None
    measured_at: datetime | None
    cost_per_million_tokens_at_slo: float | None
    pricing: str
    trend: list[TrendPoint]
    source: str = Field(
        default="smartbench",
        description="who measured the run it rests on: smartbench, or the tool it was imported from",
    )
    location: str | None = Field(
        default=None, description="where the run it rests on was measured from ('local': this dashboard)"
    )


class ScorecardPage(Page[EndpointScorecard]):
    """Every endpoint's card on one profile, by endpoint name."""

    profile: str


class CostSeries(BaseModel):
    endpoint_id: int
    endpoint: str
    profile: str
    synthetic: bool = Field(default=False, description="the endpoint's generated history (smartbench seed)")
    points: list[TrendPoint]


class TrendMarker(BaseModel):
    at: datetime
    endpoint_id: int
    endpoint: str
    kind: Literal["price", "stack"]
    label: str
    run_id: int


class ChangePointRead(BaseModel):
    """A change point in an endpoint's history on a profile (app/changepoints.py)."""

    endpoint_id: int
    profile: str
    metric: Literal["ttft_ms", "tpot_ms", "output_tokens_per_s_at_slo", "cost_per_million_tokens_at_slo"]
    label: str
    run_id: int | None = Field(description="the first run after the change")
    at: datetime
    before: float = Field(description="the median of the runs before, back to the previous change point")
    after: float = Field(description="the median of the runs after, up to the next change point")
    change_pct: float
    p_value: float = Field(description="Welch's t-test of the runs on the two sides")
    synthetic: bool = Field(description="found in generated history")
    direction: Literal["better", "worse"]
    location: str = Field(default="local", description="each location's runs are a series of their own")


class CostTrends(BaseModel):
    since: datetime
    until: datetime
    profile: str
    grain: Literal["run", "hour", "day", "week"] = Field(description="raw runs, or buckets of this size")
    series: list[CostSeries]
    markers: list[TrendMarker] = Field(default_factory=list)
    change_points: list[ChangePointRead] = Field(
        default_factory=list, description="where a drawn endpoint's cost stepped to another level"
    )
    endpoints_shown: int = 0
    endpoints_available: int = Field(default=0, description="endpoints with runs of the profile in range")
    location: str | None = Field(default=None, description="the one location drawn; null: every location")
    locations: list[str] = Field(
        default_factory=list, description="the locations the profile's runs came from"
    )


# -- schedules ------------------------------------------------------------------------------------


CronText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=9, max_length=100)]
TimeZoneName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ScheduleCreate(BaseModel):
    """Either `interval_s` (a fixed grid) or `cron` (with `timezone`, default UTC)."""

    model_config = ConfigDict(extra="forbid")
    endpoint_id: int = Field(ge=1, le=2**31 - 1)
    profile: ProfileName
    interval_s: int | None = Field(default=None, ge=1, le=30 * 86_400, description="Seconds between slots")
    cron: CronText | None = Field(default=None, description='five fields, e.g. "0 2 * * *" (02:00 every day)')
    timezone: TimeZoneName | None = Field(
        default=None, description="IANA zone of the cron, e.g. Europe/Paris"
    )
    enabled: bool = True
    catchup_window_s: int | None = Field(default=None, ge=0, le=86_400)
    locations: list[LocationName] = Field(
        default_factory=list, max_length=50, description="agents' locations; [] or ['local']: this dashboard"
    )
    location_mode: LocationMode = Field(
        default="all",
        description="all: a run in every location each firing; round_robin: one in turn; any: one, first claimed",
    )


class ScheduleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval_s: int | None = Field(default=None, ge=1, le=30 * 86_400)
    cron: CronText | None = None
    timezone: TimeZoneName | None = None
    enabled: bool | None = None
    locations: list[LocationName] | None = Field(default=None, max_length=50)
    location_mode: LocationMode | None = None

    _not_null = refuse_null("interval_s", "enabled", "cron", "timezone", "locations", "location_mode")


class ScheduleRead(BaseModel):
    id: int
    endpoint_id: int
    endpoint: str
    profile: str
    interval_s: int
    cron: str | None = None
    timezone: str | None = None
    enabled: bool
    offset_s: float
    catchup_window_s: int | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    next_firings: list[datetime] = Field(default_factory=list, description="the next five slots (UTC)")
    locations: list[str] = Field(default_factory=lambda: ["local"], description="where each firing runs")
    location_mode: str = "all"


# -- page twins: what the endpoint and compare pages show, as JSON ----------------------------------


class LatencyPoint(BaseModel):
    """Latency at a run's operating step (or a bucket's mean) at the profile's SLO percentile."""

    at: datetime
    run_id: int | None
    runs: int = 1
    synthetic: bool = False
    ttft_ms: float | None
    tpot_ms: float | None
    itl_ms: float | None


class ProfileHistory(BaseModel):
    """One profile on the endpoint page: its scorecard, cost trend and latency history."""

    profile: str
    scorecard: EndpointScorecard
    grain: Literal["run", "hour", "day", "week"]
    cost: list[CostSeries]
    percentile: str = Field(description="the latency history's statistic: the SLO's percentile")
    latency: list[LatencyPoint]
    change_points: list[ChangePointRead] = Field(default_factory=list)
    period: PeriodComparison | None = Field(
        default=None, description="the last week's runs against the week before's"
    )


class LocationFigures(BaseModel):
    """An endpoint measured from one location: its latest measured run of a profile, with the
    TCP connect time from there beside TTFT, so the network's share is visible."""

    location: str
    profile: str
    run_id: int
    at: datetime
    connect_ms: float | None = Field(
        default=None, description="median TCP connect time from the probe's host"
    )
    ttft_p50_ms: float | None = Field(default=None, description="at the run's operating step")
    tpot_p50_ms: float | None = None
    load: float | None = None
    degraded: bool = False


class EndpointPage(BaseModel):
    """`/endpoints/{id}` as JSON (`/api/v1/endpoints/{id}/overview`)."""

    endpoint: EndpointRead
    since: datetime
    profiles: list[ProfileHistory]
    schedules: list[ScheduleRead]
    recent_runs: list[RunListItem]
    inspection: InspectionRead | None = Field(
        default=None, description="the latest engine detection and checklist"
    )
    alerts: list[AlertRead] = Field(default_factory=list, description="the endpoint's newest alerts")
    open_alerts: list[AlertRead] = Field(
        default_factory=list, description="regressions not recovered yet, or the endpoint down"
    )
    locations: list[LocationFigures] = Field(
        default_factory=list, description="each location's latest measured run per profile, side by side"
    )


class CompareCurve(BaseModel):
    endpoint_id: int
    endpoint: str
    location: str
    gpu_count: int | None
    run_id: int
    steps: list[StepSummary] = Field(description="the latest measured run's step summaries")


class CompareDifference(BaseModel):
    """One endpoint's latest run against the first picked endpoint's, from their samples."""

    endpoint_id: int
    endpoint: str
    location: str
    against_endpoint_id: int
    against: str
    against_location: str
    comparison: Comparison


class ComparePage(BaseModel):
    """`/compare` as JSON (`/api/v1/compare`): the picked endpoints' scorecards side by side."""

    profile: str
    picked: list[int] = Field(description="endpoint ids compared (those asked for, else the measured ones)")
    location: str | None = Field(
        default=None,
        description="the location whose runs are compared; none: each endpoint's latest run, wherever",
    )
    by_location: bool = Field(
        default=False, description="each picked endpoint's latest run from each location, side by side"
    )
    locations: list[str] = Field(
        default_factory=list, description="the locations this profile was measured from"
    )
    cards: list[EndpointScorecard] = Field(
        description="one per endpoint (per endpoint and location when by_location), in the order compared"
    )
    curves: list[CompareCurve]
    slo_tpot_ms: float | None
    differences: list[CompareDifference] = Field(
        default_factory=list,
        description="each card after the first against the first: TTFT and TPOT, significant or not",
    )
    mixed_locations: list[str] = Field(
        default_factory=list,
        description="the different locations the compared runs come from (empty when from one place): "
        "their differences include each place's network path",
    )


# -- site settings (admin) --------------------------------------------------------------------------


class AlertSettings(BaseModel):
    """How regressions and outages are judged (app/scoring/regression.py)."""

    baseline_runs: BaselineRuns
    regression_threshold_pct: RegressionThresholdPct
    regression_error_points: RegressionErrorPoints
    down_after_failures: DownAfterFailures
    down_locations: DownLocations = 1
    change_point_alerts: bool = Field(
        default=False,
        description="also raise a regression when a run reveals a change point that made a figure worse",
    )


class SiteSettingsRead(AlertSettings):
    outbound_mode: Literal["default", "allowlist"] = Field(
        description="default: all but link-local and cloud metadata addresses; allowlist: only outbound_allow"
    )
    outbound_allow: list[str] = Field(description="networks (10.0.0.0/8) and host names (*.example.com)")
    max_profile_concurrency: int = Field(
        description="the highest concurrency or request rate a profile may ask"
    )
    max_requests_per_step: int = Field(description="the most requests (warm-up included) a step may send")
    webhook_outbound_mode: Literal["public", "default", "allowlist"] = Field(
        description="where webhooks may deliver: public (public addresses only), default (as endpoints), allowlist"
    )
    webhook_outbound_allow: list[str] = Field(
        description="networks and host names webhooks may reach besides"
    )
    min_schedule_interval_s: int = Field(description="the fewest seconds between two firings of a schedule")


class SiteSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outbound_mode: Literal["default", "allowlist"] | None = None
    outbound_allow: list[Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]] | None = (
        Field(default=None, max_length=500)
    )
    max_profile_concurrency: int | None = Field(default=None, ge=1, le=1_000_000)
    max_requests_per_step: int | None = Field(default=None, ge=1, le=100_000_000)
    webhook_outbound_mode: Literal["public", "default", "allowlist"] | None = None
    webhook_outbound_allow: (
        list[Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]] | None
    ) = Field(default=None, max_length=500)
    min_schedule_interval_s: int | None = Field(default=None, ge=1, le=86_400)
    baseline_runs: BaselineRuns | None = None
    regression_threshold_pct: RegressionThresholdPct | None = None
    regression_error_points: RegressionErrorPoints | None = None
    down_after_failures: DownAfterFailures | None = None
    down_locations: DownLocations | None = None
    change_point_alerts: bool | None = None

    _not_null = refuse_null(
        "outbound_mode", "outbound_allow", "max_profile_concurrency", "max_requests_per_step",
        "webhook_outbound_mode", "webhook_outbound_allow", "min_schedule_interval_s", "baseline_runs", "regression_threshold_pct", "regression_error_points", "down_after_failures",
        "down_locations", "change_point_alerts",
    )  # fmt: skip


class Lockout(BaseModel):
    key: str = Field(description="account:<name> or address:<ip>")
    failures: int
    last_failure_at: datetime
    blocked_until: datetime | None


# -- inspections (engine detection and the conformance checklist) ----------------------------------


class InspectionCheck(BaseModel):
    id: str
    title: str
    status: Literal["passed", "failed", "not_supported", "not_observed", "inconclusive"]
    request: str = Field(description="what smartbench sent (never the key)")
    evidence: str = Field(description="an excerpt of the answer; what the target said is shown to editors")

    @field_serializer("evidence")
    def _evidence(self, value: str, info: SerializationInfo) -> str | None:
        return shown(value, info.context)


class InspectionEvidence(BaseModel):
    engine: str
    weight: int
    source: str
    saw: str = Field(
        description="what was seen; the target's own words (versions, paths) are shown to editors"
    )

    @field_serializer("saw")
    def _saw(self, value: str, info: SerializationInfo) -> str | None:
        return shown(value, info.context)


class InspectionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    endpoint_id: int
    run_id: int | None
    created_at: datetime
    engine: str = Field(description="vllm, sglang, tensorrt-llm, nim, dynamo, tgi, llama.cpp, ollama, transformers, "
                        "smartbench-simulator or unknown")  # fmt: skip
    engine_version: str | None
    declared_engine: str | None
    warning: str | None = Field(default=None, description="set when the declared and detected engines differ")
    checklist_version: str
    evidence: list[InspectionEvidence]
    checks: list[InspectionCheck]
    metrics_exposed: bool
    duration_s: float | None
    error: str | None
    checks_at: datetime | None = Field(
        default=None, description="set when the checklist was carried over from then"
    )


# -- the capacity planner ------------------------------------------------------------------------


class PlanRowRead(BaseModel):
    endpoint_id: int
    endpoint: str
    run_id: int = Field(description="the run the figures rest on")
    measured_at: datetime | None
    pricing: Literal["gpu_hour", "per_token"]
    load_per_replica: float | None = Field(description="users or requests/s one replica carries at the SLO")
    replicas: int | None
    gpus: int | None
    dollars_per_hour: float | None
    dollars_per_month: float | None
    kwh_per_month: float | None
    energy_source: str | None = Field(description="measured | declared power behind the energy")
    cost_per_million_tokens: float | None
    degraded: bool = Field(description="the operating point rests on a degraded measurement")
    at_least: bool = Field(
        default=False,
        description="the SLO held at the heaviest load measured: one replica carries at least "
        "load_per_replica, so replicas (and cost) are at most what is shown; an SLO search tells how much more",
    )


class PlanRead(BaseModel):
    profile: str
    demand: float
    unit: Literal["users", "rps"]
    headroom: float
    sort: str
    rows: list[PlanRowRead]


# -- alerts and webhooks ---------------------------------------------------------------------------

AlertKindName = Literal["regression", "recovery", "down", "up", "agent_offline", "agent_online"]
ALERT_KINDS: tuple[AlertKindName, ...] = (
    "regression",
    "recovery",
    "down",
    "up",
    "agent_offline",
    "agent_online",
)


class AlertRead(BaseModel):
    id: int
    endpoint_id: int | None = Field(description="null for an agent's alerts")
    endpoint: str = Field(description="the endpoint's name, or the agent's for its alerts")
    agent_id: int | None = None
    run_id: int | None
    kind: AlertKindName
    profile: str | None = Field(description="the profile compared; null for down and up")
    metric: str | None = Field(
        description="ttft_ms, tpot_ms, output_tokens_per_s_at_slo, cost_per_million_tokens_at_slo, error_rate"
    )
    baseline: float | None = Field(description="the median of the baseline runs")
    value: float | None
    change_pct: float | None
    message: str
    degraded: bool = Field(description="the run it rests on was measured with a degraded client")
    location: str = Field(default="local", description="a regression's location (its own baseline)")
    open: bool = Field(default=False, description="a regression not recovered yet, or an endpoint still down")
    detail: AlertDetail
    created_at: datetime


class AlertPage(Page[AlertRead]):
    open: list[AlertRead] = Field(description="regressions not recovered and endpoints down, newest first")


class WebhookEndpoint(BaseModel):
    id: int
    name: str


class WebhookPayload(BaseModel):
    """What a generic webhook receives for an alert (JSON, signed; Slack gets a text made of it)."""

    delivery: int = Field(description="the delivery's id: the same on every retry of it")
    event: AlertKindName
    alert_id: int
    at: str = Field(description="when the alert was raised (ISO 8601)")
    endpoint: WebhookEndpoint | None = Field(description="null for an agent's alerts")
    profile: str | None
    metric: str | None
    baseline: float | None
    value: float | None
    change_pct: float | None
    degraded: bool
    detail: AlertDetail
    message: str
    run_id: int | None
    run_url: str | None = Field(description="the run's page, when SMARTBENCH_PUBLIC_URL is set")


class WebhookBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(WebhookBase):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000)]
    kind: Literal["json", "slack"] = "json"
    events: list[AlertKindName] = Field(default_factory=lambda: list(ALERT_KINDS), min_length=1, max_length=6)
    enabled: bool = True
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200)] | None = Field(
        default=None, description="the HMAC key for json webhooks; generated when omitted and shown once"
    )


class WebhookUpdate(WebhookBase):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000)] | None = None
    events: list[AlertKindName] | None = Field(default=None, min_length=1, max_length=6)
    enabled: bool | None = None

    _not_null = refuse_null("name", "url", "events", "enabled")


class WebhookRead(BaseModel):
    id: int
    name: str
    kind: Literal["json", "slack"]
    url_hint: str = Field(description="scheme, host and the URL's last 4 characters; the URL is never shown")
    events: list[str]
    enabled: bool
    signed: bool = Field(description="deliveries carry X-Smartbench-Signature (json webhooks)")
    created_at: datetime
    created_by: str | None


class WebhookCreated(WebhookRead):
    secret: str | None = Field(description="the signing secret, shown this once")


class DeliveryRead(BaseModel):
    id: int
    alert_id: int
    webhook_id: int
    webhook: str
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    response_status: int | None
    error: str | None
    delivered_at: datetime | None
    created_at: datetime


class ImportResult(BaseModel):
    run_id: int
    tool: str = Field(description="aiperf, genai-perf, vllm, guidellm or inference-perf")
    tool_version: str | None = Field(description="from the file, else as given; null when neither says")
    profile: str = Field(description="the profile whose SLO judged it ('imported' when none was named)")
    steps: int
    samples: int = Field(description="requests kept as samples (0 when the files carry aggregates only)")
    notes: list[str] = Field(description="definitions converted or flagged, field by field")


EndpointPage.model_rebuild()  # its inspection and alerts are defined further down


# -- datasets -------------------------------------------------------------------------------------


class DatasetRead(BaseModel):
    """A stored dataset or trace: what it is and what it holds (its records are not listed)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    format: str
    sha256: str
    size_bytes: int
    records: int
    stats: DatasetStats
    builtin: bool
    generated: bool = Field(
        description="made by smartbench to match published statistics, not recorded traffic"
    )
    source: str | None
    created_at: datetime
