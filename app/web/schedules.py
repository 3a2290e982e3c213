"""Schedule forms on the endpoint page: add, pause or resume, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from app.deps import EditorDep, NowDep, RowId, SessionDep, SettingsDep
from app.errors import ValidationFailed
from app.services import schedules, site
from app.web.forms import form_str

router = APIRouter()

INTERVALS = {"60": 60, "300": 300, "900": 900, "3600": 3600, "21600": 21600, "86400": 86400}


def _back(request: Request, endpoint_id: RowId) -> RedirectResponse:
    return RedirectResponse(
        request.url_for("endpoint_detail", endpoint_id=endpoint_id).path + "#schedules", status_code=303
    )


@router.post("/endpoints/{endpoint_id}/schedules", name="schedule_add")
async def add(
    request: Request,
    endpoint_id: RowId,
    session: SessionDep,
    now: NowDep,
    settings: SettingsDep,
    _: EditorDep,
) -> RedirectResponse:
    form = await request.form()
    cron = form_str(form, "cron").strip() or None
    interval = None if cron else INTERVALS.get(form_str(form, "interval_s"))
    if cron is None and interval is None:
        raise ValidationFailed(
            "choose one of the offered intervals", fields={"interval_s": "unknown interval"}
        )
    await schedules.create(
        session,
        endpoint_id=endpoint_id,
        profile_name=form_str(form, "profile"),
        interval_s=interval,
        enabled=True,
        now=now,
        cron=cron,
        timezone=form_str(form, "timezone").strip()[:64] or None,
        min_interval_s=(await site.load(session, settings)).min_schedule_interval_s,
        locations=[part[:64] for part in form_str(form, "locations").replace(",", " ").split()],
        location_mode=mode
        if (mode := form_str(form, "location_mode")) in {"all", "round_robin", "any"}
        else "all",
    )
    return _back(request, endpoint_id)


@router.post("/schedules/{schedule_id}/toggle", name="schedule_toggle")
async def toggle(
    request: Request, schedule_id: RowId, session: SessionDep, now: NowDep, _: EditorDep
) -> RedirectResponse:
    schedule = await schedules.get(session, schedule_id)
    await schedules.update(
        session, schedule_id=schedule_id, interval_s=None, enabled=not schedule.enabled, now=now
    )
    return _back(request, schedule.endpoint_id)


@router.post("/schedules/{schedule_id}/delete", name="schedule_delete")
async def remove(request: Request, schedule_id: RowId, session: SessionDep, _: EditorDep) -> RedirectResponse:
    schedule = await schedules.get(session, schedule_id)
    endpoint_id = schedule.endpoint_id
    await schedules.delete(session, schedule_id=schedule_id)
    return _back(request, endpoint_id)
