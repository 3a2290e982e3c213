"""Runs: queue a probe and claim it (services/execution.py executes it; services/results.py
stores and judges what it measured), list and read runs back in DESIGN's run-summary shape,
cancel and delete them."""

from __future__ import annotations

import base64
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy import delete as sa_delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from app.domain import RunSource
from app.errors import Conflict, NotFound, ValidationFailed
from app.models import LOCAL, Alert, Endpoint, Run, RunStatus
from app.schemas import RunListItem
from app.services import changes, results
from app.services import datasets as dataset_service
from app.services import endpoints as endpoint_service
from app.services import profiles as profile_service
from app.snapshot import PRICE_FIELDS, STACK_FIELDS, CostInputs, EndpointSnapshot, ProfileSnapshot
from app.summary import RunEndpoint, RunSummary

INSPECTION_CLAIM = timedelta(seconds=90)  # inspections.STALE_CLAIM: an older claim was abandoned

log = logging.getLogger("smartbench.runs")

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


# -- queueing ---------------------------------------------------------------------------------------


async def start(
    session: AsyncSession,
    *,
    endpoint_id: int,
    profile_name: str,
    by: int | None,
    trigger: str,
    now: datetime,
    location: str = LOCAL,
) -> Run:
    """Queue a run with the profile and the endpoint's cost inputs as they are now, to be probed
    at `location` (LOCAL: by this dashboard's executor and workers; else by that location's agents)."""
    endpoint = await endpoint_service.get(session, endpoint_id)
    profile = await profile_service.get_by_name(session, profile_name)
    snapshot = profile_service.snapshot(profile)
    spec = snapshot.workload
    if spec is not None and spec.uses_dataset and spec.dataset is not None:
        # The run keeps the content hash of the dataset it replays.
        found = await dataset_service.get_by_name(session, spec.dataset)
        snapshot = snapshot.model_copy(
            update={"workload": spec.model_copy(update={"dataset_sha256": found.sha256})}
        )
    run = new_run(
        endpoint,
        snapshot,
        profile_id=profile.id,
        status=RunStatus.queued,
        trigger=trigger,
        created_at=now,
        requested_by_id=by,
        location=location,
    )
    session.add(run)
    await session.flush()
    return run


async def claim(session: AsyncSession, *, now: datetime, worker: str = WORKER_ID) -> Run | None:
    """Take the oldest queued run whose endpoint is free (no run, no on-demand inspection). Two
    claimers never take the same run (row lock on PostgreSQL), and the database refuses a second
    running run for one endpoint."""
    busy = select(Run.endpoint_id).where(Run.status == RunStatus.running.value)
    # An on-demand inspection's requests would disturb the run's first step: wait for its end.
    inspected = select(Endpoint.id).where(Endpoint.inspecting_since > now - INSPECTION_CLAIM)
    query = (
        select(Run)
        .where(
            Run.status == RunStatus.queued.value,
            Run.location == LOCAL,  # an agent's location's runs wait for its agents
            Run.endpoint_id.not_in(busy),
            Run.endpoint_id.not_in(inspected),
        )
        .order_by(Run.created_at, Run.id)
        .limit(1)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    run = await session.scalar(query)
    if run is None:
        return None
    try:
        # A savepoint: losing the race for the endpoint (its one running run, a unique index)
        # undoes this claim only, never the caller's transaction.
        async with session.begin_nested():
            run.status = RunStatus.running.value
            run.started_at = now
            run.heartbeat_at = now
            run.worker_id = worker
    except IntegrityError:
        await session.refresh(run)
        return None
    return run


def new_run(
    endpoint: Endpoint,
    profile: ProfileSnapshot,
    *,
    profile_id: int | None,
    status: RunStatus,
    trigger: str,
    created_at: datetime,
    requested_by_id: int | None = None,
    source: RunSource = RunSource.smartbench,
    **more: Any,
) -> Run:
    """A run of `endpoint` with `profile`: the one place a run row is made (queued runs, imports),
    snapshotting the endpoint's stack and cost inputs as they are now, with their keys."""
    cost = CostInputs.of(endpoint)
    stack = EndpointSnapshot.of(endpoint)
    return Run(
        endpoint_id=endpoint.id,
        profile_id=profile_id,
        profile_name=profile.name,
        profile_snapshot=profile,
        cost_snapshot=cost,
        endpoint_snapshot=stack,
        price_key=cost.key(PRICE_FIELDS),
        stack_key=stack.key(STACK_FIELDS),
        status=status.value,
        trigger=trigger,
        source=source.value,
        created_at=created_at,
        requested_by_id=requested_by_id,
        **more,
    )


# -- reading --------------------------------------------------------------------------------------------


def list_item(run: Any, endpoint: str, waiting_for: str | None = None) -> RunListItem:
    return RunListItem(
        id=run.id,
        endpoint_id=run.endpoint_id,
        endpoint=endpoint,
        profile=run.profile_name,
        status=run.status,
        trigger=run.trigger,
        source=run.source,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        cost_per_million_tokens_at_slo=run.cost_per_million_tokens_at_slo,
        output_tokens_per_s_at_slo=run.output_tokens_per_s_at_slo,
        quality_degraded=run.quality_degraded,
        waiting_for=waiting_for,
        error=run.error,
        location=run.location,
    )


async def get(session: AsyncSession, run_id: int) -> Run:
    run = await session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


# The columns a run list shows: never the JSON snapshots, environment or scorecard.
LIST_COLUMNS = (
    Run.id, Run.endpoint_id, Run.profile_name, Run.status, Run.trigger, Run.source, Run.created_at,
    Run.started_at, Run.finished_at, Run.cost_per_million_tokens_at_slo, Run.output_tokens_per_s_at_slo,
    Run.quality_degraded, Run.error, Run.location,
)  # fmt: skip


def encode_cursor(created_at: datetime, run_id: int) -> str:
    raw = f"{created_at.isoformat()}|{run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, run_id = raw.rsplit("|", 1)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, int(run_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "the cursor is not valid", fields={"cursor": "not a cursor from this API"}
        ) from exc


async def list_page(
    session: AsyncSession,
    *,
    endpoint_id: int | None = None,
    profile: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    location: str | None = None,
) -> tuple[list[tuple[Run, str]], str | None, int | None]:
    """Newest first, keyset-paged on (created_at, id) in SQL: a page costs the same on page 1 and
    page 10,000, and runs inserted meanwhile never shift a page. Returns (rows, next cursor,
    total); the total only for one endpoint's runs (an index range), else None."""
    query = (
        select(Run, Endpoint.name)
        .join(Endpoint, Endpoint.id == Run.endpoint_id)
        .options(load_only(*LIST_COLUMNS, raiseload=True))
    )
    filters = []
    if endpoint_id is not None:
        filters.append(Run.endpoint_id == endpoint_id)
    if profile:
        filters.append(Run.profile_name == profile)
    if status:
        filters.append(Run.status == status)
    if location:
        filters.append(Run.location == location)
    query = query.where(*filters)
    if cursor:
        at, run_id = decode_cursor(cursor)
        query = query.where(or_(Run.created_at < at, and_(Run.created_at == at, Run.id < run_id)))
    rows = (
        await session.execute(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1))
    ).all()
    page = [(run, name) for run, name in rows[:limit]]
    following = encode_cursor(page[-1][0].created_at, page[-1][0].id) if len(rows) > limit and page else None
    total = None
    if endpoint_id is not None:
        total = int(await session.scalar(select(func.count(Run.id)).where(*filters)) or 0)
    return page, following, total


async def waiting_reasons(session: AsyncSession, runs: list[Run]) -> dict[int, str]:
    """Why each queued run among `runs` has not started: its endpoint is being probed (probes of
    one endpoint never overlap), or every probe slot is busy, or no executor has claimed it yet."""
    if not any(run.status == RunStatus.queued.value for run in runs):
        return {}
    running = (
        await session.execute(select(Run.id, Run.endpoint_id).where(Run.status == RunStatus.running.value))
    ).all()
    by_endpoint = {endpoint: run_id for run_id, endpoint in running}
    reasons: dict[int, str] = {}
    for run in runs:
        if run.status != RunStatus.queued.value:
            continue
        busy = by_endpoint.get(run.endpoint_id)
        if busy is not None:
            reasons[run.id] = (
                f"waits for run {busy} on the same endpoint (probes of one endpoint never overlap)"
            )
        elif running:
            reasons[run.id] = (
                f"waits for a free probe slot ({len(running)} probe{'s' if len(running) != 1 else ''} running; "
                "each host runs at most its cores less one)"
            )
        else:
            reasons[run.id] = "waits for an executor to claim it"
    return reasons


async def waiting_for(session: AsyncSession, *, run_id: int) -> str | None:
    run = await get(session, run_id)
    return (await waiting_reasons(session, [run])).get(run.id)


async def request_cancel(session: AsyncSession, *, run_id: int, now: datetime) -> Run:
    """Cancel a run: a queued one at once; a running one is stopped by the worker executing it
    (its probe ends the current step and keeps what it measured). Finished runs: a conflict."""
    run = await get(session, run_id)
    if run.status == RunStatus.queued.value:
        run.status = RunStatus.cancelled.value
        run.error = "cancelled before it started"
        run.finished_at = now
        run.cancel_requested_at = now
    elif run.status == RunStatus.running.value:
        if run.cancel_requested_at is None:
            run.cancel_requested_at = now
    else:
        raise Conflict(f"run {run_id} has already ended ({run.status})")
    await session.flush()
    return run


async def delete(session: AsyncSession, *, run_id: int) -> int:
    """Delete a finished run (an admin's mend for a run that should not count: a bad import, a
    run against the wrong server). Its steps and samples go with it; so do the alerts judged on
    it (and their deliveries), so a figure's state falls back to its alert before. Scorecards,
    trends, the planner and /metrics read runs as they stand and need nothing more; inspections
    made after it stay (they observed the endpoint) without the link. Returns its endpoint."""
    run = await get(session, run_id)
    if run.status in (RunStatus.queued.value, RunStatus.running.value):
        raise Conflict(f"run {run_id} is {run.status}: cancel it first")
    endpoint_id, profile = run.endpoint_id, run.profile_name
    await session.execute(sa_delete(Alert).where(Alert.run_id == run_id))
    await session.execute(sa_delete(Run).where(Run.id == run_id))  # steps and samples cascade
    session.expunge(run)
    # The history lost a run: its change points are found again without it.
    await changes.rescan(session, endpoint_id=endpoint_id, profile=profile, now=datetime.now(UTC))
    return endpoint_id


async def summary(session: AsyncSession, *, run_id: int) -> RunSummary:
    """DESIGN's run summary, plus the scorecard and live progress."""
    run = await get(session, run_id)
    return RunSummary(
        run_id=run.id,
        endpoint=RunEndpoint(id=run.endpoint_id, **run.endpoint_snapshot.model_dump()),
        profile=run.profile_snapshot,
        started_at=run.started_at.isoformat() if run.started_at else None,
        finished_at=run.finished_at.isoformat() if run.finished_at else None,
        status=run.status,
        error=run.error,
        environment=run.environment,
        steps=await results.step_summaries(session, run_id),
        source=run.source,
        trigger=run.trigger,
        location=run.location,
        created_at=run.created_at.isoformat(),
        cost_inputs=run.cost_snapshot,
        progress=run.progress,
        scorecard=run.scorecard,
    )
