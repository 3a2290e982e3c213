"""Inspections of an endpoint (engine detection and the conformance checklist): after each run
and on demand ("Inspect" on the endpoint page, POST /api/v1/endpoints/{id}/inspections)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.domain import engines_comparable
from app.environment import InspectionRecord
from app.errors import Conflict, TooSoon
from app.models import Endpoint, Inspection, Run, RunStatus
from app.probe import inspect as probe_inspect
from app.probe.types import Limits, Target
from app.schemas import InspectionRead
from app.security.crypto import SecretBox
from app.services import endpoints as endpoint_service
from app.services import runs, site

log = logging.getLogger("smartbench.inspections")

RUN_BOUND_S = 60.0  # an inspection after a run never holds its end longer than this
CHECKLIST_EVERY = timedelta(hours=6)  # after runs, the checklist's requests at most this often
COOL_DOWN = timedelta(seconds=30)  # on demand: at most one inspection of an endpoint this often
STALE_CLAIM = runs.INSPECTION_CLAIM  # a claim older than this was left by a dead process


async def target_for(
    session: AsyncSession, endpoint: Endpoint, *, box: SecretBox, settings: Settings
) -> tuple[Target, Limits]:
    key = endpoint_service.decrypt_key(endpoint, box)
    policy = (await site.load(session, settings)).outbound
    target = Target(endpoint.base_url, endpoint.model, endpoint.api_flavor or "chat", key)
    return target, Limits(outbound=policy)


def summary(found: probe_inspect.Inspection) -> InspectionRecord:
    """What a run keeps of its inspection (in its environment), for scoring and recompute."""
    return InspectionRecord.model_validate(found.as_dict(include=set(InspectionRecord.model_fields)))


def store(
    session: AsyncSession,
    *,
    endpoint_id: int,
    declared: str | None,
    found: probe_inspect.Inspection,
    now: datetime,
    run_id: int | None = None,
) -> Inspection:
    row = Inspection(
        endpoint_id=endpoint_id,
        run_id=run_id,
        created_at=now,
        engine=found.engine,
        engine_version=(found.engine_version or None) and str(found.engine_version)[:100],
        declared_engine=declared,
        checklist_version=found.checklist_version,
        evidence=[vars(e) for e in found.evidence],
        checks=[vars(c) for c in found.checks],
        metrics_exposed=found.metrics_exposed,
        duration_s=found.duration_s,
        error=found.error,
        checks_at=datetime.fromisoformat(found.checks_at) if found.checks_at else None,
    )
    session.add(row)
    return row


async def _claim(session: AsyncSession, endpoint: Endpoint, now: datetime) -> None:
    """One on-demand inspection of an endpoint at a time, none while a run measures it (its
    small requests would disturb the numbers), and not again within COOL_DOWN of the last."""
    running = await session.scalar(
        select(Run.id).where(Run.endpoint_id == endpoint.id, Run.status == RunStatus.running.value).limit(1)
    )
    if running is not None:
        raise Conflict(f"run {running} is measuring this endpoint; inspect it after the run ends")
    last = await session.scalar(
        select(Inspection.created_at)
        .where(Inspection.endpoint_id == endpoint.id)
        .order_by(Inspection.created_at.desc())
        .limit(1)
    )
    if last is not None and now - last < COOL_DOWN:
        wait = int((COOL_DOWN - (now - last)).total_seconds()) + 1
        raise TooSoon(f"this endpoint was inspected {int((now - last).total_seconds())} s ago; again in {wait} s",
                      retry_after=wait)  # fmt: skip
    taken = await session.execute(
        update(Endpoint)
        .where(
            Endpoint.id == endpoint.id,
            or_(Endpoint.inspecting_since.is_(None), Endpoint.inspecting_since < now - STALE_CLAIM),
        )
        .values(inspecting_since=now)
    )
    if getattr(taken, "rowcount", 0) != 1:
        raise TooSoon("an inspection of this endpoint is under way", retry_after=int(RUN_BOUND_S))


async def inspect_now(
    session: AsyncSession, *, endpoint_id: int, box: SecretBox, settings: Settings, now: datetime
) -> Inspection:
    """Inspect on demand. The claim is committed before the endpoint is asked, so the request
    holds no database connection during up to 60 s of network I/O (twenty inspections of an
    endpoint that never answers used to take twenty connections of the pool); the claim is
    released when the result is stored, or expires after STALE_CLAIM."""
    endpoint = await endpoint_service.get(session, endpoint_id)
    await _claim(session, endpoint, now)
    target, limits = await target_for(session, endpoint, box=box, settings=settings)
    declared, metrics_url = endpoint.engine, endpoint.metrics_url
    await session.commit()  # the claim stands; the connection goes back to the pool
    try:
        found = await probe_inspect.inspect(
            target, limits=limits, metrics_url=metrics_url, timeout_s=RUN_BOUND_S
        )
    finally:
        await session.execute(
            update(Endpoint).where(Endpoint.id == endpoint_id).values(inspecting_since=None)
        )
    row = store(session, endpoint_id=endpoint_id, declared=declared, found=found, now=now)
    await session.flush()
    return row


async def latest(session: AsyncSession, *, endpoint_id: int, checked_only: bool = False) -> Inspection | None:
    """The endpoint's latest inspection; `checked_only`: the latest whose checklist ran then
    (its answers not carried over)."""
    query = select(Inspection).where(Inspection.endpoint_id == endpoint_id)
    if checked_only:
        query = query.where(Inspection.checks_at.is_(None))
    result: Inspection | None = await session.scalar(
        query.order_by(Inspection.created_at.desc(), Inspection.id.desc()).limit(1)
    )
    return result


async def recent(session: AsyncSession, *, endpoint_id: int, limit: int = 20) -> list[Inspection]:
    rows = await session.scalars(
        select(Inspection)
        .where(Inspection.endpoint_id == endpoint_id)
        .order_by(Inspection.created_at.desc(), Inspection.id.desc())
        .limit(limit)
    )
    return list(rows.all())


def to_read(row: Inspection, *, declared: str | None = None) -> InspectionRead:
    """`declared`: the endpoint's engine now (else as it was when inspected)."""
    read = InspectionRead.model_validate(row)
    return read.model_copy(update={"warning": disagreement(declared or row.declared_engine, row.engine)})


def disagreement(declared: str | None, detected: str) -> str | None:
    """A warning when the declared engine and the detected one differ (unknown never differs)."""
    if not engines_comparable(declared, detected) or declared == detected:
        return None
    return f"declared {declared}, but the endpoint looks like {detected}"
