"""GuideLLM's `benchmarks.json` (report version 2): one benchmark per load, each with its
requests' timings (successful, errored, incomplete) that become samples.

Definitions (GuideLLM's docs/metrics.md): its TPOT is request latency / output tokens, the first
token included; its ITL is (last token - first token) / (tokens - 1) per request, which is
smartbench's TPOT. smartbench recomputes both from the timings. The file has no per-chunk times,
so smartbench's ITL (per token or chunk gap) is not available for GuideLLM imports.
"""

from __future__ import annotations

from app.importers.base import COUNTED, Doc, ImportedRun, ImportedStep, ImportProblem, timestamp
from app.probe.types import Sample

NS = 1_000_000_000


def is_guidellm(doc: Doc) -> bool:
    data = doc.data
    return (
        isinstance(data, dict)
        and "benchmarks" in data
        and isinstance(data.get("metadata"), dict)
        and ("guidellm_version" in data["metadata"])
    )


def _load(doc: Doc, i: int) -> tuple[int | None, float | None]:
    strategy = doc.get("benchmarks", i, "config", "strategy", kind=dict)
    kind = strategy.get("type_")
    if kind == "synchronous":
        return 1, None
    if kind == "concurrent":
        return int(doc.number("benchmarks", i, "config", "strategy", "streams") or 1), None
    if kind in ("constant", "poisson", "async"):
        rate = doc.number("benchmarks", i, "config", "strategy", "rate", default=None)
        if rate is None:
            raise doc.problem(("benchmarks", i, "config", "strategy", "rate"), "missing")
        return doc.integer("benchmarks", i, "config", "strategy", "max_concurrency", default=None), rate
    if kind == "throughput":
        return int(doc.number("benchmarks", i, "config", "strategy", "max_concurrency") or 1), None
    raise doc.problem(("benchmarks", i, "config", "strategy", "type_"), f"unknown strategy {kind!r}")


def _sample(doc: Doc, path: tuple[str | int, ...], seq: int, status: str) -> Sample:
    def stamp(key: str, *, default: object = ...) -> float | None:
        return doc.number(*path, "info", "timings", key, default=default)

    start = stamp("request_start")
    assert start is not None
    sent = int(start * NS)
    end = stamp("request_end", default=None)
    sample = Sample(seq=seq, sent_ns=sent, end_ns=int(end * NS) if end else None, token_source=COUNTED)
    if status != "successful":
        sample.error_kind = "incomplete" if status == "incomplete" else "other"
        detail = doc.get(*path, "info", "error", default=None)
        sample.error_detail = str(detail)[:200] if detail else status
        return sample
    first, last = stamp("first_token_iteration", default=None), stamp("last_token_iteration", default=None)
    if first is None or last is None:
        raise doc.problem(
            (*path, "info", "timings", "first_token_iteration"), "a successful request without token times"
        )
    sample.first_content_ns = sample.first_answer_ns = int(first * NS)
    sample.last_content_ns = int(last * NS)
    out = doc.number(*path, "output_metrics", "text_tokens", default=None)
    if out is None:
        out = doc.number(*path, "output_metrics", "total_tokens", default=None)
    sample.output_tokens = int(out) if out is not None else None
    prompt = doc.number(*path, "input_metrics", "text_tokens", default=None)
    sample.input_tokens = int(prompt) if prompt is not None else None
    return sample


def parse(doc: Doc) -> ImportedRun:
    file = doc.file
    benchmarks = doc.get("benchmarks", kind=list)
    if not benchmarks:
        raise doc.problem(("benchmarks",), "no benchmark in the file")
    steps = []
    for i, _ in enumerate(benchmarks):
        concurrency, rate = _load(doc, i)
        samples: list[Sample] = []
        for status in ("successful", "errored", "incomplete"):
            for j, _request in enumerate(doc.get("benchmarks", i, "requests", status, default=[], kind=list)):
                samples.append(_sample(doc, ("benchmarks", i, "requests", status, j), len(samples), status))
        if not samples:
            raise doc.problem(("benchmarks", i, "requests"), "no request timings in this benchmark")
        figures = {
            "time_to_first_token_ms_mean": doc.number("benchmarks", i, "metrics", "time_to_first_token_ms", "successful", "mean", default=None),
            "time_per_output_token_ms_mean": doc.number("benchmarks", i, "metrics", "time_per_output_token_ms", "successful", "mean", default=None),
            "inter_token_latency_ms_mean": doc.number("benchmarks", i, "metrics", "inter_token_latency_ms", "successful", "mean", default=None),
        }  # fmt: skip
        steps.append(ImportedStep(concurrency, rate, samples, tool_figures=figures))
    if not doc.get("metadata", "guidellm_version", kind=str):
        raise ImportProblem(file, "no GuideLLM version", field="metadata.guidellm_version")
    return ImportedRun(
        tool="guidellm",
        tool_version=doc.get("metadata", "guidellm_version", kind=str),
        files=[file],
        steps=steps,
        started_at=timestamp(doc, "benchmarks", 0, "start_time"),
        finished_at=timestamp(doc, "benchmarks", -1, "end_time"),
        model=None,
        notes=[
            "GuideLLM's TPOT includes the first token and its ITL is smartbench's TPOT: both recomputed "
            "by smartbench from each request's timings",
            "no per-chunk times in the file: smartbench's ITL is not available",
            "output tokens as GuideLLM counted them (its tokenizer or the server's usage)",
        ],
    )
