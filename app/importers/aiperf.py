"""NVIDIA AIPerf (`profile_export_aiperf.json`, with `profile_export.jsonl` per-request records
when exported at `--export-level records`) and its predecessor GenAI-Perf
(`profile_export_genai_perf.json`, aggregates only).

Definitions (AIPerf's docs/metrics_reference.md; GenAI-Perf's README):
- Their `inter_token_latency` is (request latency - TTFT) / (OSL - 1): smartbench's TPOT.
- Their `inter_chunk_latency` is the gap between chunks: smartbench's ITL on a per-chunk basis.
- AIPerf's TTFT counts from before the connection: a request that opened one waited for it
  (`http_req_connection_overhead`). smartbench counts from the request sent, so per-request
  records are converted by removing that overhead; aggregates cannot be and are flagged.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from app.importers.base import COUNTED, Doc, ImportedRun, ImportedStep, ImportProblem, decode, distribution
from app.probe.types import Sample
from app.summary import Distribution, Requests

NS_PER_MS = 1_000_000


def is_aiperf(doc: Doc) -> bool:
    return isinstance(doc.data, dict) and "aiperf_version" in doc.data and "time_to_first_token" in doc.data


def is_genai_perf(doc: Doc) -> bool:
    data = doc.data
    return (
        isinstance(data, dict)
        and "time_to_first_token" in data
        and isinstance(data.get("input_config"), dict)
        and "perf_analyzer" in data["input_config"]
    )


def is_records(file: str, raw: bytes) -> bool:
    head = raw[:4096].lstrip()
    return (
        file.endswith(".jsonl") and head.startswith(b"{") and b'"metadata"' in head and b'"metrics"' in head
    )


def _load(doc: Doc) -> tuple[int | None, float | None]:
    """The step's load from the tool's own configuration."""
    phases = doc.get("input_config", "phases", default=None, kind=list)
    if phases:
        for i, phase in enumerate(phases):
            if isinstance(phase, dict) and phase.get("kind", "profiling") == "profiling":
                concurrency = doc.get("input_config", "phases", i, "concurrency", default=None, kind=int)
                rate = doc.get("input_config", "phases", i, "request_rate", default=None, kind=(int, float))
                if rate is None:
                    rate = doc.get("input_config", "phases", i, "rate", default=None, kind=(int, float))
                if rate is not None:
                    return concurrency, float(rate)
                return concurrency, None
    stimulus = doc.get("input_config", "perf_analyzer", "stimulus", default={}, kind=dict)
    if "request_rate" in stimulus:
        return None, doc.number("input_config", "perf_analyzer", "stimulus", "request_rate")
    if "concurrency" in stimulus:
        return int(doc.number("input_config", "perf_analyzer", "stimulus", "concurrency") or 1), None
    raise doc.problem(("input_config", "phases"), "no concurrency or request rate found")


def _aggregates(doc: Doc, tool: str) -> dict[str, object]:
    """The aggregates mapped onto smartbench's names (used when no records came with it)."""

    def block(name: str, scale: float = 1.0) -> Distribution:
        values = doc.get(name, default={}, kind=dict)
        return distribution(values, scale=scale, names={"mean": "avg"})

    count = int(doc.number("request_count", "avg", default=0) or 0)
    output_rate = doc.number("output_token_throughput", "avg", default=None)
    request_rate = doc.number("request_throughput", "avg", default=None)
    input_rate = doc.number("input_token_throughput", "avg", default=None)
    isl = doc.number("input_sequence_length", "avg", default=None)
    if input_rate is None and request_rate is not None and isl is not None:
        input_rate = request_rate * isl  # GenAI-Perf leaves it out: requests/s x mean input length
    errors = doc.get("error_summary", default=[], kind=list)
    failed = sum(
        doc.integer("error_summary", k, "count", default=0) or 0
        for k, e in enumerate(errors)
        if isinstance(e, dict)
    )
    return {
        "ttft_ms": block("time_to_first_token"),
        "ttfat_ms": block("time_to_first_output_token")
        if "time_to_first_output_token" in doc.data
        else block("time_to_first_token"),
        "tpot_ms": block("inter_token_latency"),  # their ITL is our TPOT
        "itl_ms": block("inter_chunk_latency") if "inter_chunk_latency" in doc.data else Distribution(),
        "e2e_ms": block("request_latency"),
        "input_tokens": block("input_sequence_length"),
        "output_tokens": block("output_sequence_length"),
        "tokens_per_s_per_user": block("output_token_throughput_per_user"),
        "output_tokens_per_s": output_rate,
        "input_tokens_per_s": input_rate,
        "total_tokens_per_s": None if input_rate is None or output_rate is None else input_rate + output_rate,
        "requests_per_s": request_rate,
        "duration_s": doc.number("benchmark_duration", "avg", default=0.0) or 0.0,
        "requests": Requests(sent=count + failed, completed=count, failed=failed),
        "itl_basis": "chunk",
        "token_count_source": "tokenizer",
    }


def _headline(doc: Doc) -> dict[str, float | None]:
    return {
        "time_to_first_token_avg_ms": doc.number("time_to_first_token", "avg", default=None),
        "inter_token_latency_avg_ms": doc.number("inter_token_latency", "avg", default=None),
        "request_latency_avg_ms": doc.number("request_latency", "avg", default=None),
        "output_token_throughput": doc.number("output_token_throughput", "avg", default=None),
        "request_throughput": doc.number("request_throughput", "avg", default=None),
    }


def records(file: str, raw: bytes) -> tuple[list[Sample], int]:
    """Per-request records as samples (their first send as the second item, for pairing)."""
    samples: list[Sample] = []
    for number, line in enumerate(decode(file, raw).splitlines(), start=1):
        if not line.strip():
            continue
        doc = Doc.parse(file, line.encode())
        doc.line = number
        start = int(doc.get("metadata", "request_start_ns", kind=int))
        end = int(doc.get("metadata", "request_end_ns", kind=int))
        warmup = doc.get("metadata", "benchmark_phase", default="profiling", kind=str) != "profiling"
        overhead = doc.number("metrics", "http_req_connection_overhead", "value", default=0.0) or 0.0
        sent = start + int(overhead * NS_PER_MS)
        error = doc.get("error", default=None)
        sample = Sample(seq=len(samples), warmup=warmup, sent_ns=sent, end_ns=end, token_source=COUNTED)
        if error:
            detail = error.get("message") if isinstance(error, dict) else str(error)
            code = error.get("code") if isinstance(error, dict) else None
            sample.error_kind = "http_error" if isinstance(code, int) and code >= 400 else "other"
            sample.http_status = code if isinstance(code, int) else None
            sample.error_detail = str(detail)[:200] if detail else None
        else:
            ttft = doc.number("metrics", "time_to_first_token", "value")
            latency = doc.number("metrics", "request_latency", "value")
            assert ttft is not None and latency is not None
            first = start + int(ttft * NS_PER_MS)
            listed = doc.get("metrics", "inter_chunk_latency", "value", default=[], kind=list)
            gaps = [doc.number("metrics", "inter_chunk_latency", "value", j) for j in range(len(listed))]
            chunks = [first, *(first + int(x) for x in np.cumsum(np.asarray(gaps, dtype=float) * NS_PER_MS))]
            sample.first_content_ns = sample.first_answer_ns = first
            sample.chunk_ns = chunks
            sample.last_content_ns = (
                max(chunks[-1], start + int(latency * NS_PER_MS))
                if gaps
                else start + int(latency * NS_PER_MS)
            )
            sample.output_tokens = int(doc.number("metrics", "output_sequence_length", "value") or 0)
            sample.input_tokens = (
                int(doc.number("metrics", "input_sequence_length", "value", default=0) or 0) or None
            )
        samples.append(sample)
    if not samples:
        raise ImportProblem(file, "no records")
    return samples, min(s.sent_ns for s in samples)


def parse(docs: list[Doc], record_files: list[tuple[str, bytes]], *, genai: bool) -> ImportedRun:
    tool = "genai-perf" if genai else "aiperf"
    if record_files and len(record_files) != len(docs):
        raise ImportProblem(
            record_files[0][0],
            f"{len(record_files)} records files for {len(docs)} summaries: give each run's pair",
        )
    versions = {d.get("aiperf_version", default=None, kind=str) for d in docs}
    if len(versions) > 1:
        raise docs[1].problem(
            ("aiperf_version",), f"files from different versions: {sorted(map(str, versions))}"
        )
    started = [_stamp(d, "start_time") for d in docs]
    order = sorted(range(len(docs)), key=lambda i: started[i] or datetime.min.replace(tzinfo=UTC))
    per_record = sorted((records(name, raw) for name, raw in record_files), key=lambda r: r[1])
    steps = []
    notes = [
        f"{tool}'s inter_token_latency is smartbench's TPOT ((E2E - TTFT) / (OSL - 1)); "
        "its inter_chunk_latency is smartbench's ITL per chunk (itl_basis: chunk)",
    ]
    for position, i in enumerate(order):
        doc = docs[i]
        concurrency, rate = _load(doc)
        requested = doc.number("input_config", "datasets", 0, "prompts", "osl", "mean", default=None) if not genai else (
            doc.number("input_config", "input", "output_tokens", "mean", default=None)
        )  # fmt: skip
        if per_record:
            samples = per_record[position][0]
            for s in samples:
                s.requested_output_tokens = int(requested) if requested else None
            steps.append(ImportedStep(concurrency, rate, samples, tool_figures=_headline(doc),
                                      requested_output_tokens=int(requested) if requested else None))  # fmt: skip
        else:
            steps.append(ImportedStep(concurrency, rate, None, aggregates=_aggregates(doc, tool),
                                      tool_figures=_headline(doc)))  # fmt: skip
    if per_record:
        notes.append(
            "TTFT from the records: the connection set-up AIPerf counted (http_req_connection_overhead) removed, "
            "as smartbench counts from the request sent"
        )
    else:
        notes.append(
            f"no per-request records: TTFT, TPOT and E2E are {tool}'s aggregates as it measured them "
            "(TTFT includes connection set-up for a request that opened a connection)"
        )
    first = docs[order[0]]
    return ImportedRun(
        tool=tool,
        tool_version=first.get("aiperf_version", default=None, kind=str),
        files=[d.file for d in docs] + [name for name, _ in record_files],
        steps=steps,
        started_at=started[order[0]],
        finished_at=_stamp(docs[order[-1]], "end_time"),
        model=_model(first),
        input_tokens=first.number("input_sequence_length", "avg", default=None),
        output_tokens=first.number("output_sequence_length", "avg", default=None),
        notes=notes,
    )


def _stamp(doc: Doc, key: str) -> datetime | None:
    raw = doc.get(key, default=None, kind=str)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise doc.problem((key,), "not an ISO date and time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _model(doc: Doc) -> str | None:
    models = doc.get("input_config", "models", "items", default=None, kind=list) or doc.get(
        "input_config", "model_names", default=None, kind=list
    )
    if models:
        first = models[0]
        return str(first.get("name") if isinstance(first, dict) else first)
    return None
