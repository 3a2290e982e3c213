"""Executing a claimed run: the probe in a process of its own (app/probe/process.py), each step
stored as it completes, the heartbeat and cancellation, the inspection after the steps, the end
and its scorecard, then the alerts it raises. Whatever the endpoint or the probe process did, the
run ends in a final status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import unit_of_work
from app.environment import InspectionRecord, RunProgress
from app.models import Endpoint, Run, RunStatus, RunStep
from app.probe import inspect as probe_inspect
from app.probe.ask import CheckResult
from app.probe.process import CANCEL_WAIT_S, ProbeProcess, ProbeSpec
from app.probe.search import SearchSpec
from app.probe.types import Limits, StepResult, Target, Workload
from app.security.crypto import SecretBox
from app.services import alerts, datasets, demo, inspections, site, tokenizers
from app.services import endpoints as endpoint_service
from app.services.results import finish, store_steps
from app.services.runs import WORKER_ID
from app.workloads import context_steps, lengths

log = logging.getLogger("smartbench.runs")


async def probe_spec(session: AsyncSession, run: Run, *, box: SecretBox, settings: Settings) -> ProbeSpec:
    """What the run's probe process needs: the endpoint as it is now (its key decrypted here and
    handed to the child on a pipe), the profile as it was snapshotted, the outbound policy the
    probe enforces at connect time, the tokenizer's file. Raises ValueError when the endpoint
    cannot be probed as configured (the message is fit to show)."""
    endpoint = await session.get(Endpoint, run.endpoint_id)
    key = endpoint_service.decrypt_key(endpoint, box) if endpoint is not None else None
    snap = run.endpoint_snapshot
    target = Target(
        endpoint.base_url if endpoint else snap.base_url or "",
        snap.model or "",
        snap.api_flavor or "chat",
        key,
    )
    tokenizer = tokenizers.resolve(settings, endpoint.tokenizer) if endpoint and endpoint.tokenizer else None
    policy = (await site.load(session, settings)).outbound
    workload = run.profile_snapshot.workload
    content = None
    if workload is not None and workload.uses_dataset and workload.dataset is not None:
        content = await datasets.content_of(session, workload.dataset, workload.dataset_sha256)
    return ProbeSpec(
        target,
        Workload.from_profile(run.profile_snapshot, content),
        limits=Limits(outbound=policy),
        tokenizer=tokenizer,
        metrics_url=endpoint.metrics_url if endpoint is not None else None,
    )


async def execute(
    sessionmaker: async_sessionmaker[AsyncSession],
    run_id: int,
    *,
    box: SecretBox,
    clock: Callable[[], datetime],
    settings: Settings,
    deadline_s: float | None = None,
    beat_s: float = 1.0,
    cpu: int | None = None,
) -> str:
    """Run the probe in its own process and store what it sends: each step as it completes,
    then the run's end and scorecard. Keeps the heartbeat, passes on a user's cancellation,
    and ends every run in a final status, whatever the endpoint or the probe process did."""
    async with unit_of_work(sessionmaker) as session:
        run = await session.get(Run, run_id)
        if run is None:
            return "missing"
        search = SearchSpec.from_profile(run.profile_snapshot)
        planned_steps = search.max_steps if search else len(run.profile_snapshot.load_levels or ())
        traffic = run.profile_snapshot.spec
        if traffic.kind == "long_context":  # a step per prompt length (the card may allow more than declared)
            out = int((traffic.output or lengths(run.profile_snapshot.output_tokens_mean, None)).expected)
            lengths_planned = traffic.context_tokens or context_steps(
                traffic.start_tokens or 1024, traffic.context_max or 0, out
            )
            planned_steps = len(lengths_planned) or 1
        try:
            spec = await probe_spec(session, run, box=box, settings=settings)
        except ValueError as exc:
            await finish(
                session,
                run_id=run_id,
                status=RunStatus.failed.value,
                error=str(exc),
                environment=None,
                now=clock(),
            )
            return RunStatus.failed.value
    pending = RunProgress(steps=planned_steps)

    def progress(step: int, done: int, planned: int | None) -> None:
        pending.step, pending.done, pending.planned = step, done, planned

    async def store(step: StepResult) -> None:
        await _with_retry(
            lambda: _store(sessionmaker, run_id, step), what=f"run {run_id}: storing step {step.index}"
        )

    probe = ProbeProcess(spec, on_progress=progress, on_step=store, deadline_s=deadline_s, cpu=cpu)

    async def beat() -> None:
        while True:
            await asyncio.sleep(beat_s)
            try:
                async with unit_of_work(sessionmaker) as session:
                    await session.execute(
                        update(Run)
                        .where(Run.id == run_id)
                        .values(
                            heartbeat_at=clock(),
                            progress=pending.model_copy(update={"pid": probe.pid, "worker": WORKER_ID}),
                        )
                    )
                    wanted = await session.scalar(select(Run.cancel_requested_at).where(Run.id == run_id))
                if wanted is not None and not probe.cancel_requested:
                    log.info("run %s: cancellation requested, stopping its probe", run_id)
                    probe.cancel()
            except Exception as exc:  # the database is away: the probe goes on, beats resume
                log.warning("run %s: heartbeat failed (%s)", run_id, db_reason(exc))

    heart = asyncio.get_running_loop().create_task(beat())
    running = asyncio.get_running_loop().create_task(probe.run())
    status, error, environment = RunStatus.failed.value, None, None
    try:
        try:
            outcome = await asyncio.shield(running)
        except asyncio.CancelledError:
            # This worker is stopping: the probe ends its step, its partial results are stored.
            probe.cancel()
            status, error = RunStatus.cancelled.value, "cancelled: the worker was stopped"
            try:
                environment = (await asyncio.wait_for(running, timeout=CANCEL_WAIT_S)).environment
            except (TimeoutError, asyncio.CancelledError):
                running.cancel()
            raise
        status, error, environment = outcome.status, outcome.error, outcome.environment
        if environment is not None and status != RunStatus.cancelled.value:
            inspected = await _inspect_after(sessionmaker, run_id, spec, clock)
            environment = environment.model_copy(update={"inspection": inspected})
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a run must end in a status, whatever happened
        log.exception("run %s failed", run_id)
        status, error = RunStatus.failed.value, f"{type(exc).__name__}: {exc}"[:500]
    finally:
        heart.cancel()
        # Its transaction ended (rolled back if cut mid-write) before the run's end is recorded:
        # on SQLite a beat still holding the write lock made that record wait (seen once in 600
        # runs of the suite, "database is locked" until the test's 120 s ran out).
        with contextlib.suppress(asyncio.CancelledError):
            await heart

        async def close() -> None:
            async with unit_of_work(sessionmaker) as session:
                await finish(
                    session, run_id=run_id, status=status, error=error, environment=environment, now=clock()
                )

        await _with_retry(close, what=f"run {run_id}: recording its end")
    await _alert_after(sessionmaker, run_id, settings, clock)
    await _calibrate_demo(sessionmaker, run_id)
    return status


async def _calibrate_demo(sessionmaker: async_sessionmaker[AsyncSession], run_id: int) -> None:
    """A demo endpoint's first run: its generated history, calibrated to it (services/demo.py);
    never able to fail the run."""
    try:
        async with unit_of_work(sessionmaker) as session:
            written = await demo.calibrate(session, run_id=run_id)
        if written:
            log.info("run %s: the demo's history calibrated to it (%s runs)", run_id, written)
    except Exception as exc:
        log.warning("run %s: calibrating the demo's history failed (%s)", run_id, db_reason(exc))


async def _alert_after(
    sessionmaker: async_sessionmaker[AsyncSession],
    run_id: int,
    settings: Settings,
    clock: Callable[[], datetime],
) -> None:
    """Regressions, recoveries, down and up (services/alerts.py); queued for delivery, never
    sent from here, and never able to fail the run that has just been stored."""
    try:
        async with unit_of_work(sessionmaker) as session:
            rules = (await site.load(session, settings)).alerting
            raised = await alerts.after_run(session, run_id=run_id, rules=rules, now=clock())
        for alert in raised:
            log.info("run %s: %s", run_id, alert.message)
    except Exception as exc:
        log.warning("run %s: judging alerts failed (%s)", run_id, db_reason(exc))


async def _inspect_after(
    sessionmaker: async_sessionmaker[AsyncSession],
    run_id: int,
    spec: ProbeSpec,
    clock: Callable[[], datetime],
) -> InspectionRecord:
    """After the steps (never during them): what serves the endpoint and how much of the API it
    honours, stored as an inspection of the run and kept in the run's environment for scoring.
    Detection runs every time (a few GETs); the checklist's requests only when the last one is
    older than CHECKLIST_EVERY or the engine or its version changed, else its answers carry over
    (a smoke canary every minute does not send twenty extra requests each time)."""
    async with unit_of_work(sessionmaker) as session:
        run = await session.get(Run, run_id)
        endpoint = await session.get(Endpoint, run.endpoint_id) if run is not None else None
        if endpoint is None:
            return InspectionRecord(error="the endpoint was deleted")
        endpoint_id, declared, metrics_url = endpoint.id, endpoint.engine, endpoint.metrics_url
        previous = await inspections.latest(session, endpoint_id=endpoint_id, checked_only=True)
        carried = None
        if previous is not None and clock() - previous.created_at < inspections.CHECKLIST_EVERY:
            carried = (previous.engine, previous.engine_version, list(previous.checks), previous.created_at)
    try:
        # One detection; the checklist's requests only when its answers cannot carry over.
        found = await probe_inspect.inspect(
            spec.target, limits=spec.limits, metrics_url=metrics_url, timeout_s=inspections.RUN_BOUND_S,
            unless_still=None if carried is None else carried[:2],
        )  # fmt: skip
        if carried is not None and (found.engine, found.engine_version) == carried[:2]:
            found.checks = [CheckResult(**check) for check in carried[2]]
            found.checks_at = carried[3].isoformat()
    except Exception as exc:  # an inspection never fails the run it follows
        log.warning("run %s: inspection failed (%s)", run_id, type(exc).__name__)
        return InspectionRecord(error=f"the inspection failed: {type(exc).__name__}")

    async def keep() -> None:
        async with unit_of_work(sessionmaker) as session:
            inspections.store(
                session, endpoint_id=endpoint_id, declared=declared, found=found, now=clock(), run_id=run_id
            )

    await _with_retry(keep, what=f"run {run_id}: storing its inspection")
    return inspections.summary(found)


async def _store(sessionmaker: async_sessionmaker[AsyncSession], run_id: int, step: StepResult) -> None:
    """Store one step and its samples once: a retry after a lost connection finds it stored
    (the whole write is one transaction)."""
    async with unit_of_work(sessionmaker) as session:
        stored = await session.scalar(
            select(RunStep.id).where(RunStep.run_id == run_id, RunStep.step_index == step.index).limit(1)
        )
        if stored is None:
            await store_steps(session, run_id=run_id, steps=[step])


async def _with_retry(action: Callable[[], Awaitable[None]], *, what: str, attempts: int = 8) -> None:
    """Retry a database write with back-off (0.5 s doubling to 10 s, jittered so that two
    writers that collided do not collide again in step) while the database restarts or a
    competing SQLite writer holds the lock."""
    delay = 0.5
    for attempt in range(attempts):
        try:
            await action()
            return
        except (OSError, DBAPIError) as exc:
            if attempt == attempts - 1:
                raise
            wait = delay * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not a secret
            log.warning("%s failed (%s); retrying in %.1f s", what, db_reason(exc), wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 10.0)


def db_reason(exc: BaseException) -> str:
    """An exception's type and the first line of the driver's message (no SQL, no parameters)."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0][:120] if str(orig).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
