"""Results of other benchmark tools, read into smartbench's shapes: AIPerf, GenAI-Perf,
`vllm bench serve`, GuideLLM and inference-perf. `parse` recognises the files (or takes the
format named), `step_results` turns the steps into smartbench step summaries: from the
requests with smartbench's own statistics when the file has them, else from the tool's
aggregates under smartbench's names. Pure: no database, no network."""

from __future__ import annotations

import logging

from app.domain import SLO
from app.importers import aiperf, guidellm, inference_perf, vllm_bench
from app.importers.base import Doc, ImportedRun, ImportProblem
from app.probe.stats import summarize_step
from app.probe.types import StepResult
from app.summary import StepSLO, StepSummary

# Files the tools write beside their results, never results themselves: skipped, so a whole
# artifact folder can be given (AIPerf's inputs and readiness marker, GenAI-Perf's inputs and
# perf_analyzer's raw export).
COMPANIONS = ("inputs.json", "profile_export.json", ".aiperf_results_ready.json")
FORMATS = ("auto", "aiperf", "genai-perf", "vllm", "guidellm", "inference-perf")
MAX_FILES = 64

log = logging.getLogger("smartbench.imports")


Kind = tuple[str, bytes, str, Doc | None]  # name, bytes, what it is, its JSON when parsed


def _kind(name: str, raw: bytes) -> Kind:
    """What one file is (a tool's summary, its records, or an inference-perf report part), with
    its JSON when recognising it needed the parse: no file is parsed twice."""
    if aiperf.is_records(name, raw):
        return name, raw, "aiperf-records", None
    if inference_perf.is_stage(name) or inference_perf.is_per_request(name):
        return name, raw, "inference-perf", None
    if name.endswith((".yaml", ".yml")) or name.endswith(
        ("summary_lifecycle_metrics.json", "validation.json")
    ):
        return name, raw, "inference-perf-extra", None
    doc = Doc.parse(name, raw)
    for kind, recognise in (
        ("aiperf", aiperf.is_aiperf),
        ("genai-perf", aiperf.is_genai_perf),
        ("vllm", vllm_bench.is_vllm),
        ("guidellm", guidellm.is_guidellm),
    ):
        if recognise(doc):
            return name, raw, kind, doc
    raise ImportProblem(
        name, "not a file smartbench can import (AIPerf, GenAI-Perf, vllm bench, GuideLLM or inference-perf)"
    )


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def parse(files: list[tuple[str, bytes]], fmt: str = "auto") -> ImportedRun:
    """The files as one run, or an ImportProblem: a parser that fails in a way nobody foresaw
    still answers with the files' names, never an error of the server."""
    try:
        return _parse(files, fmt)
    except ImportProblem:
        raise
    except (
        ValueError,
        TypeError,
        OverflowError,
        KeyError,
        IndexError,
        AttributeError,
        AssertionError,
    ) as exc:
        names = ", ".join(name for name, _ in files[:4]) or "(none)"
        log.warning("an import failed unforeseen: %s", type(exc).__name__)
        raise ImportProblem(names, f"not a result file smartbench can read ({type(exc).__name__})") from exc


def _parse(files: list[tuple[str, bytes]], fmt: str) -> ImportedRun:
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
    kinds = [_kind(name, raw) for name, raw in files]
    tools = {kind.removesuffix("-records").removesuffix("-extra") for _, _, kind, _ in kinds}
    if len(tools) > 1:
        raise ImportProblem(
            files[0][0], f"files of different tools in one import: {', '.join(sorted(tools))}"
        )
    tool = tools.pop()
    if fmt != "auto" and fmt != tool:
        raise ImportProblem(files[0][0], f"asked to import {fmt}, but the file is {tool}'s")
    docs = [doc for _, _, kind, doc in kinds if kind == tool and doc is not None]
    if tool in ("aiperf", "genai-perf"):
        records = [(n, r) for n, r, k, _ in kinds if k == "aiperf-records"]
        if not docs:
            raise ImportProblem(records[0][0], "records without their profile_export_aiperf.json")
        return aiperf.parse(docs, records, genai=tool == "genai-perf")
    if tool == "vllm":
        return vllm_bench.parse(docs)
    if tool == "guidellm":
        if len(kinds) != 1:
            raise ImportProblem(
                files[1][0], "GuideLLM keeps a whole sweep in one benchmarks.json: import one file"
            )
        return guidellm.parse(docs[0])
    return inference_perf.parse([(n, r) for n, r, k, _ in kinds if k == "inference-perf"])


def step_results(run: ImportedRun, slo: SLO) -> list[StepResult]:
    """The steps as smartbench summarises its own: from the samples when there are any. The run
    has passed `check` (app/importers/check.py) first."""
    results = []
    seq = 0  # a run numbers its requests across its steps
    for index, step in enumerate(run.steps):
        if step.samples:
            for sample in step.samples:
                sample.step_index, sample.seq = index, seq
                seq += 1
            summary = summarize_step(
                step.samples, concurrency=step.concurrency, request_rate=step.request_rate, slo=slo
            )
        else:
            summary = StepSummary.model_validate(
                {"concurrency": step.concurrency, "request_rate": step.request_rate, **step.aggregates}
            )
            summary = _judged(summary, slo)
        results.append(StepResult(index, step.concurrency, step.request_rate, step.samples or [], summary))
    return results


def _judged(summary: StepSummary, slo: SLO) -> StepSummary:
    """An aggregate step's SLO verdict, from the percentiles the tool reported."""

    met = summary.meets(slo) if slo.defined else False
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
