"""/api/v1/schedules: probe an endpoint with a profile on a cadence."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import EditorDep, NowDep, ReaderDep, RowId, SessionDep, SettingsDep
from app.schemas import ErrorBody, Page, ScheduleCreate, ScheduleRead, ScheduleUpdate
from app.services import schedules, site

router = APIRouter(
    prefix="/schedules", tags=["schedules"], responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}}
)


@router.get("")
async def list_schedules(
    session: SessionDep, _: ReaderDep, endpoint_id: RowId | None = None
) -> Page[ScheduleRead]:
    """Every schedule (at most one per endpoint and profile: one page)."""
    rows = await schedules.list_all(session, endpoint_id=endpoint_id)
    return Page[ScheduleRead](items=[schedules.to_read(*row) for row in rows])


@router.post("", status_code=201, responses={422: {"model": ErrorBody}})
async def create_schedule(
    body: ScheduleCreate, session: SessionDep, now: NowDep, settings: SettingsDep, _: EditorDep
) -> ScheduleRead:
    schedule = await schedules.create(
        session,
        endpoint_id=body.endpoint_id,
        profile_name=body.profile,
        interval_s=body.interval_s,
        enabled=body.enabled,
        now=now,
        catchup_window_s=body.catchup_window_s,
        cron=body.cron,
        timezone=body.timezone,
        min_interval_s=(await site.load(session, settings)).min_schedule_interval_s,
        locations=body.locations,
        location_mode=body.location_mode,
    )
    return await schedules.read(session, schedule_id=schedule.id)


@router.patch("/{schedule_id}")
async def update_schedule(
    schedule_id: RowId,
    body: ScheduleUpdate,
    session: SessionDep,
    now: NowDep,
    settings: SettingsDep,
    _: EditorDep,
) -> ScheduleRead:
    schedule = await schedules.update(
        session, schedule_id=schedule_id, interval_s=body.interval_s, enabled=body.enabled, now=now,
        cron=body.cron, timezone=body.timezone,
        min_interval_s=(await site.load(session, settings)).min_schedule_interval_s,
        locations=body.locations, location_mode=body.location_mode,
    )  # fmt: skip
    return await schedules.read(session, schedule_id=schedule.id)


@router.delete("/{schedule_id}", status_code=204)
async def delete_schedule(schedule_id: RowId, session: SessionDep, _: EditorDep) -> Response:
    await schedules.delete(session, schedule_id=schedule_id)
    return Response(status_code=204)
