"""A run's results: its steps and samples stored once and in bulk, its end recorded, its
scorecard judged from the stored steps (and judged again by `recompute`, from the samples, after a
definition changed); the one read of stored step summaries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import RunSource
from app.environment import RunEnvironment
from app.errors import NotFound
from app.models import RequestSample, Run, RunStep
from app.probe.stats import summarize_step
from app.probe.trials import combine
from app.probe.types import Sample, StepResult
from app.scoring.cost import step_costs
from app.scoring.smart import smart_letters
from app.services.records import sample_from_row, sample_row, step_columns, with_origin
from app.snapshot import CostInputs
from app.summary import StepSummary


def with_costs(summary: StepSummary, inputs: CostInputs) -> StepSummary:
    """The step summary with its cost and energy figures at the run's cost inputs."""
    return summary.model_copy(update=step_costs(summary, inputs).model_dump())


SAMPLE_BATCH = 500  # rows per executemany: the event loop serves other requests between them


def sample_rows(steps: list[StepResult], run_id: int = 0) -> list[list[dict[str, object]]]:
    """The steps' samples as table rows, per step (pure: an import builds them in a worker
    thread and sets the run's id afterwards)."""
    return [
        [sample_row(run_id, step.index, sample, origin) for sample, origin in with_origin(step.samples)]
        for step in steps
    ]


async def store_steps(
    session: AsyncSession, *, run_id: int, steps: list[StepResult],
    rows: Sequence[Iterable[list[dict[str, object]]]] | None = None,
) -> None:  # fmt: skip
    """Insert the run's steps (summary columns) and samples, in batches of at most SAMPLE_BATCH
    rows (`rows`: per step, its batches, built elsewhere; else built here from the samples), the
    event loop free between them: a large import or step never holds it for long."""
    run = await session.get(Run, run_id)
    assert run is not None
    inputs = run.cost_snapshot
    if rows is None:
        rows = [
            [step_rows[i : i + SAMPLE_BATCH] for i in range(0, len(step_rows), SAMPLE_BATCH)]
            for step_rows in sample_rows(steps, run_id)
        ]
    for step, batches in zip(steps, rows, strict=True):
        summary = with_costs(step.summary, inputs)
        session.add(RunStep(run_id=run_id, step_index=step.index, **step_columns(summary), summary=summary))
        for batch in batches:
            for row in batch:
                row["run_id"] = run_id
            await session.execute(insert(RequestSample), batch)
            await asyncio.sleep(0)
    await session.flush()


async def finish(
    session: AsyncSession,
    *,
    run_id: int,
    status: str,
    error: str | None,
    environment: RunEnvironment | None,
    now: datetime,
) -> None:
    # Write first: on SQLite the transaction then holds the write lock before it reads, so no
    # other writer can commit between its reads and its writes (which would fail the upgrade).
    await session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=now))
    run = await session.get(Run, run_id)
    if run is None:
        return
    run.status = status
    run.error = error
    run.finished_at = now
    run.heartbeat_at = now
    if environment is not None:
        run.environment = environment
    await judge(session, run=run)


async def judge(session: AsyncSession, *, run: Run) -> None:
    """Score the run from its stored steps and keep the operating point for trend queries."""
    steps = await step_summaries(session, run.id)
    if not steps:
        run.scorecard = None
        run.quality_degraded = False
        run.cost_per_million_tokens_at_slo = run.output_tokens_per_s_at_slo = None
        run.operating_step = None
        return
    card = smart_letters(
        steps, run.profile_snapshot, run.cost_snapshot, run.endpoint_snapshot, run.environment
    )
    run.scorecard = card
    run.quality_degraded = card.quality.degraded
    point = card.operating_point
    run.cost_per_million_tokens_at_slo = point.cost_per_million_tokens if point else None
    run.output_tokens_per_s_at_slo = point.output_tokens_per_s if point else None
    run.operating_step = point.step_index if point else None
    await session.flush()


async def step_summaries(session: AsyncSession, run_id: int) -> list[StepSummary]:
    return (await steps_of(session, run_ids=[run_id]))[run_id]


async def steps_of(session: AsyncSession, *, run_ids: list[int]) -> dict[int, list[StepSummary]]:
    """The step summaries of runs as stored, in one query, read through the one step type."""
    rows = (
        await session.execute(
            select(RunStep.run_id, RunStep.summary)
            .where(RunStep.run_id.in_(run_ids))
            .order_by(RunStep.run_id, RunStep.step_index)
        )
    ).all()
    found: dict[int, list[StepSummary]] = {run_id: [] for run_id in run_ids}
    for run_id, summary in rows:
        found[run_id].append(summary)
    return found


async def recompute(session: AsyncSession, *, run_id: int) -> int:
    """Re-derive every step summary of a run from its samples (after a definition changed)."""
    run = await session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if run.source == RunSource.synthetic:
        return 0  # generated from the model, not from samples: nothing to re-derive
    inputs = run.cost_snapshot
    slo = run.profile_snapshot.slo
    steps = (
        await session.scalars(select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.step_index))
    ).all()
    for step in steps:
        rows = (
            await session.scalars(
                select(RequestSample)
                .where(RequestSample.run_id == run_id, RequestSample.step_index == step.step_index)
                .order_by(RequestSample.seq)
            )
        ).all()
        samples = [sample_from_row(row, step.summary.token_count_source) for row in rows]
        quality = step.summary.quality
        by_trial: dict[int | None, list[Sample]] = {}
        for sample in samples:  # repeat trials: each summarised alone, then combined
            by_trial.setdefault(sample.trial, []).append(sample)
        summaries = [
            summarize_step(
                group,
                concurrency=step.concurrency,
                request_rate=step.request_rate,
                slo=slo,
                client_bound=quality.client_bound,
                client_notes=quality.client_notes,
                client_cpu_pct=quality.client_cpu_pct,
                spec=run.profile_snapshot.spec,
                context_tokens=step.summary.workload.context_tokens
                if step.summary.workload is not None
                else None,
            )
            for _, group in sorted(by_trial.items(), key=lambda item: item[0] or 0)
        ] or [summarize_step([], concurrency=step.concurrency, request_rate=step.request_rate, slo=slo)]
        trials = step.summary.trials
        summary = combine(summaries, cooldown_s=trials.cooldown_s if trials is not None else 0.0, slo=slo)
        summary.telemetry = step.summary.telemetry  # the server's metrics are not in the samples
        fresh = with_costs(summary, inputs)
        for key, value in step_columns(fresh).items():
            setattr(step, key, value)
        step.summary = fresh
    await session.flush()
    await judge(session, run=run)
    return len(steps)
