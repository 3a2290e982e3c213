"""Repeat trials of a step (a profile's `trials`): one step measured several times, its summaries
combined. The step's figures become the trials' means; each headline figure keeps every trial's
value, a t-based 95 % interval of the mean (app/confidence.mean_interval) and the coefficient of
variation, so a page can say how much of a difference between runs is noise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from app.confidence import CONFIDENCE, mean_interval
from app.domain import SLO
from app.summary import Distribution, StepSLO, StepSummary, TrialFigure, Trials

DISTRIBUTIONS = ("ttft_ms", "ttfat_ms", "itl_ms", "tpot_ms", "e2e_ms", "tokens_per_s_per_user")
STATISTICS = ("mean", "p50", "p90", "p95", "p99")
RATES = ("input_tokens_per_s", "output_tokens_per_s", "total_tokens_per_s", "requests_per_s",
         "goodput_requests_per_s", "good_output_tokens_per_s", "good_tokens_per_s", "slo_attainment")  # fmt: skip
HIGHER_IS_BETTER = {*RATES, "tokens_per_s_per_user"}


def _figure(metric: str, stat: str | None, values: list[float]) -> TrialFigure:
    figure = TrialFigure(metric=metric, stat=stat, values=values, higher_is_better=metric in HIGHER_IS_BETTER)
    if not values:
        return figure
    figure.mean = float(np.mean(values))
    found = mean_interval(values, CONFIDENCE)
    if found is not None:
        _, figure.low, figure.high = found
        if figure.mean:
            figure.cv = float(np.std(values, ddof=1) / abs(figure.mean))
    return figure


def combine(
    summaries: Sequence[StepSummary], *, cooldown_s: float = 0.0, slo: SLO | None = None
) -> StepSummary:
    """One step from its trials (in order). A figure a trial lacks is left out of its mean."""
    if len(summaries) == 1:
        return summaries[0]
    first = summaries[0]
    figures: list[TrialFigure] = []
    update: dict[str, object] = {}
    for metric in DISTRIBUTIONS:
        means: dict[str, float | None] = {}
        for stat in STATISTICS:
            values = [float(v) for s in summaries if (v := getattr(getattr(s, metric), stat)) is not None]
            figure = _figure(metric, stat, values)
            if values:
                figures.append(figure)
            means[stat] = figure.mean
        lows = [v for s in summaries if (v := getattr(s, metric).min) is not None]
        highs = [v for s in summaries if (v := getattr(s, metric).max) is not None]
        update[metric] = Distribution(
            **means, min=min(lows) if lows else None, max=max(highs) if highs else None
        )
    for metric in RATES:
        values = [float(v) for s in summaries if (v := getattr(s, metric)) is not None]
        figure = _figure(metric, None, values)
        if values:
            figures.append(figure)
        update[metric] = figure.mean
    errors: Counter[str] = Counter()
    for s in summaries:
        errors.update(s.requests.errors)
    requests = first.requests.model_copy(
        update={
            "sent": sum(s.requests.sent for s in summaries),
            "completed": sum(s.requests.completed for s in summaries),
            "failed": sum(s.requests.failed for s in summaries),
            "errors": dict(sorted(errors.items())),
        }
    )
    notes = [f"trial {i + 1}: {note}" for i, s in enumerate(summaries) for note in s.quality.client_notes]
    cpu = [v for s in summaries if (v := s.quality.client_cpu_pct) is not None]
    mismatch = [v for s in summaries if (v := s.quality.osl_mismatch_pct) is not None]
    quality = first.quality.model_copy(
        update={
            "client_bound": any(s.quality.client_bound for s in summaries),
            "client_notes": notes,
            "client_cpu_pct": float(np.mean(cpu)) if cpu else None,
            "osl_mismatch_pct": float(np.mean(mismatch)) if mismatch else None,
            "osl_mismatch_flag": any(s.quality.osl_mismatch_flag for s in summaries),
            "error_rate": requests.failed / requests.sent if requests.sent else None,
        }
    )
    combined = first.model_copy(
        update={
            **update,
            "requests": requests,
            "duration_s": sum(s.duration_s for s in summaries),
            "quality": quality,
            "steady": None,
            "whole_step": None,
            "stopped": next((s.stopped for s in summaries if s.stopped is not None), None),
            "trials": Trials(
                count=len(summaries), cooldown_s=cooldown_s, figures=figures,
                windows=[s.steady for s in summaries if s.steady is not None],
            ),
        }
    )  # fmt: skip
    if slo is not None and slo.defined:
        good = sum(s.slo.good_requests for s in summaries if s.slo is not None)
        combined.slo = StepSLO(**slo.as_dict(), met=combined.conservative().meets(slo), good_requests=good)
    return combined
