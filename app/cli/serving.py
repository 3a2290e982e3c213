"""Commands that run smartbench: `serve`, `worker`, `demo`, `simulate`, `version`."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer

from app import __version__, cores
from app.cli.base import (
    cli,
    ensure_first_admin,
    fail,
    first_admin_line,
    freeze_heap,
    load_settings,
    out,
    proxy_options,
    upgrade_schema,
    where,
    with_session,
)
from app.security import keyring


@cli.command()
def version() -> None:
    """Print the version."""
    out.print(f"smartbench {__version__}")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    executor: Annotated[bool, typer.Option(help="Also execute queued runs in this process")] = True,
) -> None:
    """Dashboard + REST API; upgrades the schema first."""
    import uvicorn

    from app.main import create_app

    settings = load_settings()
    if not executor:
        settings = settings.but(run_executor=False)
    host = host or settings.server.host
    port = port or settings.server.port
    upgrade_schema(settings)

    async def first_admin(session):
        return await ensure_first_admin(session, settings)

    try:
        created = asyncio.run(with_session(settings, first_admin))
    except Exception as exc:
        raise fail(str(exc)) from None

    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    url = f"http://{shown_host}:{port}/"
    out.print(f"[bold green]smartbench {__version__}[/] database: {where(settings)}")
    out.print(f"Dashboard: [bold]{url}[/]   API docs: {url}docs")
    out.print(first_admin_line(created, settings))
    if settings.access.public_read:
        out.print("Reads are public (SMARTBENCH_PUBLIC_READ); every write needs a login or a token.")
    sys.stdout.flush()
    if settings.runs.run_executor:
        from app.services.executor import keep_off_probe_cores

        keep_off_probe_cores(cores.core_plan(settings)[0])
    app = create_app(settings)
    freeze_heap()
    uvicorn.run(app, host=host, port=port, log_level=settings.server.log_level, **proxy_options(settings))


@cli.command()
def worker(
    max_parallel: Annotated[
        int | None,
        typer.Option(help="Probe processes at once, each on another endpoint (default: cores - 1)"),
    ] = None,
    grace: Annotated[float, typer.Option(help="Seconds a run may take to finish after SIGTERM")] = 30.0,
) -> None:
    """Probe worker only: claims queued runs from the shared database and executes them.

    Start any number, on any machines that reach the same PostgreSQL. SIGTERM lets the current
    runs finish within the grace period, then marks the rest cancelled, and exits 0."""
    import signal
    from datetime import UTC, datetime

    from app.bootstrap import runtime
    from app.services.executor import keep_off_probe_cores

    settings = load_settings()
    upgrade_schema(settings)
    wanted = settings.but(max_parallel_runs=max_parallel or settings.runs.max_parallel_runs)
    keep_off_probe_cores(cores.core_plan(wanted)[0])

    async def main() -> None:
        async with runtime(settings) as opened:
            executor = opened.executor(
                lambda: datetime.now(UTC), max_parallel=max_parallel, hears_agents=False
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            executor.start()
            out.print(f"smartbench worker on {where(settings)}: waiting for queued runs")
            sys.stdout.flush()
            try:
                await stop.wait()
                await executor.drain(grace)
            finally:
                await executor.stop()

    asyncio.run(main())


@cli.command()
def demo(
    port: Annotated[int, typer.Option(help="Port for the dashboard")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
) -> None:
    """Dashboard on the embedded database with three simulated endpoints, probed at once."""
    import signal
    from contextlib import ExitStack
    from datetime import UTC, datetime

    import uvicorn

    from app.main import create_app
    from app.security.crypto import SecretBox
    from app.services import demo as demo_service
    from app.services import users
    from app.services.executor import keep_off_probe_cores
    from app.simulator.process import simulator_process

    base = load_settings()
    settings = base.but(data_dir=base.data_dir / "demo", database_url=None, public_read=True)
    upgrade_schema(settings)
    # The simulators stand in for remote servers: they, like the dashboard, keep off the cores
    # the probes measure from.
    keep_off_probe_cores(cores.core_plan(settings)[0])
    with ExitStack() as stack:
        try:
            urls = {
                item.name: stack.enter_context(
                    simulator_process(
                        "--preset", item.preset, "--model", "llama-3.3-70b", *item.simulator_args
                    )
                ).base_url
                for item in demo_service.FLEET
            }
        except RuntimeError as exc:
            raise fail(str(exc)) from None

        async def work(session):
            created = await ensure_first_admin(session, settings)
            admin = await users.get_by_name(session, settings.access.admin_user)
            box = SecretBox(keyring.encryption_keyring(settings))
            await demo_service.register(
                session, urls=urls, model="llama-3.3-70b", box=box, by=admin.id, now=datetime.now(UTC),
                settings=settings,
            )  # fmt: skip
            return created

        created = asyncio.run(with_session(settings, work))
        url = f"http://{host}:{port}/"
        out.print(f"[bold green]smartbench demo[/] on {where(settings)}")
        out.print(
            f"Dashboard: [bold]{url}[/]  (reads are public; the first scorecard fills in about a minute)"
        )
        for item in demo_service.FLEET:
            out.print(f"  simulated endpoint {item.name} ({item.preset}) at {urls[item.name]}")
        out.print("To change anything: " + first_admin_line(created, settings, again="the first demo start"))
        sys.stdout.flush()
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: make that an
        # exit that unwinds, so the simulators above are stopped with the demo.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        app = create_app(settings)
        freeze_heap()
        uvicorn.run(app, host=host, port=port, log_level="warning", **proxy_options(settings))


@cli.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 9000,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    preset: Annotated[str, typer.Option(help="fixed, zero, h100-fp8-70b, b200-nvfp4-70b or l4-8b")] = "fixed",
    model: Annotated[str | None, typer.Option(help="Model name to serve (default: sim)")] = None,
    ttft_ms: Annotated[float | None, typer.Option(help="fixed mode: time to first token")] = None,
    itl_ms: Annotated[float | None, typer.Option(help="fixed mode: delay between tokens")] = None,
    tokens_per_chunk: Annotated[
        int | None, typer.Option(help="tokens per SSE chunk (speculative decoding)")
    ] = None,
    no_chunk_usage: Annotated[
        bool, typer.Option("--no-chunk-usage", help="ignore continuous_usage_stats (as TensorRT-LLM does)")
    ] = False,
    strict: Annotated[
        str | None,
        typer.Option(help="refuse ignore_eos/min_tokens/continuous_usage_stats like: openai, fastapi or tgi"),
    ] = None,
    reasoning_tokens: Annotated[
        int | None, typer.Option(help="tokens sent as reasoning_content first")
    ] = None,
    error_rate: Annotated[float | None, typer.Option(help="fraction of requests answered 500")] = None,
    max_batch: Annotated[int | None, typer.Option(help="batching: max sequences per step")] = None,
    base_ms: Annotated[float | None, typer.Option(help="batching: decode step base time")] = None,
    per_seq_ms: Annotated[float | None, typer.Option(help="batching: step time per running sequence")] = None,
    prefill_rate: Annotated[float | None, typer.Option(help="batching: prefill tokens per second")] = None,
    queue_limit: Annotated[
        int | None, typer.Option(help="batching: waiting requests beyond this get 429")
    ] = None,
    natural_output_tokens: Annotated[
        int | None, typer.Option(help="stop after this many unless ignore_eos")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="require this bearer key", envvar="SMARTBENCH_SIM_API_KEY")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="play this engine: vllm, sglang, tensorrt-llm, nim, dynamo, tgi, llama.cpp, ollama, "
            "transformers, hosted (routes, model card, metric names, error shapes)"
        ),
    ] = None,
    engine_version: Annotated[str | None, typer.Option(help="the version the engine reports")] = None,
    broken: Annotated[
        str | None,
        typer.Option("--break", help="conformance checks to fail, comma-separated (e.g. tool_calls,stop)"),
    ] = None,
    prefill_ms_per_token: Annotated[
        float | None, typer.Option(help="fixed mode: TTFT adds this per prompt token not in the prefix cache")
    ] = None,
    prefix_cache_tokens: Annotated[
        int | None, typer.Option(help="prefix cache capacity in tokens (0: no cache)")
    ] = None,
    prefix_block_tokens: Annotated[int | None, typer.Option(help="prefix cache block size in tokens")] = None,
    noise: Annotated[
        float | None,
        typer.Option(help="fixed mode: sigma of each request's lognormal delay factor (median 1)"),
    ] = None,
    warmup_s: Annotated[
        float | None,
        typer.Option(help="fixed mode: requests in the first seconds after the first are slower"),
    ] = None,
    warmup_factor: Annotated[float | None, typer.Option(help="fixed mode: ... by this factor")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the noise")] = None,
) -> None:
    """A standalone simulated OpenAI-compatible endpoint."""
    from app.aio import run_fast
    from app.simulator import preset as get_preset
    from app.simulator.server import serve_forever

    try:
        config = get_preset(preset).with_overrides(
            prefill_ms_per_token=prefill_ms_per_token,
            prefix_cache_tokens=prefix_cache_tokens,
            prefix_block_tokens=prefix_block_tokens,
            noise=noise,
            warmup_s=warmup_s,
            warmup_factor=warmup_factor,
            seed=seed,
            model=model,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
            tokens_per_chunk=tokens_per_chunk,
            chunk_usage=False if no_chunk_usage else None,
            strict=strict,
            reasoning_tokens=reasoning_tokens,
            error_rate=error_rate,
            max_batch=max_batch,
            base_ms=base_ms,
            per_seq_ms=per_seq_ms,
            prefill_tokens_per_s=prefill_rate,
            natural_output_tokens=natural_output_tokens,
            queue_limit=queue_limit,
            api_key=api_key,
            persona=engine,
            engine_version=engine_version,
            broken=frozenset(b.strip() for b in broken.split(",") if b.strip()) if broken else None,
        )
        if engine is not None:
            from app.simulator.personas import persona

            persona(engine)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if strict not in (None, "openai", "fastapi", "tgi"):
        raise fail("--strict must be openai, fastapi or tgi", 2)

    def ready(sim: Any) -> None:
        out.print(f"simulator {config.name} ({config.mode}) serving model {config.model!r} at {sim.base_url}")
        sys.stdout.flush()

    try:
        run_fast(serve_forever(config, host, port, ready))
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except KeyboardInterrupt:
        pass


@cli.command()
def agent(
    url: Annotated[str, typer.Option(help="The dashboard's address, e.g. https://smartbench.example.com")],
    location: Annotated[str, typer.Option(help="This agent's location (its token's)")],
    token: Annotated[
        str | None,
        typer.Option(help="The agent token (better: SMARTBENCH_AGENT_TOKEN, kept off the process list)"),
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    name: Annotated[str | None, typer.Option(help="How the agents page names it (default host:pid)")] = None,
    insecure: Annotated[
        bool, typer.Option(help="Skip TLS verification (tests against a self-signed dashboard)")
    ] = False,
) -> None:
    """Probe from here for a dashboard elsewhere: needs only outbound HTTPS to it.

    Registers with an agent token for one location (an admin mints it on the agents page or with
    POST /api/v1/agent-tokens), claims that location's runs, runs each in a probe process of its
    own and uploads the results. SIGTERM ends the current run's step and reports it cancelled."""
    import logging
    import os
    import signal

    from app.agent import Agent, AgentConfig, Refused, Revoked, parse_labels

    secret = token or os.environ.get("SMARTBENCH_AGENT_TOKEN")
    if not secret:
        raise typer.BadParameter("give --token or set SMARTBENCH_AGENT_TOKEN", param_hint="--token")
    try:
        labels = parse_labels(label or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label") from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig(url=url, token=secret, location=location, labels=labels, verify=not insecure)
    if name:
        config.name = name

    async def main() -> int:
        worker = Agent(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            stop.set()
            worker.stop_run()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        out.print(f"smartbench agent for {location} at {url}: claiming runs")
        sys.stdout.flush()
        try:
            await worker.serve(stop)
        except Revoked as exc:
            out.print(f"[red]the dashboard refused this agent's token: {exc}[/red]")
            return 3
        except Refused as exc:
            out.print(f"[red]the dashboard refused this agent: {exc}[/red]")
            return 2
        finally:
            await worker.close()
        return 0

    raise typer.Exit(asyncio.run(main()))
