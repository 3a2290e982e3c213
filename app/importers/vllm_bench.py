"""`vllm bench serve --save-result` JSON; with `--save-detailed`, per-request lists (start
times, TTFTs, ITLs, latencies, lengths, errors) that become samples.

Definitions (vLLM's benchmarks/serve.py): its TPOT is smartbench's TPOT; its ITL is the gap
between chunks (smartbench's ITL per chunk). Its TTFT counts from before the request is posted,
connection set-up included on a new connection (not separable from the file: flagged).
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.importers.base import COUNTED, Doc, ImportedRun, ImportedStep, ImportProblem
from app.probe.types import Sample
from app.summary import Distribution, Requests

NS = 1_000_000_000
DETAIL = ("start_times", "ttfts", "itls", "latencies", "output_lens", "input_lens", "errors")


def is_vllm(doc: Doc) -> bool:
    data = doc.data
    return (
        isinstance(data, dict) and "mean_tpot_ms" in data and "backend" in data and "max_concurrency" in data
    )


def _load(doc: Doc) -> tuple[int | None, float | None]:
    concurrency = doc.get("max_concurrency", default=None, kind=int)
    rate = doc.get("request_rate", default="inf", kind=(int, float, str))
    if isinstance(rate, str):
        if rate.lower() not in ("inf", "infinity"):
            raise doc.problem(("request_rate",), "expected a number or 'inf'")
        rate = None
    if rate is None and concurrency is None:
        raise doc.problem(
            ("max_concurrency",), "an unlimited rate without a concurrency has no load to file it under"
        )
    return (concurrency, None) if rate is None else (concurrency, float(rate))


def _samples(doc: Doc) -> list[Sample] | None:
    if not all(key in doc.data for key in DETAIL):
        return None
    lists = {key: doc.get(key, kind=list) for key in DETAIL}
    count = len(lists["start_times"])
    for key, values in lists.items():
        if len(values) != count:
            raise doc.problem((key,), f"{len(values)} entries where start_times has {count}")
    samples = []
    for i in range(count):
        start = doc.number("start_times", i)
        assert start is not None
        sent = int(start * NS)
        error = doc.get("errors", i, kind=str)
        sample = Sample(seq=i, sent_ns=sent, token_source=COUNTED)
        if error:
            sample.error_kind, sample.error_detail = "other", error[:200]
            sample.end_ns = sent + int((doc.number("latencies", i, default=0.0) or 0.0) * NS)
        else:
            ttft, latency = doc.number("ttfts", i), doc.number("latencies", i)
            assert ttft is not None and latency is not None
            gaps = doc.get("itls", i, kind=list)
            first = sent + int(ttft * NS)
            chunks = [first]
            for j in range(len(gaps)):
                chunks.append(chunks[-1] + int((doc.number("itls", i, j) or 0.0) * NS))
            sample.first_content_ns = sample.first_answer_ns = first
            sample.chunk_ns = chunks
            sample.last_content_ns = sample.end_ns = max(chunks[-1], sent + int(latency * NS))
            sample.output_tokens = int(doc.number("output_lens", i) or 0)
            sample.input_tokens = int(doc.number("input_lens", i) or 0) or None
        samples.append(sample)
    return samples


def _aggregates(doc: Doc) -> dict[str, object]:
    def block(name: str) -> Distribution:
        return Distribution(
            mean=doc.number(f"mean_{name}_ms", default=None),
            p50=doc.number(f"median_{name}_ms", default=None),
            p90=doc.number(f"p90_{name}_ms", default=None),
            p95=doc.number(f"p95_{name}_ms", default=None),
            p99=doc.number(f"p99_{name}_ms", default=None),
        )

    completed = int(doc.number("completed") or 0)
    failed = int(doc.number("failed", default=0) or 0)
    return {
        "ttft_ms": block("ttft"),
        "ttfat_ms": block("ttft"),
        "tpot_ms": block("tpot"),
        "itl_ms": block("itl"),
        "e2e_ms": block("e2el") if "mean_e2el_ms" in doc.data else Distribution(),
        "output_tokens_per_s": doc.number("output_throughput", default=None),
        "total_tokens_per_s": doc.number("total_token_throughput", default=None),
        "requests_per_s": doc.number("request_throughput", default=None),
        "duration_s": doc.number("duration", default=0.0) or 0.0,
        "requests": Requests(sent=completed + failed, completed=completed, failed=failed),
        "itl_basis": "chunk",
        "token_count_source": "tokenizer",
    }


def parse(docs: list[Doc]) -> ImportedRun:
    steps = []
    stamps = []
    for doc in docs:
        concurrency, rate = _load(doc)
        samples = _samples(doc)
        figures = {key: doc.number(key, default=None) for key in
                   ("mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms", "output_throughput", "request_throughput")}  # fmt: skip
        steps.append(
            ImportedStep(
                concurrency,
                rate,
                samples,
                aggregates={} if samples else _aggregates(doc),
                tool_figures=figures,
            )
        )
        raw = doc.get("date", default=None, kind=str)
        try:
            stamps.append(datetime.strptime(raw, "%Y%m%d-%H%M%S").replace(tzinfo=UTC) if raw else None)
        except ValueError as exc:
            raise doc.problem(("date",), "expected YYYYmmdd-HHMMSS") from exc
    if not steps:
        raise ImportProblem("(none)", "no file")
    order = sorted(range(len(steps)), key=lambda i: (steps[i].request_rate or 0, steps[i].concurrency or 0))
    detailed = all(step.samples for step in steps)
    notes = [
        "vLLM's TPOT is smartbench's TPOT; its ITL is smartbench's ITL per chunk (itl_basis: chunk)",
        "vLLM's TTFT counts from before the request was posted: a request that opened a connection includes it",
    ]
    if not detailed:
        notes.append(
            "saved without --save-detailed: steps carry vLLM's aggregates (no samples, no p90/p95 TTFT)"
        )
    when = [s for s in stamps if s is not None]
    return ImportedRun(
        tool="vllm",
        tool_version=None,
        files=[doc.file for doc in docs],
        steps=[steps[i] for i in order],
        started_at=min(when) if when else None,
        finished_at=max(when) if when else None,
        model=docs[0].get("model_id", default=None, kind=str),
        notes=notes,
    )
