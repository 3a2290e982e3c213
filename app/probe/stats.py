"""Step statistics from per-request samples, exactly as DESIGN.md defines them.

Samples are the source of truth; this module turns the measured (non-warm-up) samples of one
load step into DESIGN's step summary object. Percentiles interpolate linearly (numpy's default)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from app.domain import SLO
from app.probe.steady import steady_window, tokens_between
from app.probe.types import Sample
from app.summary import Histogram, StepSLO, StepSummary, TurnStats, WholeStep, WorkloadStats
from app.workloads import WorkloadSpec

STAT_KEYS = ("mean", "p50", "p90", "p95", "p99", "min", "max")
OSL_TOLERANCE_PCT = 5.0


def distribution(values: Iterable[float] | np.ndarray) -> dict[str, float | None]:
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
    if arr.size == 0:
        return dict.fromkeys(STAT_KEYS)
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99])
    return {
        "mean": float(arr.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def tpot_ms(sample: Sample) -> float | None:
    osl, ttft, e2e = sample.osl, sample.ttft_ms, sample.e2e_ms
    if not sample.ok or osl is None or osl < 2 or ttft is None or e2e is None:
        return None
    return (e2e - ttft) / (osl - 1)


def itl_gaps_ms(sample: Sample) -> tuple[list[float], bool]:
    """Per-token gaps when each chunk's token count is known: the time since the previous chunk
    that carried tokens, split evenly over this chunk's tokens (a chunk that completes no token,
    such as a partial UTF-8 character, adds its time to the next one). Else one gap per chunk.
    Returns (gaps, token_basis)."""
    times = sample.chunk_ns
    tokens = sample.chunk_tokens
    if len(times) < 2:
        return [], tokens is not None
    gaps: list[float] = []
    if tokens is not None and len(tokens) == len(times):
        last = times[0]
        for i in range(1, len(times)):
            n = tokens[i]
            if n <= 0:
                continue
            per = (times[i] - last) / 1e6 / n
            gaps.extend([per] * n)
            last = times[i]
        return gaps, True
    return [(times[i] - times[i - 1]) / 1e6 for i in range(1, len(times))], False


def summarize_step(
    samples: Sequence[Sample],
    *,
    concurrency: int | None = None,
    request_rate: float | None = None,
    slo: SLO | None = None,
    client_bound: bool = False,
    client_notes: Sequence[str] = (),
    client_cpu_pct: float | None = None,
    spec: WorkloadSpec | None = None,
    context_tokens: int | None = None,
    steady: bool = True,
) -> StepSummary:
    """The step's figures (DESIGN.md, "Metric definitions") over its steady-state window
    (app/probe/steady.py); where that window is not the whole step, `whole_step` keeps the
    headline figures over every measured request. `steady=False`: the whole step only."""
    measured = [s for s in samples if not s.warmup]
    all_ok = [s for s in measured if s.ok]
    errors = Counter(str(s.error_kind) for s in measured if not s.ok)

    window = steady_window(measured, concurrency=concurrency) if steady else None
    windowed = window is not None and not window.whole_step
    arrived: float | None = None  # output tokens that arrived inside the window
    if windowed and window is not None:
        first = min(s.sent_ns for s in measured)
        start, end = first + int(window.start_s * 1e9), first + int(window.end_s * 1e9)
        sent_inside = [s for s in measured if start <= s.sent_ns <= end]
        ok = [s for s in sent_inside if s.ok]
        window_s = max((end - start) / 1e9, 1e-9)
        arrived = tokens_between(all_ok, start, end)
    elif measured:
        ok, sent_inside = all_ok, measured
        start = min(s.sent_ns for s in measured)
        end = max((s.end_ns or s.sent_ns) for s in measured)
        window_s = max((end - start) / 1e9, 1e-9)
    else:
        ok, sent_inside = all_ok, measured
        window_s = 0.0

    ttft = [v for s in ok if (v := s.ttft_ms) is not None]
    ttfat = [v for s in ok if (v := s.ttfat_ms) is not None]
    e2e = [v for s in ok if (v := s.e2e_ms) is not None]
    tpots = {id(s): tpot_ms(s) for s in ok}
    tpot = [v for v in tpots.values() if v is not None]
    itl: list[float] = []
    token_basis = True
    for s in ok:
        gaps, basis = itl_gaps_ms(s)
        itl.extend(gaps)
        token_basis = token_basis and basis
    osl = [s.osl for s in ok if s.osl is not None]
    isl = [s.input_tokens for s in ok if s.input_tokens is not None]

    def rate(total: float) -> float | None:
        return total / window_s if window_s > 0 else None

    out_total = float(sum(osl)) if arrived is None else arrived
    in_total = float(sum(isl)) if len(isl) == len(ok) else None

    goodput = attainment = good_out_rate = good_total_rate = None
    good: list[Sample] = []
    if slo is not None and slo.defined:
        good = [s for s in ok if slo.request_meets(s.ttft_ms, tpots[id(s)], s.e2e_ms)]
        goodput = rate(len(good))
        attainment = len(good) / len(sent_inside) if sent_inside else None
        good_out = float(sum(s.osl or 0 for s in good))
        good_out_rate = rate(good_out)
        good_total_rate = rate(good_out + sum(s.input_tokens or 0 for s in good))

    sources = Counter(s.token_source for s in ok)
    source = None
    if sources:
        source = (
            "usage"
            if sources.get("usage") == len(ok)
            else ("tokenizer" if "tokenizer" in sources else "estimated")
        )
    mismatches = [
        (s.osl - s.requested_output_tokens) / s.requested_output_tokens * 100.0
        for s in ok
        if s.osl is not None and s.requested_output_tokens
    ]
    osl_mismatch = float(np.mean(mismatches)) if mismatches else None
    diffs = [
        (s.output_tokens - s.tokenizer_output_tokens) / s.tokenizer_output_tokens * 100.0
        for s in ok
        if s.token_source == "usage" and s.output_tokens is not None and s.tokenizer_output_tokens
    ]
    usage_diff = float(np.mean(diffs)) if diffs else None
    interactivity = [1000.0 / v for v in tpot if v > 0]
    chunks = sum(len(s.chunk_ns) for s in ok if s.osl is not None)

    summary = StepSummary.model_validate(
        {
            "concurrency": concurrency,
            "request_rate": request_rate,
            "duration_s": window_s,
            "requests": {
                "sent": len(measured),
                "completed": len(all_ok),
                "failed": len(measured) - len(all_ok),
                "errors": dict(sorted(errors.items())),
            },
            "ttft_ms": distribution(ttft),
            "ttfat_ms": distribution(ttfat),
            "itl_ms": distribution(itl),
            "tpot_ms": distribution(tpot),
            "e2e_ms": distribution(e2e),
            "input_tokens": distribution(isl),
            "output_tokens": distribution(osl),
            "input_tokens_per_s": rate(in_total) if in_total is not None else None,
            "output_tokens_per_s": rate(out_total),
            "total_tokens_per_s": rate(out_total + in_total) if in_total is not None else None,
            "requests_per_s": rate(len(ok)),
            "tokens_per_s_per_user": distribution(interactivity),
            "goodput_requests_per_s": goodput,
            "good_output_tokens_per_s": good_out_rate,
            "good_tokens_per_s": good_total_rate,
            "slo_attainment": attainment,
            "slo": None,
            "token_count_source": source,
            "itl_basis": None if not ok else ("token" if token_basis else "chunk"),
            "tokens_per_chunk_mean": out_total / chunks if chunks and not token_basis else None,
            "quality": {
                "client_bound": client_bound,
                "client_notes": list(client_notes),
                "client_cpu_pct": client_cpu_pct,
                "osl_mismatch_pct": osl_mismatch,
                "osl_mismatch_flag": osl_mismatch is not None and abs(osl_mismatch) > OSL_TOLERANCE_PCT,
                "usage_tokenizer_diff_pct": usage_diff,
                "error_rate": (len(measured) - len(all_ok)) / len(measured) if measured else None,
            },
            "cost_per_million_output_tokens": None,
            "cost_per_million_tokens": None,
            "cost_per_million_good_tokens": None,
            "cost_per_million_tokens_blended": None,
            "tokens_per_joule": None,
        }
    )
    summary.workload = workload_stats(all_ok, measured, spec or WorkloadSpec(), context_tokens)
    summary.steady = window
    if windowed:
        whole = summarize_step(
            samples, concurrency=concurrency, request_rate=request_rate, spec=spec,
            context_tokens=context_tokens, steady=False,
        )  # fmt: skip
        summary.whole_step = WholeStep.model_validate(whole.model_dump(include=set(WholeStep.model_fields)))
    if slo is not None and slo.defined:
        # The step's verdict uses the one definition the scoring uses (app/domain.py).
        summary.slo = StepSLO(**slo.as_dict(), met=summary.meets(slo), good_requests=len(good))
    return summary


def workload_stats(
    ok: Sequence[Sample], measured: Sequence[Sample], spec: WorkloadSpec, context_tokens: int | None
) -> WorkloadStats:
    """The step's traffic as measured: lengths, prompt-cache hits (usage and expected), TTFT
    with and without a hit, per turn, and dispatch lag."""
    reported = [s for s in ok if s.cached_tokens is not None and s.input_tokens]
    hit_rate = None
    if reported:
        hit_rate = sum(s.cached_tokens or 0 for s in reported) / sum(s.input_tokens or 0 for s in reported)
    expecting = [
        s for s in ok if s.expected_cached_tokens is not None and (s.input_tokens or s.requested_input_tokens)
    ]
    expected = None
    if expecting:
        expected = sum(s.expected_cached_tokens or 0 for s in expecting) / sum(
            (s.input_tokens or s.requested_input_tokens or 0) for s in expecting
        )
    hits = [s for s in reported if s.cached_tokens]
    misses = [s for s in reported if not s.cached_tokens]
    turns: dict[int, list[Sample]] = {}
    for s in ok:
        if s.turn is not None:
            turns.setdefault(s.turn, []).append(s)
    by_turn = [
        TurnStats(
            turn=turn,
            requests=len(group),
            ttft_ms=distribution([v for s in group if (v := s.ttft_ms) is not None]),
            input_tokens_mean=_mean([s.input_tokens for s in group]),
            cached_tokens_mean=_mean([s.cached_tokens for s in group]),
        )
        for turn, group in sorted(turns.items())
    ]
    sessions = {s.session for s in measured if s.session is not None}
    return WorkloadStats.model_validate(
        {
            "kind": spec.kind,
            "context_tokens": context_tokens,
            "input_histogram": Histogram.of([s.input_tokens for s in ok if s.input_tokens is not None]),
            "output_histogram": Histogram.of([s.osl for s in ok if s.osl is not None]),
            "cache_reported": len(reported),
            "cache_hit_rate": hit_rate,
            "expected_hit_rate": expected,
            "cache_hit_requests": len(hits),
            "ttft_hit_ms": distribution([v for s in hits if (v := s.ttft_ms) is not None]),
            "ttft_miss_ms": distribution([v for s in misses if (v := s.ttft_ms) is not None]),
            "sessions": len(sessions) if sessions else None,
            "by_turn": by_turn,
            "dispatch_lag_ms": distribution([v for s in measured if (v := s.dispatch_lag_ms) is not None]),
        }
    )


def _mean(values: Sequence[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None
