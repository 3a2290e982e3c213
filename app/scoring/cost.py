"""Cost and energy per DESIGN.md ("Cost and energy"), from the cost inputs snapshotted on a run.

Missing knowledge is None, never 0: no price, no cost."""

from __future__ import annotations

from app.snapshot import CostInputs
from app.summary import StepCosts, StepSummary

__all__ = ["CostInputs", "StepCosts", "costs_at", "per_million", "step_costs", "tokens_per_joule"]
MILLION = 1_000_000.0


def per_million(hourly: float | None, tokens_per_s: float | None) -> float | None:
    """hourly cost / (tokens/s x 3600) x 1e6."""
    if hourly is None or not tokens_per_s or tokens_per_s <= 0:
        return None
    return hourly / (tokens_per_s * 3600.0) * MILLION


def step_costs(step: StepSummary, inputs: CostInputs) -> StepCosts:
    """The cost fields of a step summary (DESIGN's run summary keys)."""
    return costs_at(
        inputs,
        output_tokens_per_s=step.output_tokens_per_s,
        input_tokens_per_s=step.input_tokens_per_s,
        total_tokens_per_s=step.total_tokens_per_s,
        good_tokens_per_s=step.good_tokens_per_s,
        power_w=step.telemetry.power_w if step.telemetry is not None else None,
    )


def costs_at(
    inputs: CostInputs,
    *,
    output_tokens_per_s: float | None,
    input_tokens_per_s: float | None,
    total_tokens_per_s: float | None,
    good_tokens_per_s: float | None,
    power_w: float | None,
) -> StepCosts:
    """Cost and energy at these throughputs. Power is the measured mean (the server's DCGM
    metrics, a step's telemetry.power_w) when there is one, labelled "measured", else the
    declared gpu_count x watts_per_gpu, labelled "declared". With an electricity price, a
    self-hosted hour also pays for that power."""
    out_tps, in_tps, total_tps, good_tps = (
        output_tokens_per_s, input_tokens_per_s, total_tokens_per_s, good_tokens_per_s
    )  # fmt: skip
    measured = power_w
    watts = measured if measured else inputs.declared_watts
    energy_source = None if not watts else ("measured" if measured else "declared")
    joules = tokens_per_joule(out_tps, inputs, measured or None)
    hourly = inputs.hourly_cost
    if hourly is not None:
        if inputs.electricity_price_per_kwh is not None and watts:
            hourly += watts / 1000.0 * inputs.electricity_price_per_kwh
        per_token = per_million(hourly, total_tps)
        # Self-hosted time costs the same whatever the token mix: its blended price is the
        # cost per million tokens at the measured mix.
        return StepCosts(
            cost_per_million_output_tokens=per_million(hourly, out_tps),
            cost_per_million_tokens=per_token,
            cost_per_million_good_tokens=per_million(hourly, good_tps),
            cost_per_million_tokens_blended=per_token,
            tokens_per_joule=joules,
            energy_source=energy_source,
        )
    if inputs.input_price_per_million is not None and inputs.output_price_per_million is not None and out_tps:
        spend_per_s = (
            (in_tps or 0.0) * inputs.input_price_per_million + out_tps * inputs.output_price_per_million
        ) / MILLION
        return StepCosts(
            cost_per_million_output_tokens=spend_per_s / out_tps * MILLION,
            cost_per_million_tokens=spend_per_s / total_tps * MILLION if total_tps else None,
            cost_per_million_good_tokens=spend_per_s / good_tps * MILLION if good_tps else None,
            cost_per_million_tokens_blended=inputs.blended_price,
            tokens_per_joule=joules,
            energy_source=energy_source,
        )
    return StepCosts(tokens_per_joule=joules, energy_source=energy_source)


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
