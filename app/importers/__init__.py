"""Results of other benchmark tools, read into smartbench's shapes: AIPerf, GenAI-Perf,
`vllm bench serve`, GuideLLM and inference-perf. `parse` recognises the files (or takes the
format named), `step_results` turns the steps into smartbench step summaries: from the
requests with smartbench's own statistics when the file has them, else from the tool's
aggregates under smartbench's names. Pure: no database, no network."""

from __future__ import annotations

from app.domain import SLO
from app.importers import aiperf, guidellm, inference_perf, vllm_bench
from app.importers.base import Doc, ImportedRun, ImportProblem
from app.probe.runner import StepResult
from app.probe.stats import summarize_step
from app.summary import StepSLO, StepSummary

# Files the tools write beside their results, never results themselves: skipped, so a whole
# artifact folder can be given (AIPerf's inputs and readiness marker, GenAI-Perf's inputs and
# perf_analyzer's raw export).
COMPANIONS = ("inputs.json", "profile_export.json", ".aiperf_results_ready.json")
FORMATS = ("auto", "aiperf", "genai-perf", "vllm", "guidellm", "inference-perf")
MAX_FILES = 64


def _kind(name: str, raw: bytes) -> str:
    """What one file is: a tool's summary, its records, or an inference-perf report part."""
    if aiperf.is_records(name, raw):
        return "aiperf-records"
    if inference_perf.is_stage(name):
        return "inference-perf"
    if inference_perf.is_per_request(name):
        return "inference-perf"
    if name.endswith((".yaml", ".yml")) or name.endswith(
        ("summary_lifecycle_metrics.json", "validation.json")
    ):
        return "inference-perf-extra"
    doc = Doc.parse(name, raw)
    if aiperf.is_aiperf(doc):
        return "aiperf"
    if aiperf.is_genai_perf(doc):
        return "genai-perf"
    if vllm_bench.is_vllm(doc):
        return "vllm"
    if guidellm.is_guidellm(doc):
        return "guidellm"
    raise ImportProblem(
        name, "not a file smartbench can import (AIPerf, GenAI-Perf, vllm bench, GuideLLM or inference-perf)"
    )


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def parse(files: list[tuple[str, bytes]], fmt: str = "auto") -> ImportedRun:
    if not files:
        raise ImportProblem("(none)", "no file given")
    if len(files) > MAX_FILES:
        raise ImportProblem(files[MAX_FILES][0], f"at most {MAX_FILES} files in one import")
    if fmt not in FORMATS:
        raise ImportProblem(files[0][0], f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    results = [(name, raw) for name, raw in files if _basename(name) not in COMPANIONS]
    if not results:
        raise ImportProblem(
            files[0][0], "no result file among the files, only what the tools write beside them"
        )
    files = results
    kinds = [(name, raw, _kind(name, raw)) for name, raw in files]
    tools = {kind.removesuffix("-records").removesuffix("-extra") for _, _, kind in kinds}
    if len(tools) > 1:
        raise ImportProblem(
            files[0][0], f"files of different tools in one import: {', '.join(sorted(tools))}"
        )
    tool = tools.pop()
    if fmt != "auto" and fmt != tool:
        raise ImportProblem(files[0][0], f"asked to import {fmt}, but the file is {tool}'s")
    if tool in ("aiperf", "genai-perf"):
        summaries = [(n, r) for n, r, k in kinds if k == tool]
        records = [(n, r) for n, r, k in kinds if k == "aiperf-records"]
        if not summaries:
            raise ImportProblem(records[0][0], "records without their profile_export_aiperf.json")
        return aiperf.parse(summaries, records, genai=tool == "genai-perf")
    if tool == "vllm":
        return vllm_bench.parse([(n, r) for n, r, _ in kinds])
    if tool == "guidellm":
        if len(kinds) != 1:
            raise ImportProblem(
                files[1][0], "GuideLLM keeps a whole sweep in one benchmarks.json: import one file"
            )
        return guidellm.parse(*files[0])
    return inference_perf.parse([(n, r) for n, r, k in kinds if k == "inference-perf"])


def step_results(run: ImportedRun, slo: SLO) -> list[StepResult]:
    """The steps as smartbench summarises its own: from the samples when there are any."""
    results = []
    seq = 0  # a run numbers its requests across its steps
    _check_times(run)
    for index, step in enumerate(run.steps):
        if step.samples:
            for sample in step.samples:
                sample.step_index, sample.seq = index, seq
                seq += 1
            summary = summarize_step(
                step.samples, concurrency=step.concurrency, request_rate=step.request_rate, slo=slo
            )
        else:
            summary = StepSummary(
                concurrency=step.concurrency, request_rate=step.request_rate, **step.aggregates
            )
            summary = _judged(summary, slo)
        results.append(StepResult(index, step.concurrency, step.request_rate, step.samples or [], summary))
    return results


MAX_SPAN_NS = 86_400 * 10**9 * 7  # a request's stamps lie within a week of its start


def _check_times(run: ImportedRun) -> None:
    """Stamps a request cannot have (a file edited by hand, a unit mistaken) are refused here,
    before they reach a column."""
    for index, step in enumerate(run.steps):
        for i, sample in enumerate(step.samples or []):
            stamps = [sample.first_content_ns, sample.last_content_ns, sample.end_ns, *sample.chunk_ns]
            if any(t is not None and not -MAX_SPAN_NS < t - sample.sent_ns < MAX_SPAN_NS for t in stamps):
                where = run.files[0] if len(run.files) == 1 else ", ".join(run.files)
                raise ImportProblem(
                    where, f"step {index + 1}, request {i + 1}: times more than a week from its start"
                )


def _judged(summary: StepSummary, slo: SLO) -> StepSummary:
    """An aggregate step's SLO verdict, from the percentiles the tool reported."""

    data = summary.as_dict()
    met = slo.step_meets(data) if slo.defined else False
    return summary.model_copy(
        update={
            "slo": StepSLO(
                ttft_ms=slo.ttft_ms,
                tpot_ms=slo.tpot_ms,
                e2e_ms=slo.e2e_ms,
                percentile=slo.percentile,
                met=met,
            )
        }
    )
