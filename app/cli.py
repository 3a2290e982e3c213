"""The `smartbench` command."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from app import __version__, cores
from app.config import ConfigError, Settings
from app.security import keyring

T = TypeVar("T")

cli = typer.Typer(
    name="smartbench",
    help="Probe LLM inference endpoints and keep their SMART scorecards and cost history.",
    no_args_is_help=True,
    add_completion=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
user_cli = typer.Typer(help="Users.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
keys_cli = typer.Typer(help="Encryption keys for stored endpoint API keys.", no_args_is_help=True)
runs_cli = typer.Typer(help="Stored runs.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(user_cli, name="user")
cli.add_typer(token_cli, name="token")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(runs_cli, name="runs")

# A terminal sets its own width; piped output (CI logs, files) gets room for the result table.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def _settings() -> Settings:
    try:
        return Settings()
    except (ValidationError, ConfigError) as exc:
        err.print(f"[red]smartbench: configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]smartbench:[/red] {message}")
    return typer.Exit(code)


async def _with_session(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    from app.bootstrap import runtime
    from app.db import unit_of_work

    async with runtime(settings) as opened, unit_of_work(opened.sessionmaker) as session:
        return await work(session)


def _freeze_heap() -> None:
    """Before serving: what is loaded by now (modules, routes, templates) lives as long as the
    process, so the collector need not scan it again: full collections, and their pauses in the
    middle of a request, stay short."""
    import gc

    gc.collect()
    gc.freeze()


def _upgrade(settings: Settings) -> None:
    from app.db import upgrade

    try:
        upgrade(settings)
    except Exception as exc:
        raise _fail(f"cannot upgrade the database schema ({type(exc).__name__}: {exc})") from None


def _where(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.db_url).render_as_string(hide_password=True)


class ProxyOptions(TypedDict, total=False):
    """uvicorn.run's options for the reverse proxies in front of smartbench."""

    proxy_headers: bool
    forwarded_allow_ips: str


def proxy_options(settings: Settings) -> ProxyOptions:
    """X-Forwarded-For/-Proto are believed only from SMARTBENCH_TRUSTED_PROXIES (none by default)."""
    trusted = settings.access.trusted_proxy_list()
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted)}


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

    settings = _settings()
    if not executor:
        settings = settings.but(run_executor=False)
    host = host or settings.server.host
    port = port or settings.server.port
    _upgrade(settings)

    async def first_admin(session):
        return await _ensure_first_admin(session, settings)

    try:
        created = asyncio.run(_with_session(settings, first_admin))
    except Exception as exc:
        raise _fail(str(exc)) from None

    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    url = f"http://{shown_host}:{port}/"
    out.print(f"[bold green]smartbench {__version__}[/] database: {_where(settings)}")
    out.print(f"Dashboard: [bold]{url}[/]   API docs: {url}docs")
    out.print(_first_admin_line(created, settings))
    if settings.access.public_read:
        out.print("Reads are public (SMARTBENCH_PUBLIC_READ); every write needs a login or a token.")
    sys.stdout.flush()
    if settings.runs.run_executor:
        from app.services.executor import keep_off_probe_cores

        keep_off_probe_cores(cores.core_plan(settings)[0])
    app = create_app(settings)
    _freeze_heap()
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

    settings = _settings()
    _upgrade(settings)
    wanted = settings.but(max_parallel_runs=max_parallel or settings.runs.max_parallel_runs)
    keep_off_probe_cores(cores.core_plan(wanted)[0])

    async def main() -> None:
        async with runtime(settings) as opened:
            executor = opened.executor(lambda: datetime.now(UTC), max_parallel=max_parallel)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            executor.start()
            out.print(f"smartbench worker on {_where(settings)}: waiting for queued runs")
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

    base = _settings()
    settings = base.but(data_dir=base.data_dir / "demo", database_url=None, public_read=True)
    _upgrade(settings)
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
            raise _fail(str(exc)) from None

        async def work(session):
            created = await _ensure_first_admin(session, settings)
            admin = await users.get_by_name(session, settings.access.admin_user)
            box = SecretBox(keyring.encryption_keyring(settings))
            await demo_service.register(
                session, urls=urls, model="llama-3.3-70b", box=box, by=admin.id, now=datetime.now(UTC),
                settings=settings,
            )  # fmt: skip
            return created

        created = asyncio.run(_with_session(settings, work))
        url = f"http://{host}:{port}/"
        out.print(f"[bold green]smartbench demo[/] on {_where(settings)}")
        out.print(
            f"Dashboard: [bold]{url}[/]  (reads are public; the first scorecard fills in about a minute)"
        )
        for item in demo_service.FLEET:
            out.print(f"  simulated endpoint {item.name} ({item.preset}) at {urls[item.name]}")
        out.print("To change anything: " + _first_admin_line(created, settings, again="the first demo start"))
        sys.stdout.flush()
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: make that an
        # exit that unwinds, so the simulators above are stopped with the demo.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        app = create_app(settings)
        _freeze_heap()
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
) -> None:
    """A standalone simulated OpenAI-compatible endpoint."""
    from app.aio import run_fast
    from app.simulator import preset as get_preset
    from app.simulator.server import serve_forever

    try:
        config = get_preset(preset).with_overrides(
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
        raise _fail(str(exc), 2) from None
    if strict not in (None, "openai", "fastapi", "tgi"):
        raise _fail("--strict must be openai, fastapi or tgi", 2)

    def ready(sim: Any) -> None:
        out.print(f"simulator {config.name} ({config.mode}) serving model {config.model!r} at {sim.base_url}")
        sys.stdout.flush()

    try:
        run_fast(serve_forever(config, host, port, ready))
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except KeyboardInterrupt:
        pass


def _levels(raw: str, kind: type) -> tuple[float, ...]:
    try:
        values = tuple(kind(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise _fail(f"{raw!r} is not a comma-separated list of numbers", 2) from None
    if not values or any(v <= 0 for v in values):
        raise _fail("load levels must be positive", 2)
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
        raise _fail("give --concurrency or --rate, not both", 2)
    if api not in ("chat", "completions"):
        raise _fail("--api must be chat or completions", 2)
    if arrival not in ("poisson", "constant"):
        raise _fail("--arrival must be poisson or constant", 2)
    if requests is None and duration is None:
        requests = 64
    levels = _levels(rate, float) if rate else _levels(concurrency or "1", int)
    if search and (len(levels) < 2 or (slo_ttft_ms is None and slo_tpot_ms is None)):
        raise _fail("--search needs two levels (start and ceiling) and --slo-ttft-ms or --slo-tpot-ms", 2)
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


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from app.db import upgrade

    settings = _settings()
    upgrade(settings, revision)
    out.print(f"database {_where(settings)} is at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    from app.db import downgrade

    settings = _settings()
    downgrade(settings, revision)
    out.print(f"database {_where(settings)} downgraded to {revision}")


@user_cli.command("create")
def user_create(
    username: Annotated[str, typer.Argument(help="Login name")],
    role: Annotated[str, typer.Option(help="viewer, editor or admin")] = "viewer",
    password: Annotated[
        str | None, typer.Option(help="Password (default: ask, or read from stdin when piped)")
    ] = None,
) -> None:
    """Add a user."""
    from app.errors import AppError
    from app.models import Role
    from app.services import users

    if role not in Role.__members__:
        raise _fail("role must be viewer, editor or admin", 2)
    if password is None:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    settings = _settings()
    _upgrade(settings)

    async def work(session):
        return await users.create(session, username=username, password=password, role=Role(role))

    try:
        asyncio.run(_with_session(settings, work))
    except AppError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in exc.fields.items()) or exc.message
        raise _fail(detail) from None
    out.print(f"user {username} created ({role})")


@user_cli.command("unlock")
def user_unlock(
    username: Annotated[str, typer.Argument(help="The login name whose failed-login back-off to lift")],
) -> None:
    """Lift the back-off that failed logins put on an account."""
    from app.services import throttle

    settings = _settings()
    _upgrade(settings)

    async def work(session):
        return await throttle.lift(session, throttle.account_key(username))

    lifted = asyncio.run(_with_session(settings, work))
    out.print(f"{username}: back-off lifted" if lifted else f"{username}: no back-off to lift")


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for")],
    read_only: Annotated[bool, typer.Option("--read-only", help="The token can only read")] = False,
    user: Annotated[str | None, typer.Option(help="Owner (default: the first admin)")] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Days until it stops working (default: never)")
    ] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from app.errors import AppError
    from app.models import Role, User
    from app.services import auth, users

    settings = _settings()
    _upgrade(settings)

    async def work(session):
        if user:
            owner = await users.get_by_name(session, user)
        else:
            owner = await session.scalar(
                select(User).where(User.role == Role.admin.value, User.is_active.is_(True)).order_by(User.id)
            )
            if owner is None:
                raise AppError("no admin exists yet: start `smartbench serve` once or pass --user")
        _, token = await auth.create_token(
            session,
            user_id=owner.id,
            name=name,
            read_only=read_only,
            now=datetime.now(UTC),
            expires_in_days=expires_in_days,
        )
        return owner.username, token

    try:
        owner_name, token = asyncio.run(_with_session(settings, work))
    except AppError as exc:
        raise _fail(exc.message) from None
    err.print(
        f"token {name!r} for {owner_name} ({'read-only' if read_only else 'read and write'}); shown once:"
    )
    print(token)


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Make a new encryption key active (data-directory keys) and re-encrypt every sealed value
    (endpoint API keys, webhook URLs and secrets)."""
    settings = _settings()
    try:
        kid = keyring.rotate_file_key(settings)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    out.print(f"new active key {kid}")
    _reencrypt(settings)


@keys_cli.command("reencrypt")
def keys_reencrypt() -> None:
    """Re-encrypt every sealed value (endpoint API keys, webhook URLs and secrets) with the active
    (first) key."""
    _reencrypt(_settings())


def _reencrypt(settings: Settings) -> None:
    from app.security.crypto import DecryptionError, SecretBox
    from app.services import keys

    _upgrade(settings)
    box = SecretBox(keyring.encryption_keyring(settings))

    async def work(session):
        return await keys.reencrypt_keys(session, box=box)

    try:
        changed = asyncio.run(_with_session(settings, work))
    except DecryptionError as exc:
        raise _fail(f"{exc}; nothing was changed") from None
    each = ", ".join(f"{count} {column}" for column, count in changed.items())
    out.print(f"re-encrypted {sum(changed.values())} sealed value(s) with key {box.active_key_id} ({each})")


@cli.command("import")
def import_(
    files: Annotated[
        list[Path], typer.Argument(help="Result files or folders (their .json, .jsonl and .yaml files)")
    ],
    endpoint: Annotated[str, typer.Option(help="The registered endpoint the results are of")],
    format: Annotated[
        str, typer.Option(help="auto, aiperf, genai-perf, vllm, guidellm or inference-perf")
    ] = "auto",
    profile: Annotated[str | None, typer.Option(help="Judge by this profile's SLO (default: none)")] = None,
    tool_version: Annotated[
        str | None, typer.Option(help="The tool's version, for files that do not say")
    ] = None,
) -> None:
    """Import AIPerf, GenAI-Perf, vllm bench, GuideLLM or inference-perf results as a run of an
    endpoint: scored like smartbench's own runs, marked imported on every page. A file that does
    not parse is refused with its line and field; nothing is stored then."""
    from datetime import UTC, datetime

    from app.errors import AppError
    from app.services import endpoints as endpoint_service
    from app.services import imports

    paths: list[Path] = []
    for path in files:
        if path.is_dir():
            paths += sorted(  # a tool's artifact folder: its logs and CSVs stay out
                p for p in path.rglob("*")
                if p.is_file() and p.suffix in (".json", ".jsonl", ".yaml", ".yml") and "logs" not in p.parts
            )  # fmt: skip
        elif path.is_file():
            paths.append(path)
        else:
            raise _fail(f"{path}: no such file")
    settings = _settings()
    _upgrade(settings)

    async def work(session):
        target = await endpoint_service.get_by_name(session, endpoint)
        return await imports.import_run(
            session, endpoint_id=target.id, files=[(str(p), p.read_bytes()) for p in paths], fmt=format,
            profile_name=profile, tool_version=tool_version, by=None, now=datetime.now(UTC),
            limits=imports.ImportLimits.from_settings(settings),
        )  # fmt: skip

    try:
        result = asyncio.run(_with_session(settings, work))
    except AppError as exc:
        raise _fail(exc.fields.get("file") or exc.message) from None
    version = f" {result.tool_version}" if result.tool_version else ""
    out.print(
        f"imported run {result.run_id}: {result.tool}{version}, {result.steps} step(s), {result.samples} request(s), "
        f"judged by profile {result.profile}"
    )
    for note in result.notes:
        out.print(f"  · {note}")


@cli.command()
def seed(
    endpoints: Annotated[int, typer.Option(min=1, max=10_000, help="Synthetic endpoints to register")] = 10,
    days: Annotated[float, typer.Option(min=0.01, max=3650, help="Days of history for each")] = 30,
    runs_per_day: Annotated[float, typer.Option(min=0.01, max=1440, help="Runs per endpoint per day")] = 4,
    profile: Annotated[str, typer.Option(help="Profile the runs are of")] = "chat",
    prefix: Annotated[str, typer.Option(help="Endpoint name prefix")] = "seed",
) -> None:
    """Write synthetic history (the simulator's performance model, marked synthetic, never
    scored) into the configured database: for benchmarks and for trying the trends."""
    from datetime import UTC, datetime

    from app.security.crypto import SecretBox
    from app.services import history

    settings = _settings()
    _upgrade(settings)

    async def work(session):
        return await history.seed(
            session, endpoints=endpoints, days=days, runs_per_day=runs_per_day, profile_name=profile,
            now=datetime.now(UTC), box=SecretBox(keyring.encryption_keyring(settings)), prefix=prefix,
            settings=settings,
        )  # fmt: skip

    async def analyze() -> None:
        from app.db import create_engine, refresh_statistics

        engine = create_engine(settings)
        try:
            await refresh_statistics(engine)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(_with_session(settings, work))
        asyncio.run(analyze())
    except Exception as exc:
        raise _fail(str(exc)) from None
    out.print(
        f"seeded {report.endpoints} synthetic endpoint(s) with {report.runs:,} runs and {report.steps:,} steps "
        f"of {report.profile} on {_where(settings)} in {report.seconds:.1f} s"
    )


@runs_cli.command("recompute")
def runs_recompute(
    run: Annotated[int | None, typer.Option(help="One run (default: every run with steps)")] = None,
) -> None:
    """Re-derive step summaries and scorecards from the stored per-request samples."""
    from sqlalchemy import select

    from app.models import RunStep
    from app.services import runs as run_service

    settings = _settings()
    _upgrade(settings)

    async def work(session):
        ids = [run] if run is not None else sorted(set((await session.scalars(select(RunStep.run_id))).all()))
        steps = 0
        for run_id in ids:
            steps += await run_service.recompute(session, run_id=run_id)
        return len(ids), steps

    try:
        count, steps = asyncio.run(_with_session(settings, work))
    except Exception as exc:
        raise _fail(str(exc)) from None
    out.print(f"recomputed {steps} step(s) of {count} run(s) from their samples")


@runs_cli.command("delete")
def runs_delete(
    run: Annotated[int, typer.Argument(help="The run's id")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Delete a finished run with its steps, samples and the alerts judged on it."""
    from app.errors import AppError
    from app.services import runs as run_service

    if not yes and not typer.confirm(f"Delete run {run} with its steps, samples and alerts?"):
        raise typer.Exit(1)
    settings = _settings()
    _upgrade(settings)

    async def work(session):
        return await run_service.delete(session, run_id=run)

    try:
        endpoint_id = asyncio.run(_with_session(settings, work))
    except AppError as exc:
        raise _fail(exc.message) from None
    out.print(
        f"deleted run {run} of endpoint {endpoint_id}; its scorecard and trends rest on the runs that remain"
    )


async def _ensure_first_admin(session, settings: Settings):
    """The first admin, created on a database that has none (its one-time password, if made)."""
    from app.services import users

    pw = settings.access.admin_password.get_secret_value() if settings.access.admin_password else None
    return await users.ensure_first_admin(session, username=settings.access.admin_user, password=pw)


def _first_admin_line(created: Any, settings: Settings, *, again: str | None = None) -> str:
    """How to log in, said once by `serve` and `demo` alike (a one-time password only now)."""
    if created is not None and created.password is not None:
        return (
            f"log in as [bold]{created.username}[/] with the one-time password [bold yellow]{created.password}[/] "
            "(you will be asked to change it). It is not shown again."
        )
    if created is not None:
        return f"log in as [bold]{created.username}[/] with SMARTBENCH_ADMIN_PASSWORD."
    if again:
        return f"log in as {settings.access.admin_user} (password from {again})."
    return "log in with your smartbench user (new users: `smartbench user create`)."


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli()


if __name__ == "__main__":
    main()
