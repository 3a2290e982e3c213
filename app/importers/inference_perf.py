"""inference-perf's report folder: `stage_N_lifecycle_metrics.json` per load stage and, when
`per_request: true`, `per_request_lifecycle_metrics.json` whose requests become samples
(split over the stages in order of their start, by each stage's request count).

Definitions (inference-perf's docs/reports.md): its `time_per_output_token` is smartbench's
TPOT; its `normalized_time_per_output_token` (latency / output tokens) includes the first token;
its `inter_token_latency` is the gap between chunks (smartbench's ITL per chunk). Times are in
seconds, converted to milliseconds.
"""

from __future__ import annotations

import re

from app.importers.base import COUNTED, Doc, ImportedRun, ImportedStep, ImportProblem, distribution
from app.probe.types import Sample
from app.summary import Requests

NS = 1_000_000_000
STAGE_RE = re.compile(r"stage_(\d+)_lifecycle_metrics\.json$")
PER_REQUEST = "per_request_lifecycle_metrics.json"


def is_stage(file: str) -> bool:
    return STAGE_RE.search(file) is not None


def is_per_request(file: str) -> bool:
    return file.endswith(PER_REQUEST)


def _stage_index(file: str) -> int:
    match = STAGE_RE.search(file)
    assert match is not None
    return int(match.group(1))


def _samples(doc: Doc) -> list[Sample]:
    requests = doc.get(kind=list) if isinstance(doc.data, list) else None
    if requests is None:
        raise ImportProblem(doc.file, "expected a list of requests")
    samples = []
    for i, _ in enumerate(requests):
        start = doc.number(i, "start_time")
        end = doc.number(i, "end_time")
        assert start is not None and end is not None
        sample = Sample(seq=i, sent_ns=int(start * NS), end_ns=int(end * NS), token_source=COUNTED)
        error = doc.get(i, "error", default=None)
        if error:
            sample.error_kind = "other"
            sample.error_detail = str(error.get("error_msg") if isinstance(error, dict) else error)[:200]
        else:
            times = doc.get(i, "info", "response_metrics", "chunk_times", default=None, kind=list)
            if not times:
                raise doc.problem(
                    (i, "info", "response_metrics", "chunk_times"), "a streamed request without chunk times"
                )
            path = (i, "info", "response_metrics", "chunk_times")
            sample.chunk_ns = [int((doc.number(*path, j) or 0.0) * NS) for j in range(len(times))]
            sample.first_content_ns = sample.first_answer_ns = sample.chunk_ns[0]
            sample.last_content_ns = sample.chunk_ns[-1]
            usage = doc.get(i, "info", "response_metrics", "server_usage", default=None, kind=dict)
            if usage and isinstance(usage.get("completion_tokens"), int):
                usage_path = (i, "info", "response_metrics", "server_usage")
                sample.output_tokens = doc.integer(*usage_path, "completion_tokens")
                sample.token_source = "usage"
                if isinstance(usage.get("prompt_tokens"), int):
                    sample.input_tokens = doc.integer(*usage_path, "prompt_tokens")
            else:
                out = doc.number(i, "info", "response_metrics", "output_tokens", default=None)
                sample.output_tokens = int(out) if out is not None else None
        samples.append(sample)
    samples.sort(key=lambda s: s.sent_ns)
    for seq, sample in enumerate(samples):
        sample.seq = seq
    return samples


def _aggregates(doc: Doc) -> dict[str, object]:
    def block(name: str) -> object:
        values = doc.get("successes", "latency", name, default={}, kind=dict) or {}
        return distribution(values, scale=1000.0, names={"p50": "median"})

    ok = int(doc.number("successes", "count", default=0) or 0)
    failed = int(doc.number("failures", "count", default=0) or 0)
    return {
        "ttft_ms": block("time_to_first_token"),
        "ttfat_ms": block("time_to_first_token"),
        "tpot_ms": block("time_per_output_token"),
        "itl_ms": block("inter_token_latency"),
        "e2e_ms": block("request_latency"),
        "output_tokens_per_s": doc.number("successes", "throughput", "output_tokens_per_sec", default=None),
        "input_tokens_per_s": doc.number("successes", "throughput", "input_tokens_per_sec", default=None),
        "total_tokens_per_s": doc.number("successes", "throughput", "total_tokens_per_sec", default=None),
        "requests_per_s": doc.number("successes", "throughput", "requests_per_sec", default=None),
        "duration_s": doc.number("benchmark_time_seconds", default=0.0) or 0.0,
        "requests": Requests(sent=ok + failed, completed=ok, failed=failed),
        "itl_basis": "chunk",
        "token_count_source": "tokenizer",
    }


def parse(files: list[tuple[str, bytes]]) -> ImportedRun:
    stages = sorted(((n, r) for n, r in files if is_stage(n)), key=lambda f: _stage_index(f[0]))
    if not stages:
        raise ImportProblem(files[0][0], "no stage_N_lifecycle_metrics.json among the files")
    docs = [Doc.parse(name, raw) for name, raw in stages]
    per_request = next((Doc.parse(n, r) for n, r in files if is_per_request(n)), None)
    samples = _samples(per_request) if per_request is not None else None
    steps = []
    taken = 0
    for doc in docs:
        rate = doc.number("load_summary", "requested_rate", default=None)
        concurrency = doc.get("load_summary", "concurrency", default=None, kind=int)
        if rate is None and concurrency is None:
            raise doc.problem(
                ("load_summary", "requested_rate"), "missing (no rate or concurrency for this stage)"
            )
        count = int(doc.number("successes", "count", default=0) or 0) + int(
            doc.number("failures", "count", default=0) or 0
        )
        figures = {
            "time_to_first_token_mean_s": doc.number("successes", "latency", "time_to_first_token", "mean", default=None),
            "time_per_output_token_mean_s": doc.number("successes", "latency", "time_per_output_token", "mean", default=None),
            "output_tokens_per_sec": doc.number("successes", "throughput", "output_tokens_per_sec", default=None),
        }  # fmt: skip
        if samples is not None:
            mine = samples[taken : taken + count]
            if len(mine) != count:
                raise ImportProblem(per_request.file if per_request else doc.file,
                                    f"{len(samples)} requests, fewer than the stages count ({taken + count})")  # fmt: skip
            taken += count
            steps.append(ImportedStep(concurrency, None if concurrency else rate, mine, tool_figures=figures))
        else:
            steps.append(ImportedStep(concurrency, None if concurrency else rate, None,
                                      aggregates=_aggregates(doc), tool_figures=figures))  # fmt: skip
    if samples is not None and taken != len(samples):
        raise ImportProblem(
            per_request.file if per_request else "", f"{len(samples)} requests for {taken} in the stages"
        )
    notes = [
        "inference-perf's time_per_output_token is smartbench's TPOT; its normalized_time_per_output_token "
        "(first token included) is not used; its inter_token_latency is smartbench's ITL per chunk",
        "inference-perf writes no version into its reports",
    ]
    if samples is None:
        notes.append("no per-request report: steps carry inference-perf's aggregates (no samples)")
    return ImportedRun(
        tool="inference-perf", tool_version=None, files=[n for n, _ in files], steps=steps, notes=notes
    )
