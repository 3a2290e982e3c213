"""The admin's settings page: the outbound policy, profile limits and login back-offs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.deps import AdminDep, NowDep, SessionDep, SettingsDep
from app.errors import ValidationFailed
from app.schemas import SiteSettingsUpdate, field_errors
from app.services import site, throttle
from app.web.forms import form_str
from app.web.templating import render

router = APIRouter(prefix="/settings/security")


def _lines(value: object) -> str:
    return "\n".join(value) if isinstance(value, list) else ""


def _values(read: dict[str, object]) -> dict[str, str]:
    return {
        "outbound_mode": str(read["outbound_mode"]),
        "outbound_allow": _lines(read["outbound_allow"]),
        "max_profile_concurrency": str(read["max_profile_concurrency"]),
        "max_requests_per_step": str(read["max_requests_per_step"]),
        "webhook_outbound_mode": str(read["webhook_outbound_mode"]),
        "webhook_outbound_allow": _lines(read["webhook_outbound_allow"]),
        "min_schedule_interval_s": str(read["min_schedule_interval_s"]),
    }


async def _page(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep, values: dict[str, str],
    errors: dict[str, str], status_code: int = 200, saved: bool = False,
) -> HTMLResponse:  # fmt: skip
    lockouts = await throttle.blocked(session, now)
    return render(
        request,
        "settings/security.html",
        {"values": values, "errors": errors, "lockouts": lockouts, "saved": saved, "now": now},
        status_code=status_code,
    )


@router.get("", name="security_page")
async def security_page(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep, _: AdminDep
) -> HTMLResponse:
    current = (await site.load(session, settings)).read().model_dump()
    return await _page(
        request, session, settings, now, _values(current), {}, saved="saved" in request.query_params
    )


@router.post("")
async def save(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep, user: AdminDep
) -> Response:
    form = await request.form()
    values = {key: form_str(form, key) for key in site.KEYS}
    payload: dict[str, object] = {
        "outbound_mode": values["outbound_mode"] or "default",
        "outbound_allow": [line.strip() for line in values["outbound_allow"].splitlines() if line.strip()],
        "webhook_outbound_mode": values["webhook_outbound_mode"] or "public",
        "webhook_outbound_allow": [
            line.strip() for line in values["webhook_outbound_allow"].splitlines() if line.strip()
        ],
    }
    errors: dict[str, str] = {}
    for key in ("max_profile_concurrency", "max_requests_per_step", "min_schedule_interval_s"):
        raw = values[key].strip().replace("_", "")
        if not raw.isdigit():
            errors[key] = "enter a whole number"
        else:
            payload[key] = int(raw)
    if not errors:
        try:
            await site.save(session, settings, SiteSettingsUpdate.model_validate(payload), by=user.username)
            return RedirectResponse(request.url_for("security_page").path + "?saved=1", status_code=303)
        except ValidationError as exc:
            errors = field_errors(exc)
        except ValidationFailed as exc:
            errors = exc.fields or {"__all__": exc.message}
    return await _page(request, session, settings, now, values, errors, status_code=400)


@router.post("/lockouts/lift", name="lift_lockout")
async def lift(request: Request, session: SessionDep, _: AdminDep) -> RedirectResponse:
    form = await request.form()
    await throttle.lift(session, form_str(form, "key")[:200])
    return RedirectResponse(request.url_for("security_page").path, status_code=303)
