"""`smartbench probe` in a terminal: a progress bar while it runs, a table at the end."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from pathlib import Path

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.domain import label_of
from app.probe.inspect import inspect
from app.probe.process import ProbeOutcome, ProbeProcess, ProbeSpec
from app.probe.prompts import load_tokenizer
from app.probe.types import Target
from app.security.redact import VISIBLE
from app.summary import RunSummary, Trials


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _spread(
    trials: Trials | None, metric: str, stat: str | None, value: float | None, digits: int = 1
) -> str:
    """A value; with repeat trials, their mean and half its 95 % interval."""
    figure = trials.figure(metric, stat) if trials is not None else None
    if figure is None or figure.low is None or figure.high is None or value is None:
        return _fmt(value, digits)
    return f"{_fmt(value, digits)} ±{_fmt((figure.high - figure.low) / 2, digits)}"


def result_table(summary: RunSummary) -> Table:
    table = Table(title=f"smartbench probe · {summary.status}", show_lines=False)
    for column in (
        "load", "sent", "ok", "failed", "TTFT p50", "TTFT p99", "ITL p50", "TPOT p50", "E2E p99",
        "out tok/s", "req/s", "tok/s/user", "flags",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for step in summary.steps:
        flags = []
        quality = step.quality
        if quality.client_bound:
            flags.append("client-bound")
        if quality.osl_mismatch_flag:
            flags.append(f"OSL {quality.osl_mismatch_pct or 0:+.0f}%")
        if step.itl_basis == "chunk":
            per = f", {step.tokens_per_chunk_mean:.1f} tok/chunk" if step.tokens_per_chunk_mean else ""
            flags.append(f"ITL per chunk{per}")
        if step.requests.errors:
            flags.append(", ".join(f"{k}×{v}" for k, v in step.requests.errors.items()))
        if step.stopped is not None:
            flags.append(f"stopped: {step.stopped.reason} at {step.stopped.at_s:g} s")
        trials = step.trials
        if trials is not None:
            flags.append(f"mean of {trials.count} trials")
        spread = functools.partial(_spread, trials)
        table.add_row(
            step.load_label,
            str(step.requests.sent),
            str(step.requests.completed),
            str(step.requests.failed),
            spread("ttft_ms", "p50", step.ttft_ms.p50),
            spread("ttft_ms", "p99", step.ttft_ms.p99),
            _fmt(step.itl_ms.p50, 2),
            spread("tpot_ms", "p50", step.tpot_ms.p50, 2),
            _fmt(step.e2e_ms.p99),
            spread("output_tokens_per_s", None, step.output_tokens_per_s, 0),
            _fmt(step.requests_per_s, 2),
            _fmt(step.tokens_per_s_per_user.p50, 1),
            " ".join(flags),
        )
    table.caption = "latencies in ms; TTFT, ITL, TPOT as smartbench defines them (docs/DESIGN.md)" + (
        "; trials: mean ± half the 95 % interval" if any(s.trials for s in summary.steps) else ""
    )
    return table


def run_probe_command(*, spec: ProbeSpec, profile: str | None, json_out: str | None, console: Console) -> int:
    """Probe `spec.target` with `spec.workload` (`smartbench probe`): progress bars, the result
    table, and the run summary JSON when asked."""
    workload = spec.workload
    if spec.tokenizer is not None:
        try:
            load_tokenizer(spec.tokenizer)  # a bad path is a usage error, before any process starts
        except ValueError as exc:
            console.print(f"[red]smartbench:[/red] {exc}")
            return 2
    requests, search = workload.requests_per_step, workload.search
    planned = None if requests is None else requests + workload.warmup_requests
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks = (
            {}
            if search
            else {
                i: bar.add_task(label_of(workload.mode, lv), total=planned, start=False)
                for i, lv in enumerate(workload.levels)
            }
        )

        def progress(step: int, done: int, total: int | None) -> None:
            if step not in tasks:  # a search decides its loads as it goes
                tasks[step] = bar.add_task(f"search step {step + 1}", total=planned, start=False)
            bar.start_task(tasks[step])
            bar.update(tasks[step], completed=done)

        outcome = asyncio.run(_run(ProbeProcess(spec, on_progress=progress)))
    summary = outcome.summary(endpoint=spec.target.base_url, profile=profile)
    if outcome.environment is None:
        console.print(f"[red]smartbench: cannot probe:[/red] {outcome.error}")
        _write_json(summary, json_out)
        return 3
    console.print(result_table(summary))
    found = outcome.environment.search
    if found is not None:
        answer = "none" if found.capacity is None else f"{found.capacity:g}"
        console.print(
            f"SLO search: heaviest load meeting the SLO {answer} (measured); stopped: {found.stopped}"
        )
    for note in outcome.environment.notes:
        console.print(f"note: {note}")
    if outcome.status != "succeeded" and outcome.error:
        console.print(f"[red]smartbench: the run {outcome.status}:[/red] {outcome.error}")
    _write_json(summary, json_out)
    return 0 if outcome.status == "succeeded" else 1


def run_inspect_command(
    *,
    base_url: str,
    model: str,
    api: str,
    api_key: str | None,
    metrics_url: str | None,
    json_out: str | None,
    console: Console,
) -> int:
    """`smartbench probe --inspect`: the engine, its evidence and the checklist, no load."""
    found = asyncio.run(inspect(Target(base_url.rstrip("/"), model, api, api_key), metrics_url=metrics_url))
    if found.error:
        console.print(f"[red]smartbench: cannot inspect:[/red] {found.error}")
    version = f" {found.engine_version}" if found.engine_version else ""
    console.print(f"engine: [bold]{found.engine}{version}[/bold]   metrics: "
                  f"{'exposed at ' + str(found.metrics_url) if found.metrics_exposed else 'not found'}")  # fmt: skip
    for item in found.evidence:
        console.print(f"  {escape(item.source)}: {escape(item.saw)} ({item.engine} +{item.weight})")
    table = Table(title=f"conformance checklist {found.checklist_version}")
    for column in ("check", "result", "request"):
        table.add_column(column)
    colours = {
        "passed": "green",
        "failed": "red",
        "not_supported": "yellow",
        "not_observed": "dim",
        "inconclusive": "dim",
    }
    for check in found.checks:
        table.add_row(
            check.title, f"[{colours[check.status]}]{check.status.replace('_', ' ')}[/]", check.request
        )
    console.print(table)
    if json_out:
        data = orjson.dumps(found.as_dict(), option=orjson.OPT_INDENT_2) + b"\n"
        if json_out == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            Path(json_out).write_bytes(data)
    return 3 if found.error else 0


async def _run(probe: ProbeProcess) -> ProbeOutcome:
    """The probe runs in its own process; Ctrl-C (or SIGTERM) here asks it to stop and keeps
    what it measured."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, probe.cancel)
    return await probe.run()


def _write_json(summary: RunSummary, json_out: str | None) -> None:
    if not json_out:
        return
    # The operator's own terminal: the target's own words show.
    data = orjson.dumps(summary.model_dump(mode="json", context=VISIBLE), option=orjson.OPT_INDENT_2) + b"\n"
    if json_out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(json_out).write_bytes(data)
