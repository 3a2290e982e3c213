"""`smartbench probe`: one benchmark (or inspection) of an endpoint now, from the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.base import (
    cli,
    err,
    fail,
    out,
)


def _levels(raw: str, kind: type) -> tuple[float, ...]:
    try:
        values = tuple(kind(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise fail(f"{raw!r} is not a comma-separated list of numbers", 2) from None
    if not values or any(v <= 0 for v in values):
        raise fail("load levels must be positive", 2)
    return values


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
    levels = _levels(rate, float) if rate else _levels(concurrency or "1", int)
    if search and (len(levels) < 2 or (slo_ttft_ms is None and slo_tpot_ms is None)):
        raise fail("--search needs two levels (start and ceiling) and --slo-ttft-ms or --slo-tpot-ms", 2)
    from app.probe.process import ProbeSpec
    from app.probe.types import Target, Timeouts, Workload
    from app.snapshot import ProfileSnapshot

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
        slo_ttft_ms=slo_ttft_ms,
        slo_tpot_ms=slo_tpot_ms,
    )
    spec = ProbeSpec(
        Target(base_url.rstrip("/"), model, api, api_key),
        Workload.from_profile(flags),
        timeouts=Timeouts(timeout_connect, timeout_ttft, timeout_idle, timeout_total),
        tokenizer=tokenizer,
        processes=processes,
        metrics_url=metrics_url,
    )
    code = run_probe_command(
        spec=spec, profile=profile, json_out=json_out, console=err if json_out == "-" else out
    )
    raise typer.Exit(code)
