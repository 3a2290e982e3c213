"""Schedules: queue a run of a profile against an endpoint on a fixed cadence, or on a cron
expression in a time zone (cronsim: DST as cron handles it).

Slots sit on a fixed grid: `k x interval + offset` seconds since the epoch, where the offset is
stable per endpoint (spreading starts, no thundering herd). A tick claims one due schedule
(row lock with SKIP LOCKED on PostgreSQL), records the slot as a queued run, or as
`skipped_overlap` when the endpoint is still busy, and moves the schedule to its next slot.
A slot can be recorded once only: (schedule_id, scheduled_for) is unique. After downtime, only
the latest missed slot runs, and only if it is within the catch-up window."""

from __future__ import annotations

import hashlib
import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, ValidationFailed
from app.models import ANY_LOCATION, LOCAL, Endpoint, Profile, Run, RunStatus, Schedule
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


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(
            "unknown time zone", fields={"timezone": f"{name!r} is not an IANA time zone"}
        ) from exc


DEFAULT_MIN_INTERVAL_S = 60  # the fewest seconds between firings unless an admin lowers it
GAPS_CHECKED = 500  # a cron's shortest gap is looked for among its next firings


def check_interval(interval_s: int, min_interval_s: int) -> None:
    if interval_s < min_interval_s:
        raise ValidationFailed(
            f"a schedule fires at most every {min_interval_s} s",
            fields={"interval_s": f"at least {min_interval_s} seconds (an admin can lower the minimum)"},
        )


def check_cron(
    expr: str, zone: str | None, now: datetime, *, min_interval_s: int = DEFAULT_MIN_INTERVAL_S
) -> int:
    """Refuse a bad cron or zone, a cron of other than five fields (cronsim also reads a sixth,
    seconds: `* * * * * *` fires every second) and one that fires more often than the minimum
    (422 naming the field); the gap between its next two firings."""
    tz = _zone(zone)
    if not expr.strip().startswith("@") and len(expr.split()) != 5:
        raise ValidationFailed(
            "not a cron expression",
            fields={"cron": "five fields: minute hour day-of-month month day-of-week"},
        )
    try:
        it = CronSim(expr, now.astimezone(tz))
        times = [next(it) for _ in range(2)]
    except (CronSimError, StopIteration) as exc:
        raise ValidationFailed("not a cron expression", fields={"cron": f"{exc or 'never fires'}"}) from exc
    for when in it:
        times.append(when)
        if len(times) > GAPS_CHECKED:
            break
    shortest = min((b - a).total_seconds() for a, b in itertools.pairwise(times))
    if shortest < min_interval_s:
        raise ValidationFailed(
            f"a schedule fires at most every {min_interval_s} s",
            fields={
                "cron": f"fires {int(shortest)} s apart; at least {min_interval_s} s (an admin can lower it)"
            },
        )
    return max(60, int((times[1] - times[0]).total_seconds()))


def firings(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The schedule's next `count` slots after `after`, in UTC (cron: in its zone, DST as cron does)."""
    if schedule.cron:
        it = CronSim(schedule.cron, after.astimezone(_zone(schedule.timezone)))
        return [next(it).astimezone(UTC) for _ in range(count)]
    first = slot_after(after, schedule.interval_s, schedule.offset_s)
    if first - after < timedelta(milliseconds=1):  # `after` a hair before a slot: that slot is not later
        first += timedelta(seconds=schedule.interval_s)
    return [first + timedelta(seconds=schedule.interval_s * i) for i in range(count)]


def latest_firing(schedule: Schedule, at: datetime) -> datetime:
    """The schedule's latest slot at or before `at`."""
    if schedule.cron:
        it = CronSim(
            schedule.cron, (at + timedelta(seconds=1)).astimezone(_zone(schedule.timezone)), reverse=True
        )
        return next(it).astimezone(UTC)
    return slot_at_or_before(at, schedule.interval_s, schedule.offset_s)


async def create(
    session: AsyncSession, *, endpoint_id: int, profile_name: str, interval_s: int | None, enabled: bool,
    now: datetime, catchup_window_s: int | None = None, cron: str | None = None, timezone: str | None = None,
    min_interval_s: int = DEFAULT_MIN_INTERVAL_S, locations: list[str] | None = None, location_mode: str = "all",
) -> Schedule:  # fmt: skip
    if (interval_s is None) == (cron is None):
        raise ValidationFailed(
            "give an interval or a cron expression",
            fields={"cron": "give interval_s or cron, not both or neither"},
        )
    if cron is not None:
        interval_s = check_cron(cron, timezone, now, min_interval_s=min_interval_s)
    assert interval_s is not None
    check_interval(interval_s, min_interval_s)
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
        cron=cron,
        timezone=(timezone or "UTC") if cron else None,
        enabled=enabled,
        offset_s=offset if cron is None else 0.0,
        catchup_window_s=catchup_window_s
        if catchup_window_s is not None
        else min(interval_s, DEFAULT_CATCHUP_S),
        created_at=now,
        locations=check_locations(locations or []),
        location_mode=location_mode,
    )
    schedule.next_run_at = firings(schedule, now, 1)[0]
    session.add(schedule)
    await session.flush()
    return schedule


async def update(
    session: AsyncSession, *, schedule_id: int, interval_s: int | None, enabled: bool | None, now: datetime,
    cron: str | None = None, timezone: str | None = None, min_interval_s: int = DEFAULT_MIN_INTERVAL_S,
    locations: list[str] | None = None, location_mode: str | None = None,
) -> Schedule:  # fmt: skip
    schedule = await get(session, schedule_id)
    if locations is not None:
        schedule.locations = check_locations(locations)
        schedule.location_turn = 0
    if location_mode is not None:
        schedule.location_mode = location_mode
    if interval_s is not None and cron is not None:
        raise ValidationFailed("give an interval or a cron expression", fields={"cron": "not both"})
    if interval_s is not None:
        check_interval(interval_s, min_interval_s)
    if interval_s is not None and (interval_s != schedule.interval_s or schedule.cron):
        schedule.interval_s = interval_s
        schedule.cron = schedule.timezone = None
        schedule.offset_s = stable_offset(schedule.endpoint_id, interval_s)
        schedule.catchup_window_s = min(interval_s, DEFAULT_CATCHUP_S)
        schedule.next_run_at = firings(schedule, now, 1)[0]
    if cron is not None or (timezone is not None and schedule.cron):
        expr = cron or schedule.cron
        assert expr is not None
        zone = timezone or schedule.timezone
        schedule.interval_s = check_cron(expr, zone, now, min_interval_s=min_interval_s)
        schedule.cron, schedule.timezone, schedule.offset_s = expr, zone or "UTC", 0.0
        schedule.catchup_window_s = min(schedule.interval_s, DEFAULT_CATCHUP_S)
        schedule.next_run_at = firings(schedule, now, 1)[0]
    if enabled is not None:
        if enabled and not schedule.enabled:
            schedule.next_run_at = firings(schedule, now, 1)[0]
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


def check_locations(locations: list[str]) -> list[str]:
    """Agents' locations, each once, in the order given; LOCAL stands alone ([] means it)."""
    found = list(dict.fromkeys(loc.strip() for loc in locations if loc.strip()))
    if found == [LOCAL]:
        return []
    if LOCAL in found or ANY_LOCATION in found:
        raise ValidationFailed(
            "a schedule runs here or at agents' locations",
            fields={"locations": f"'{LOCAL}' cannot be mixed with agents' locations; '*' is not a location"},
        )
    return found


def to_read(schedule: Schedule, endpoint: str, profile: str) -> ScheduleRead:
    upcoming = []
    if schedule.next_run_at is not None:
        upcoming = [schedule.next_run_at, *firings(schedule, schedule.next_run_at, 4)]
    return ScheduleRead(
        id=schedule.id,
        endpoint_id=schedule.endpoint_id,
        endpoint=endpoint,
        profile=profile,
        interval_s=schedule.interval_s,
        cron=schedule.cron,
        timezone=schedule.timezone,
        next_firings=upcoming,
        enabled=schedule.enabled,
        offset_s=schedule.offset_s,
        catchup_window_s=schedule.catchup_window_s,
        next_run_at=schedule.next_run_at,
        last_run_at=schedule.last_run_at,
        locations=list(schedule.locations) or [LOCAL],
        location_mode=schedule.location_mode,
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
    latest = latest_firing(schedule, now)
    missed = due < latest  # the worker(s) were down: only the latest missed slot may run
    slot = latest if missed else due
    window = schedule.catchup_window_s if schedule.catchup_window_s is not None else schedule.interval_s
    schedule.next_run_at = (
        firings(schedule, slot, 1)[0] if schedule.cron else slot + timedelta(seconds=schedule.interval_s)
    )
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
    if schedule.locations:
        await _fire_at_locations(session, schedule, profile.name, slot, now)
        return True
    busy = await session.scalar(
        select(Run.id).where(
            Run.endpoint_id == schedule.endpoint_id,
            Run.location == LOCAL,
            Run.status.in_((RunStatus.running.value, RunStatus.queued.value)),
        )
    )
    if busy is not None and (merged := await _merge_skip(session, schedule, slot, busy, now)):
        return merged
    run = await runs.start(
        session,
        endpoint_id=schedule.endpoint_id,
        profile_name=profile.name,
        by=None,
        trigger="schedule",
        now=now,
    )
    _record_slot(run, schedule, slot, now, busy, "")
    await session.flush()
    return True


def _record_slot(
    run: Run, schedule: Schedule, slot: datetime, now: datetime, busy: int | None, where: str
) -> None:
    """The run of one slot; `skipped_overlap` where the endpoint's run `busy` (at `where`) was
    still queued or running."""
    run.schedule_id = schedule.id
    run.scheduled_for = slot
    if busy is not None:
        run.status = RunStatus.skipped_overlap.value
        run.finished_at = now
        run.skipped_slots = 1
        run.error = f"run {busy} of this endpoint{where} was still queued or running"


async def _merge_skip(
    session: AsyncSession, schedule: Schedule, slot: datetime, busy: int, now: datetime
) -> bool:
    """Skipped slots in a row are one row with a count (a busy endpoint on a one-minute schedule
    wrote a row a minute): the schedule's latest run, when it is a skip, takes this slot too."""
    latest = await session.scalar(
        select(Run)
        .where(Run.schedule_id == schedule.id)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(1)
    )
    if latest is None or latest.status != RunStatus.skipped_overlap.value:
        return False
    count = (latest.skipped_slots or 1) + 1
    first = latest.created_at.strftime("%Y-%m-%d %H:%M")
    latest.skipped_slots = count
    latest.scheduled_for, latest.finished_at = slot, now
    latest.error = (
        f"{count} slots since {first} UTC skipped: run {busy} of this endpoint was still queued or running"
    )
    await session.flush()
    return True


def firing_locations(schedule: Schedule) -> list[str]:
    """Where one firing of the schedule runs: every location (all), the next in turn
    (round_robin, advancing the turn) or whichever location's agent claims first (any)."""
    if schedule.location_mode == "round_robin":
        found = [schedule.locations[schedule.location_turn % len(schedule.locations)]]
        schedule.location_turn = (schedule.location_turn + 1) % len(schedule.locations)
        return found
    if schedule.location_mode == "any":
        return [ANY_LOCATION]
    return list(schedule.locations)


async def _fire_at_locations(
    session: AsyncSession, schedule: Schedule, profile: str, slot: datetime, now: datetime
) -> None:
    """One run per location of this firing; a location whose last run of the endpoint is still
    queued or running records the slot as skipped there (its agents are behind or away)."""
    for location in firing_locations(schedule):
        watched = [*schedule.locations, ANY_LOCATION] if location == ANY_LOCATION else [location]
        busy = await session.scalar(
            select(Run.id).where(
                Run.endpoint_id == schedule.endpoint_id,
                Run.location.in_(watched),
                Run.status.in_((RunStatus.running.value, RunStatus.queued.value)),
            )
        )
        run = await runs.start(
            session, endpoint_id=schedule.endpoint_id, profile_name=profile, by=None, trigger="schedule",
            now=now, location=location,
        )  # fmt: skip
        _record_slot(run, schedule, slot, now, busy, f" at {location}")
    await session.flush()
