"""The probe's samples and step summaries as database rows, and back again (recompute reads
samples back exactly as the probe saw them, relative to their step's first send)."""

from __future__ import annotations

from array import array

from app.models import RequestSample
from app.probe.stats import STAT_KEYS
from app.probe.types import Sample
from app.summary import StepCosts, StepSummary

LATENCY = ("ttft_ms", "ttfat_ms", "itl_ms", "tpot_ms", "e2e_ms")


def with_origin(samples: list[Sample]) -> list[tuple[Sample, int]]:
    origin = min((s.sent_ns for s in samples), default=0)
    return [(s, origin) for s in samples]


def step_columns(summary: StepSummary) -> dict[str, object]:
    """A step summary's figures as run_steps' own columns (the lists and trends query them)."""
    cols: dict[str, object] = {
        "concurrency": summary.concurrency,
        "request_rate": summary.request_rate,
        "duration_s": summary.duration_s,
        "requests_sent": summary.requests.sent,
        "requests_completed": summary.requests.completed,
        "requests_failed": summary.requests.failed,
        "errors": summary.requests.errors,
    }
    for metric in LATENCY:
        for stat in STAT_KEYS:
            cols[f"{metric}_{stat}"] = getattr(getattr(summary, metric), stat)
    for field in ("input_tokens_per_s", "output_tokens_per_s", "total_tokens_per_s", "requests_per_s",
                  "goodput_requests_per_s", "good_tokens_per_s", "slo_attainment", "token_count_source", "itl_basis",
                  *StepCosts.model_fields):  # fmt: skip
        cols[field] = getattr(summary, field)
    cols["input_tokens_mean"] = summary.input_tokens.mean
    cols["output_tokens_mean"] = summary.output_tokens.mean
    cols["tokens_per_s_per_user_p50"] = summary.tokens_per_s_per_user.p50
    cols["client_bound"] = summary.quality.client_bound
    cols["osl_mismatch_pct"] = summary.quality.osl_mismatch_pct
    cols["usage_tokenizer_diff_pct"] = summary.quality.usage_tokenizer_diff_pct
    cols["energy_source"] = summary.energy_source if summary.tokens_per_joule is not None else None
    cols["energy_joules"] = summary.telemetry.energy_j if summary.telemetry is not None else None
    return cols


def sample_row(run_id: int, step_index: int, s: Sample, origin_ns: int) -> dict[str, object]:
    offsets = array("f", [(t - s.sent_ns) / 1e6 for t in s.chunk_ns]).tobytes() if s.chunk_ns else None
    tokens = array("H", [min(t, 65535) for t in s.chunk_tokens]).tobytes() if s.chunk_tokens else None
    return {
        "run_id": run_id,
        "step_index": step_index,
        "seq": s.seq,
        "warmup": s.warmup,
        "sent_offset_ms": (s.sent_ns - origin_ns) / 1e6,
        "ttft_ms": s.ttft_ms,
        "ttfat_ms": s.ttfat_ms,
        "e2e_ms": s.e2e_ms,
        "end_ms": None if s.end_ns is None else (s.end_ns - s.sent_ns) / 1e6,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "reasoning_tokens": s.reasoning_tokens,
        "requested_output_tokens": s.requested_output_tokens,
        "tokenizer_output_tokens": s.tokenizer_output_tokens,
        "chunk_count": len(s.chunk_ns),
        "chunk_offsets": offsets,
        "chunk_tokens": tokens,
        "requested_input_tokens": s.requested_input_tokens,
        "cached_tokens": s.cached_tokens,
        "expected_cached_tokens": s.expected_cached_tokens,
        "session": s.session,
        "turn": s.turn,
        "dispatch_lag_ms": s.dispatch_lag_ms,
        "trial": s.trial,
        "finish_reason": s.finish_reason,
        "error_kind": s.error_kind,
        "error_detail": s.error_detail,
        "http_status": s.http_status,
        "retry_after_s": s.retry_after_s,
    }


def sample_from_row(row: RequestSample, token_source: str | None) -> Sample:
    """A stored sample back as the probe saw it (times relative to the step's first send)."""
    sent = int(row.sent_offset_ms * 1e6)
    offsets = array("f")
    if row.chunk_offsets:
        offsets.frombytes(row.chunk_offsets)
    tokens: list[int] | None = None
    if row.chunk_tokens:
        packed = array("H")
        packed.frombytes(row.chunk_tokens)
        tokens = list(packed)
    chunk_ns = [sent + int(o * 1e6) for o in offsets]
    sample = Sample(
        seq=row.seq,
        step_index=row.step_index,
        warmup=row.warmup,
        requested_output_tokens=row.requested_output_tokens,
        sent_ns=sent,
        first_content_ns=None if row.ttft_ms is None else sent + int(row.ttft_ms * 1e6),
        first_answer_ns=None if row.ttfat_ms is None else sent + int(row.ttfat_ms * 1e6),
        last_content_ns=chunk_ns[-1] if chunk_ns else None,
        # The step's window ends at the last request's end (stream closed), not its last token.
        end_ns=sent + int(row.end_ms * 1e6)
        if row.end_ms is not None
        else (None if row.e2e_ms is None else sent + int(row.e2e_ms * 1e6)),
        chunk_ns=chunk_ns,
        chunk_tokens=tokens,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        reasoning_tokens=row.reasoning_tokens,
        tokenizer_output_tokens=row.tokenizer_output_tokens,
        token_source=token_source or "estimated",
        finish_reason=row.finish_reason,
        error_kind=row.error_kind,
        error_detail=row.error_detail,
        http_status=row.http_status,
        retry_after_s=row.retry_after_s,
        requested_input_tokens=row.requested_input_tokens,
        cached_tokens=row.cached_tokens,
        expected_cached_tokens=row.expected_cached_tokens,
        session=row.session,
        turn=row.turn,
        scheduled_ns=None if row.dispatch_lag_ms is None else sent - int(row.dispatch_lag_ms * 1e6),
        trial=row.trial,
    )
    if sample.end_ns is None:
        sample.end_ns = sent
    return sample
