"""Schedules: queue a run of a profile against an endpoint on a fixed cadence.

Slots sit on a fixed grid: `k x interval + offset` seconds since the epoch, where the offset is
stable per endpoint (spreading starts, no thundering herd). A tick claims one due schedule
(row lock with SKIP LOCKED on PostgreSQL), records the slot as a queued run, or as
`skipped_overlap` when the endpoint is still busy, and moves the schedule to its next slot.
A slot can be recorded once only: (schedule_id, scheduled_for) is unique. After downtime, only
the latest missed slot runs, and only if it is within the catch-up window."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, ValidationFailed
from app.models import Endpoint, Profile, Run, RunStatus, Schedule
from app.schemas import ScheduleRead
from app.services import runs

MAX_OFFSET_S = 60.0
DEFAULT_CATCHUP_S = 300


def stable_offset(endpoint_id: int, interval_s: int) -> float:
    """A per-endpoint offset in [0, min(interval / 4, 60 s)), the same on every worker."""
    digest = hashlib.sha256(f"smartbench-endpoint-{endpoint_id}".encode()).digest()
    fraction = int.from_bytes(digest[:4], "big") / 2**32
    return fraction * min(interval_s / 4.0, MAX_OFFSET_S)


def slot_at_or_before(t: datetime, interval_s: int, offset_s: float) -> datetime:
    seconds = t.timestamp()
    k = math.floor((seconds - offset_s) / interval_s)
    return datetime.fromtimestamp(k * interval_s + offset_s, UTC)


def slot_after(t: datetime, interval_s: int, offset_s: float) -> datetime:
    return slot_at_or_before(t, interval_s, offset_s) + timedelta(seconds=interval_s)


async def create(
    session: AsyncSession, *, endpoint_id: int, profile_name: str, interval_s: int, enabled: bool, now: datetime,
    catchup_window_s: int | None = None,
) -> Schedule:  # fmt: skip
    endpoint = await session.get(Endpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"endpoint {endpoint_id} does not exist")
    profile = await session.scalar(select(Profile).where(Profile.name == profile_name))
    if profile is None:
        raise NotFound(f"no profile is named {profile_name!r}")
    exists = await session.scalar(
        select(Schedule.id).where(Schedule.endpoint_id == endpoint_id, Schedule.profile_id == profile.id)
    )
    if exists is not None:
        raise ValidationFailed(
            "already scheduled", fields={"profile": f"{profile_name} is already scheduled here"}
        )
    offset = stable_offset(endpoint_id, interval_s)
    schedule = Schedule(
        endpoint_id=endpoint_id,
        profile_id=profile.id,
        interval_s=interval_s,
        enabled=enabled,
        offset_s=offset,
        catchup_window_s=catchup_window_s
        if catchup_window_s is not None
        else min(interval_s, DEFAULT_CATCHUP_S),
        next_run_at=slot_after(now, interval_s, offset),
        created_at=now,
    )
    session.add(schedule)
    await session.flush()
    return schedule


async def update(
    session: AsyncSession, *, schedule_id: int, interval_s: int | None, enabled: bool | None, now: datetime
) -> Schedule:
    schedule = await get(session, schedule_id)
    if interval_s is not None and interval_s != schedule.interval_s:
        schedule.interval_s = interval_s
        schedule.offset_s = stable_offset(schedule.endpoint_id, interval_s)
        schedule.catchup_window_s = min(interval_s, DEFAULT_CATCHUP_S)
        schedule.next_run_at = slot_after(now, interval_s, schedule.offset_s)
    if enabled is not None:
        if enabled and not schedule.enabled:
            schedule.next_run_at = slot_after(now, schedule.interval_s, schedule.offset_s)
        schedule.enabled = enabled
    await session.flush()
    return schedule


async def get(session: AsyncSession, schedule_id: int) -> Schedule:
    schedule = await session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id} does not exist")
    return schedule


async def delete(session: AsyncSession, *, schedule_id: int) -> None:
    await session.delete(await get(session, schedule_id))
    await session.flush()


def to_read(schedule: Schedule, endpoint: str, profile: str) -> ScheduleRead:
    return ScheduleRead(
        id=schedule.id,
        endpoint_id=schedule.endpoint_id,
        endpoint=endpoint,
        profile=profile,
        interval_s=schedule.interval_s,
        enabled=schedule.enabled,
        offset_s=schedule.offset_s,
        catchup_window_s=schedule.catchup_window_s,
        next_run_at=schedule.next_run_at,
        last_run_at=schedule.last_run_at,
    )


def _named() -> Any:
    return (
        select(Schedule, Endpoint.name, Profile.name)
        .join(Endpoint, Endpoint.id == Schedule.endpoint_id)
        .join(Profile, Profile.id == Schedule.profile_id)
    )


async def list_all(
    session: AsyncSession, *, endpoint_id: int | None = None
) -> list[tuple[Schedule, str, str]]:
    query = _named().order_by(Endpoint.name, Profile.name)
    if endpoint_id is not None:
        query = query.where(Schedule.endpoint_id == endpoint_id)
    return [(s, e, p) for s, e, p in (await session.execute(query)).all()]


async def read(session: AsyncSession, *, schedule_id: int) -> ScheduleRead:
    """One schedule with its endpoint's and profile's names (one query)."""
    row = (await session.execute(_named().where(Schedule.id == schedule_id))).one_or_none()
    if row is None:
        raise NotFound(f"schedule {schedule_id} does not exist")
    return to_read(*row)


async def tick(session: AsyncSession, *, now: datetime) -> bool:
    """Fire at most one due slot. True when a schedule was due (fired, skipped or caught up)."""
    query = (
        select(Schedule)
        .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
        .order_by(Schedule.next_run_at, Schedule.id)
        .limit(1)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    schedule = await session.scalar(query)
    if schedule is None or schedule.next_run_at is None:
        return False
    due = schedule.next_run_at
    latest = slot_at_or_before(now, schedule.interval_s, schedule.offset_s)
    missed = due < latest  # the worker(s) were down: only the latest missed slot may run
    slot = latest if missed else due
    window = schedule.catchup_window_s if schedule.catchup_window_s is not None else schedule.interval_s
    schedule.next_run_at = slot + timedelta(seconds=schedule.interval_s)
    schedule.last_run_at = now
    if missed and (now - slot).total_seconds() > window:
        await session.flush()  # too late to be worth running: wait for the next slot
        return True
    recorded = await session.scalar(
        select(Run.id).where(Run.schedule_id == schedule.id, Run.scheduled_for == slot)
    )
    if recorded is not None:  # another worker recorded this slot first: nothing runs twice
        await session.flush()
        return True
    profile = await session.get(Profile, schedule.profile_id)
    if profile is None:
        schedule.enabled = False
        await session.flush()
        return True
    busy = await session.scalar(
        select(Run.id).where(
            Run.endpoint_id == schedule.endpoint_id,
            Run.status.in_((RunStatus.running.value, RunStatus.queued.value)),
        )
    )
    run = await runs.start(
        session,
        endpoint_id=schedule.endpoint_id,
        profile_name=profile.name,
        by=None,
        trigger="schedule",
        now=now,
    )
    run.schedule_id = schedule.id
    run.scheduled_for = slot
    if busy is not None:
        run.status = RunStatus.skipped_overlap.value
        run.finished_at = now
        run.error = f"run {busy} of this endpoint was still queued or running"
    await session.flush()
    return True
