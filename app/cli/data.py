"""Stored data: `import` other tools' results, `seed` synthetic history, `runs` recompute and
delete, `dataset` add, list, show and delete."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from app.cli.base import (
    cli,
    dataset_cli,
    fail,
    load_settings,
    out,
    runs_cli,
    upgrade_schema,
    where,
    with_session,
)
from app.security import keyring


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
            raise fail(f"{path}: no such file")
    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        target = await endpoint_service.get_by_name(session, endpoint)
        return await imports.import_run(
            session, endpoint_id=target.id, files=[(str(p), p.read_bytes()) for p in paths], fmt=format,
            profile_name=profile, tool_version=tool_version, by=None, now=datetime.now(UTC),
            limits=imports.ImportLimits.from_settings(settings),
        )  # fmt: skip

    try:
        result = asyncio.run(with_session(settings, work))
    except AppError as exc:
        raise fail(exc.fields.get("file") or exc.message) from None
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

    settings = load_settings()
    upgrade_schema(settings)

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
        report = asyncio.run(with_session(settings, work))
        asyncio.run(analyze())
    except Exception as exc:
        raise fail(str(exc)) from None
    out.print(
        f"seeded {report.endpoints} synthetic endpoint(s) with {report.runs:,} runs and {report.steps:,} steps "
        f"of {report.profile} on {where(settings)} in {report.seconds:.1f} s"
    )


@runs_cli.command("recompute")
def runs_recompute(
    run: Annotated[int | None, typer.Option(help="One run (default: every run with steps)")] = None,
) -> None:
    """Re-derive step summaries and scorecards from the stored per-request samples."""
    from sqlalchemy import select

    from app.models import RunStep
    from app.services import results

    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        ids = [run] if run is not None else sorted(set((await session.scalars(select(RunStep.run_id))).all()))
        steps = 0
        for run_id in ids:
            steps += await results.recompute(session, run_id=run_id)
        return len(ids), steps

    try:
        count, steps = asyncio.run(with_session(settings, work))
    except Exception as exc:
        raise fail(str(exc)) from None
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
    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        return await run_service.delete(session, run_id=run)

    try:
        endpoint_id = asyncio.run(with_session(settings, work))
    except AppError as exc:
        raise fail(exc.message) from None
    out.print(
        f"deleted run {run} of endpoint {endpoint_id}; its scorecard and trends rest on the runs that remain"
    )


@dataset_cli.command("add")
def dataset_add(
    file: Annotated[
        Path, typer.Argument(help="Mooncake JSONL, Azure-trace CSV, ShareGPT JSON or OpenAI-messages JSONL")
    ],
    name: Annotated[str, typer.Option(help="How profiles will name it")],
    format: Annotated[str, typer.Option(help="auto, mooncake, azure, sharegpt or messages")] = "auto",
    description: Annotated[str | None, typer.Option(help="What it is")] = None,
) -> None:
    """Store a trace or a conversation set: validated whole (a bad record refuses the file
    with its line and field; nothing is stored), kept with its content hash and statistics."""
    from app.errors import AppError
    from app.services import datasets

    if not file.is_file():
        raise fail(f"{file}: no such file")
    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        found = await datasets.add(
            session, name=name, data=file.read_bytes(), filename=str(file),
            fmt=None if format == "auto" else format, description=description, by="cli",
        )  # fmt: skip
        return found.name, found.format, found.records, found.sha256

    try:
        stored, fmt, records, digest = asyncio.run(with_session(settings, work))
    except AppError as exc:
        raise fail(exc.fields.get("file") or exc.fields.get("name") or exc.message) from None
    out.print(f"dataset {stored}: {fmt}, {records} records, sha256 {digest[:16]}")


@dataset_cli.command("list")
def dataset_list() -> None:
    """The stored datasets with their statistics."""
    from rich.table import Table

    from app.services import datasets

    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        return [
            (d.name, d.format, d.records, d.stats, d.generated, d.sha256)
            for d in await datasets.list_all(session)
        ]

    table = Table()
    for column in (
        "name",
        "format",
        "records",
        "input mean",
        "output mean",
        "prefix share",
        "turns",
        "sha256",
    ):
        table.add_column(column)
    for name, fmt, records, stats, generated, digest in asyncio.run(with_session(settings, work)):
        table.add_row(
            name + (" (generated)" if generated else ""), fmt, str(records),
            f"{stats.input.mean:.0f} {stats.unit}" if stats.input.mean is not None else "-",
            f"{stats.output.mean:.0f} {stats.unit}" if stats.output.mean is not None else "-",
            f"{stats.prefix_share * 100:.0f} %" if stats.prefix_share is not None else "-",
            f"{stats.turns_mean:.1f}" if stats.turns_mean is not None else "-", digest[:16],
        )  # fmt: skip
    out.print(table)


@dataset_cli.command("delete")
def dataset_delete(name: Annotated[str, typer.Argument(help="The dataset's name")]) -> None:
    """Delete a dataset no profile names."""
    from app.errors import AppError
    from app.services import datasets

    settings = load_settings()
    upgrade_schema(settings)
    try:
        asyncio.run(with_session(settings, lambda session: datasets.delete(session, name=name)))
    except AppError as exc:
        raise fail(exc.fields.get("name") or exc.message) from None
    out.print(f"deleted dataset {name}")
