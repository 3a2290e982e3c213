"""`smartbench probe`: one benchmark (or inspection) of an endpoint now, from the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.base import (
    cli,
    err,
    fail,
    out,
)

if TYPE_CHECKING:
    from app.datasets import DatasetContent
    from app.workloads import WorkloadSpec


def _levels(raw: str, kind: type) -> tuple[float, ...]:
    try:
        values = tuple(kind(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise fail(f"{raw!r} is not a comma-separated list of numbers", 2) from None
    if not values or any(v <= 0 for v in values):
        raise fail("load levels must be positive", 2)
    return values


def _workload(
    kind: str, *, dataset: Path | None, **given: object
) -> tuple[WorkloadSpec, DatasetContent | None]:
    """The workload the flags describe, and the file it replays (read and validated here)."""
    from pydantic import ValidationError

    from app.datasets import DatasetError, parse, sha256
    from app.workloads import WORKLOAD_KINDS, Dist, WorkloadSpec

    if kind not in WORKLOAD_KINDS:
        raise fail(f"--workload must be one of {', '.join(WORKLOAD_KINDS)}", 2)
    fields: dict[str, object] = {"kind": kind, "seed": given["seed"]}
    try:
        for flag, key in (
            ("input_dist", "input"),
            ("output_dist", "output"),
            ("turns", "turns"),
            ("think", "think_s"),
        ):
            if given[flag] is not None:
                fields[key] = Dist.parse(str(given[flag]))
        if given["context"]:
            fields["context_tokens"] = [int(v) for v in _levels(str(given["context"]), int)]
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    for key in ("burstiness", "groups", "prefix_tokens", "order", "system_tokens", "context_max"):
        if given[key] is not None:
            fields[key] = given[key]
    if given["sessions"]:
        fields["sessions"] = True
    content = None
    if dataset is not None:
        if not dataset.is_file():
            raise fail(f"{dataset}: no such file", 2)
        data = dataset.read_bytes()
        try:
            content = parse(data, str(dataset))
        except DatasetError as exc:
            raise fail(str(exc), 2) from None
        fields["dataset"] = dataset.name[:64]
        fields["dataset_sha256"] = sha256(data)
    try:
        spec = WorkloadSpec.model_validate(fields)
    except ValidationError as exc:
        raise fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()), 2) from None
    if spec.kind == "trace" and content is not None and not content.is_trace:
        raise fail(f"{dataset} holds conversations: use --workload dataset", 2)
    if spec.kind == "dataset" and content is not None and content.is_trace:
        raise fail(f"{dataset} is a trace: use --workload trace", 2)
    return spec, content


@cli.command()
def probe(
    base_url: Annotated[str, typer.Option(help="OpenAI-compatible root, e.g. http://host:8000/v1")],
    model: Annotated[str, typer.Option(help="Model name")],
    api: Annotated[str, typer.Option(help="chat or completions")] = "chat",
    api_key: Annotated[str | None, typer.Option(help="Bearer key", envvar="SMARTBENCH_PROBE_API_KEY")] = None,
    concurrency: Annotated[str | None, typer.Option(help="Closed loop: levels, e.g. 1,8,64")] = None,
    rate: Annotated[str | None, typer.Option(help="Open loop: requests/s levels, e.g. 2,8")] = None,
    arrival: Annotated[str, typer.Option(help="poisson or constant (with --rate)")] = "poisson",
    max_concurrency: Annotated[int | None, typer.Option(help="Cap in-flight requests (with --rate)")] = None,
    requests: Annotated[int | None, typer.Option(help="Requests per step")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds per step")] = None,
    warmup: Annotated[int, typer.Option(help="Warm-up requests per step, excluded")] = 0,
    input_tokens: Annotated[int, typer.Option(help="Prompt length in tokens")] = 128,
    output_tokens: Annotated[int, typer.Option(help="Output length in tokens")] = 128,
    profile: Annotated[str | None, typer.Option(help="Workload profile name (recorded with the run)")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="tokenizer.json path or tiktoken:<encoding>")] = None,
    slo_ttft_ms: Annotated[float | None, typer.Option(help="SLO on TTFT (ms)")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="SLO on TPOT (ms)")] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the run summary JSON to PATH, or - for stdout")
    ] = None,
    timeout_connect: Annotated[float, typer.Option(help="Seconds to connect")] = 10.0,
    timeout_ttft: Annotated[float, typer.Option(help="Seconds to the first token")] = 60.0,
    timeout_idle: Annotated[float, typer.Option(help="Longest gap between reads (s)")] = 30.0,
    timeout_total: Annotated[float, typer.Option(help="Seconds for a whole request")] = 600.0,
    processes: Annotated[int, typer.Option(help="Shard the load across N worker processes (cores)")] = 1,
    inspect: Annotated[
        bool,
        typer.Option("--inspect", help="Only inspect: detect the engine and run the conformance checklist"),
    ] = False,
    metrics_url: Annotated[
        str | None, typer.Option(help="The server's Prometheus endpoint (default: <root>/metrics)")
    ] = None,
    search: Annotated[
        bool,
        typer.Option(
            "--search", help="SLO search: the heaviest load meeting the SLO, lowest to highest level"
        ),
    ] = False,
    search_max_steps: Annotated[int, typer.Option(min=2, max=40, help="Most steps of an SLO search")] = 10,
    trials: Annotated[
        int, typer.Option(min=1, max=10, help="Measure each step this many times: mean, 95 % interval, CV")
    ] = 1,
    trial_cooldown: Annotated[float, typer.Option(min=0, max=600, help="Seconds between trials")] = 0.0,
    workload: Annotated[
        str, typer.Option(help="synthetic, shared_prefix, multi_turn, trace, dataset or long_context")
    ] = "synthetic",
    seed: Annotated[int, typer.Option(help="The same seed sends the same traffic")] = 0,
    input_dist: Annotated[
        str | None, typer.Option("--input", help="Prompt tokens as a distribution, e.g. lognormal:512,0.6")
    ] = None,
    output_dist: Annotated[
        str | None, typer.Option("--output", help="Output tokens as a distribution, e.g. uniform:64-256")
    ] = None,
    burstiness: Annotated[
        float | None, typer.Option(help="With --rate: gamma arrivals of this shape (1 = Poisson)")
    ] = None,
    groups: Annotated[int | None, typer.Option(help="shared_prefix: prefix groups")] = None,
    prefix_tokens: Annotated[int | None, typer.Option(help="shared_prefix: tokens per group prefix")] = None,
    order: Annotated[str | None, typer.Option(help="shared_prefix: random or round_robin")] = None,
    turns: Annotated[
        str | None, typer.Option(help="multi_turn: turns per session, e.g. 4 or uniform:2-8")
    ] = None,
    think: Annotated[
        str | None, typer.Option(help="multi_turn, dataset: think seconds, e.g. exponential:2")
    ] = None,
    system_tokens: Annotated[
        int | None, typer.Option(help="multi_turn: a shared system prompt's tokens")
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="trace, dataset: the file (Mooncake, Azure CSV, ShareGPT, messages)")
    ] = None,
    sessions: Annotated[
        bool, typer.Option("--sessions", help="dataset: whole conversations as sessions")
    ] = False,
    time_scale: Annotated[
        str | None, typer.Option(help="trace: speed-ups, e.g. 1,10 (a step each; 1 = as recorded)")
    ] = None,
    context: Annotated[str | None, typer.Option(help="long_context: prompt lengths, e.g. 1024,4096")] = None,
    context_max: Annotated[
        int | None, typer.Option(help="long_context: the context length where the model card does not say")
    ] = None,
) -> None:
    """Run one benchmark now: progress bar, result table, optional JSON summary."""
    from app.probe.console import run_inspect_command, run_probe_command

    if inspect:
        raise typer.Exit(
            run_inspect_command(
                base_url=base_url, model=model, api=api, api_key=api_key, metrics_url=metrics_url,
                json_out=json_out, console=err if json_out == "-" else out,
            )
        )  # fmt: skip

    if concurrency and rate:
        raise fail("give --concurrency or --rate, not both", 2)
    if api not in ("chat", "completions"):
        raise fail("--api must be chat or completions", 2)
    if arrival not in ("poisson", "constant"):
        raise fail("--arrival must be poisson or constant", 2)
    if requests is None and duration is None:
        requests = 64
    if time_scale:
        rate = time_scale
    levels = _levels(rate, float) if rate else _levels(concurrency or "1", int)
    if search and (len(levels) < 2 or (slo_ttft_ms is None and slo_tpot_ms is None)):
        raise fail("--search needs two levels (start and ceiling) and --slo-ttft-ms or --slo-tpot-ms", 2)
    from app.probe.process import ProbeSpec
    from app.probe.types import Target, Timeouts, Workload
    from app.snapshot import ProfileSnapshot

    spec_of_workload, content = _workload(
        workload, seed=seed, input_dist=input_dist, output_dist=output_dist, burstiness=burstiness, groups=groups,
        prefix_tokens=prefix_tokens, order=order, turns=turns, think=think, system_tokens=system_tokens,
        dataset=dataset, sessions=sessions, context=context, context_max=context_max,
    )  # fmt: skip
    if spec_of_workload.kind == "trace" and not time_scale and not rate:
        raise fail("a trace replays at --time-scale (1 = as recorded)", 2)

    flags = ProfileSnapshot(
        name=profile or "",
        input_tokens_mean=input_tokens,
        output_tokens_mean=output_tokens,
        load_mode="rate" if rate else "concurrency",
        load_levels=list(levels),
        arrival=arrival,
        max_concurrency=max_concurrency,
        requests_per_step=requests,
        duration_per_step_s=duration,
        warmup_requests=warmup,
        search=search,
        search_max_steps=search_max_steps,
        trials=trials,
        trial_cooldown_s=trial_cooldown,
        slo_ttft_ms=slo_ttft_ms,
        slo_tpot_ms=slo_tpot_ms,
        workload=spec_of_workload,
    )
    spec = ProbeSpec(
        Target(base_url.rstrip("/"), model, api, api_key),
        Workload.from_profile(flags, content),
        timeouts=Timeouts(timeout_connect, timeout_ttft, timeout_idle, timeout_total),
        tokenizer=tokenizer,
        processes=processes,
        metrics_url=metrics_url,
    )
    code = run_probe_command(
        spec=spec, profile=profile, json_out=json_out, console=err if json_out == "-" else out
    )
    raise typer.Exit(code)
