"""What a run remembers of the things it ran against, as they were when it was queued: the
profile's workload and SLO (`ProfileSnapshot`), the endpoint's serving stack (`EndpointSnapshot`)
and its cost inputs (`CostInputs`, the one list of cost fields). The runs table keeps each as
JSON (app/models.py maps the columns to these types); the executor, the scoring, the planner and
the pages read them typed. Pure: no I/O, no database, no web."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict

from app.domain import DEFAULT_PERCENTILE, SLO
from app.workloads import WorkloadSpec


class _Snapshot(BaseModel):
    # Frozen: a run's memory does not change. Keys a later version drops are kept (extra) so a
    # stored snapshot reads back and writes out as it was.
    model_config = ConfigDict(frozen=True, extra="allow")

    @classmethod
    def of(cls, source: object) -> Self:
        """The snapshot of an ORM row (or any object with these attributes, or a mapping with
        these keys): its own fields, nothing else."""
        if isinstance(source, Mapping):
            return cls.model_validate({name: source.get(name) for name in cls.model_fields})
        return cls.model_validate({name: getattr(source, name, None) for name in cls.model_fields})

    def key(self, fields: tuple[str, ...]) -> str:
        """A short stable digest of some fields: two runs with the same key ran at the same
        prices (PRICE_FIELDS) or on the same serving stack (STACK_FIELDS)."""
        picked = {
            name: getattr(self, name, None)
            for name in fields
            if name not in LATE_KEY_FIELDS or getattr(self, name, None) is not None
        }
        return hashlib.sha1(json.dumps(picked, sort_keys=True).encode(), usedforsecurity=False).hexdigest()[
            :16
        ]


class CostInputs(_Snapshot):
    """The endpoint's prices and power when the run was queued (DESIGN.md, "Cost and energy")."""

    gpu_count: int | None = None
    price_per_gpu_hour: float | None = None
    overhead_per_hour: float | None = None
    watts_per_gpu: float | None = None
    input_price_per_million: float | None = None
    output_price_per_million: float | None = None
    electricity_price_per_kwh: float | None = None  # self-hosted: energy is paid for by the hour too

    def problems(self) -> dict[str, str]:
        """What keeps these inputs from pricing a run, as {field: message} (empty: nothing)."""
        problems: dict[str, str] = {}
        gpu_hour = self.price_per_gpu_hour is not None
        per_token = self.input_price_per_million is not None or self.output_price_per_million is not None
        if gpu_hour and per_token:
            problems["price_per_gpu_hour"] = (
                "choose one pricing: per GPU-hour (self-hosted) or per million tokens (hosted API), not both"
            )
        if gpu_hour and not self.gpu_count:
            problems["gpu_count"] = "give the GPU count so the hourly cost can be computed"
        if self.overhead_per_hour is not None and not gpu_hour:
            problems["overhead_per_hour"] = (
                "overhead applies to self-hosted pricing: give a price per GPU-hour too"
            )
        if per_token:
            for field in ("input_price_per_million", "output_price_per_million"):
                if getattr(self, field) is None:
                    problems[field] = "give both the input and the output price per million tokens"
        if self.electricity_price_per_kwh is not None and not gpu_hour:
            problems["electricity_price_per_kwh"] = (
                "electricity adds to self-hosted pricing: give a price per GPU-hour too"
            )
        if self.watts_per_gpu is not None and not self.gpu_count:
            problems.setdefault(
                "gpu_count", "give the GPU count so energy can be computed from watts per GPU"
            )
        return problems

    @property
    def pricing(self) -> str:
        """gpu_hour (self-hosted), per_token (a hosted API), or none."""
        return "gpu_hour" if self.self_hosted else "per_token" if self.per_token else "none"

    @property
    def self_hosted(self) -> bool:
        return self.price_per_gpu_hour is not None and bool(self.gpu_count)

    @property
    def per_token(self) -> bool:
        return self.input_price_per_million is not None and self.output_price_per_million is not None

    @property
    def hourly_cost(self) -> float | None:
        """gpu_count x price_per_gpu_hour (+ overhead per hour)."""
        if self.price_per_gpu_hour is None or not self.gpu_count:
            return None
        return self.gpu_count * self.price_per_gpu_hour + (self.overhead_per_hour or 0.0)

    @property
    def declared_watts(self) -> float | None:
        if not self.gpu_count or not self.watts_per_gpu:
            return None
        return self.gpu_count * self.watts_per_gpu

    @property
    def blended_price(self) -> float | None:
        """Artificial Analysis' 3:1 blend of input and output prices, per million tokens."""
        if self.input_price_per_million is None or self.output_price_per_million is None:
            return None
        return (3 * self.input_price_per_million + self.output_price_per_million) / 4


class EndpointSnapshot(_Snapshot):
    """The endpoint's address and declared serving stack."""

    name: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_flavor: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    quantization: str | None = None
    gpu_model: str | None = None
    gpu_count: int | None = None

    @property
    def hardware(self) -> str | None:
        return f"{self.gpu_count} x {self.gpu_model or 'GPU'}" if self.gpu_count else None


class ProfileSnapshot(_Snapshot):
    """The workload profile (app/models.Profile's columns, less its timestamps): token lengths,
    load, bounds, warm-up, SLO search and SLO, and the target price."""

    id: int | None = None
    name: str = ""
    title: str | None = ""
    description: str | None = None
    builtin: bool | None = False
    input_tokens_mean: int | None = None
    input_tokens_spread: float | None = 0.0
    output_tokens_mean: int | None = None
    output_tokens_spread: float | None = 0.0
    load_mode: str | None = "concurrency"
    load_levels: list[float] | None = None
    arrival: str | None = "poisson"
    max_concurrency: int | None = None
    requests_per_step: int | None = None
    duration_per_step_s: float | None = None
    warmup_requests: int | None = 0
    search: bool | None = False
    search_max_steps: int | None = 10
    search_budget_s: float | None = 900.0
    trials: int | None = 1
    trial_cooldown_s: float | None = 0.0
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    slo_e2e_ms: float | None = None
    slo_percentile: float | None = DEFAULT_PERCENTILE
    target_price_per_million: float | None = None
    workload: WorkloadSpec | None = None  # None: synthetic, from the lengths above

    @property
    def spec(self) -> WorkloadSpec:
        """The workload, the synthetic one where the profile names none."""
        return self.workload or WorkloadSpec()

    @property
    def slo(self) -> SLO:
        return SLO(
            ttft_ms=self.slo_ttft_ms,
            tpot_ms=self.slo_tpot_ms,
            e2e_ms=self.slo_e2e_ms,
            percentile=float(self.slo_percentile or DEFAULT_PERCENTILE),
        )


# What marks a price change on a trend (watts alone do not: they are not a price), and a
# serving-stack change. Fields added after runs were keyed count only when set, so older keys
# stay equal.
PRICE_FIELDS = tuple(name for name in CostInputs.model_fields if name != "watts_per_gpu")
LATE_KEY_FIELDS = frozenset({"electricity_price_per_kwh"})
STACK_FIELDS = ("model", "engine", "engine_version", "quantization", "gpu_model", "gpu_count")
