"""Cost and energy per DESIGN.md ("Cost and energy"), from the cost inputs snapshotted on a run.

Missing knowledge is None, never 0: no price, no cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MILLION = 1_000_000.0


@dataclass(frozen=True)
class CostInputs:
    gpu_count: int | None = None
    price_per_gpu_hour: float | None = None
    overhead_per_hour: float | None = None
    watts_per_gpu: float | None = None
    input_price_per_million: float | None = None
    output_price_per_million: float | None = None
    electricity_price_per_kwh: float | None = None  # self-hosted: energy is paid for by the hour too

    @classmethod
    def from_snapshot(cls, snap: Mapping[str, Any] | None) -> CostInputs:
        snap = snap or {}
        return cls(**{k: snap.get(k) for k in cls.__dataclass_fields__})

    @property
    def self_hosted(self) -> bool:
        return self.price_per_gpu_hour is not None and bool(self.gpu_count)

    @property
    def per_token(self) -> bool:
        return self.input_price_per_million is not None and self.output_price_per_million is not None

    @property
    def hourly_cost(self) -> float | None:
        """gpu_count x price_per_gpu_hour (+ overhead per hour)."""
        if not self.self_hosted:
            return None
        assert self.gpu_count is not None and self.price_per_gpu_hour is not None
        return self.gpu_count * self.price_per_gpu_hour + (self.overhead_per_hour or 0.0)

    @property
    def declared_watts(self) -> float | None:
        if not self.gpu_count or not self.watts_per_gpu:
            return None
        return self.gpu_count * self.watts_per_gpu

    @property
    def blended_price(self) -> float | None:
        """Artificial Analysis' 3:1 blend of input and output prices, per million tokens."""
        if not self.per_token:
            return None
        assert self.input_price_per_million is not None and self.output_price_per_million is not None
        return (3 * self.input_price_per_million + self.output_price_per_million) / 4


def per_million(hourly: float | None, tokens_per_s: float | None) -> float | None:
    """hourly cost / (tokens/s x 3600) x 1e6."""
    if hourly is None or not tokens_per_s or tokens_per_s <= 0:
        return None
    return hourly / (tokens_per_s * 3600.0) * MILLION


def step_costs(step: Mapping[str, Any], inputs: CostInputs) -> dict[str, Any]:
    """The cost fields of a step summary (DESIGN's run summary keys). Power is the step's
    measured mean (the server's DCGM metrics, telemetry.power_w) when there is one, labelled
    "measured", else the declared gpu_count x watts_per_gpu, labelled "declared". With an
    electricity price, a self-hosted hour also pays for that power."""
    out_tps = step.get("output_tokens_per_s")
    in_tps = step.get("input_tokens_per_s")
    total_tps = step.get("total_tokens_per_s")
    good_tps = step.get("good_tokens_per_s")
    measured = (step.get("telemetry") or {}).get("power_w")
    watts = measured if measured else inputs.declared_watts
    result: dict[str, Any] = {
        "cost_per_million_output_tokens": None,
        "cost_per_million_tokens": None,
        "cost_per_million_good_tokens": None,
        "cost_per_million_tokens_blended": None,
        "tokens_per_joule": None,
        "energy_source": None if not watts else ("measured" if measured else "declared"),
    }
    if inputs.self_hosted:
        hourly = inputs.hourly_cost
        if hourly is not None and inputs.electricity_price_per_kwh is not None and watts:
            hourly += watts / 1000.0 * inputs.electricity_price_per_kwh
        result["cost_per_million_output_tokens"] = per_million(hourly, out_tps)
        result["cost_per_million_tokens"] = per_million(hourly, total_tps)
        result["cost_per_million_good_tokens"] = per_million(hourly, good_tps)
        # Self-hosted time costs the same whatever the token mix: its blended price is the
        # cost per million tokens at the measured mix.
        result["cost_per_million_tokens_blended"] = result["cost_per_million_tokens"]
    elif inputs.per_token and out_tps:
        assert inputs.input_price_per_million is not None and inputs.output_price_per_million is not None
        spend_per_s = (
            (in_tps or 0.0) * inputs.input_price_per_million + out_tps * inputs.output_price_per_million
        ) / MILLION
        result["cost_per_million_output_tokens"] = spend_per_s / out_tps * MILLION
        if total_tps:
            result["cost_per_million_tokens"] = spend_per_s / total_tps * MILLION
        if good_tps:
            result["cost_per_million_good_tokens"] = spend_per_s / good_tps * MILLION
        result["cost_per_million_tokens_blended"] = inputs.blended_price
    result["tokens_per_joule"] = tokens_per_joule(out_tps, inputs, measured or None)
    return result


def tokens_per_joule(
    output_tokens_per_s: float | None, inputs: CostInputs, watts: float | None = None
) -> float | None:
    """Output tokens per joule: measured power when given, else declared gpu_count x watts."""
    if not output_tokens_per_s:
        return None
    if watts is None:
        if not inputs.gpu_count or not inputs.watts_per_gpu:
            return None
        watts = inputs.gpu_count * inputs.watts_per_gpu
    return output_tokens_per_s / watts if watts > 0 else None
