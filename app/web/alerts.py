"""The admin's alerts page: how regressions and outages are judged, the webhooks alerts go
to (the signing secret shown once), and how the latest deliveries went."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.deps import AdminDep, BoxDep, NowDep, RowId, SessionDep, SettingsDep
from app.errors import AppError
from app.schemas import ALERT_KINDS, SiteSettingsUpdate, WebhookCreate, WebhookUpdate, field_errors
from app.services import site, webhooks
from app.web.forms import form_str
from app.web.templating import render

router = APIRouter(prefix="/settings/alerts")


async def _page(
    request: Request, session: SessionDep, settings: SettingsDep, *, rules: dict[str, str] | None = None,
    rule_errors: dict[str, str] | None = None, hook: dict[str, object] | None = None,
    hook_errors: dict[str, str] | None = None, created: str | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    current = (await site.load(session, settings)).alerting.model_dump()
    return render(
        request,
        "settings/alerts.html",
        {"rules": rules or {k: str(v) for k, v in current.items()}, "rule_errors": rule_errors or {},
         "hook": hook or {"kind": "json", "events": list(ALERT_KINDS)}, "hook_errors": hook_errors or {},
         "kinds": ALERT_KINDS, "webhooks": [webhooks.to_read(h) for h in await webhooks.list_all(session)],
         "deliveries": await webhooks.deliveries(session, limit=30), "created": created,
         "saved": "saved" in request.query_params},
        status_code=status_code,
    )  # fmt: skip


@router.get("", name="alerts_page")
async def alerts_page(
    request: Request, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> HTMLResponse:
    return await _page(request, session, settings)


@router.post("", name="alerts_rules")
async def save_rules(
    request: Request, session: SessionDep, settings: SettingsDep, user: AdminDep
) -> Response:
    form = await request.form()
    values = {key: form_str(form, key).strip() for key in site.ALERT_KEYS}
    try:
        update = SiteSettingsUpdate.model_validate({k: v for k, v in values.items() if v})
        await site.save(session, settings, update, by=user.username)
    except ValidationError as exc:
        errors = field_errors(exc)
        return await _page(request, session, settings, rules=values, rule_errors=errors, status_code=400)
    return RedirectResponse(request.url_for("alerts_page").path + "?saved=1", status_code=303)


@router.post("/webhooks", name="webhook_create")
async def create_webhook(
    request: Request, session: SessionDep, settings: SettingsDep, box: BoxDep, now: NowDep, user: AdminDep
) -> Response:
    form = await request.form()
    values: dict[str, object] = {
        "name": form_str(form, "name"),
        "url": form_str(form, "url"),
        "kind": form_str(form, "kind") or "json",
        "events": [str(v) for v in form.getlist("events")],
    }
    try:
        made = await webhooks.create(
            session, settings, box, WebhookCreate.model_validate(values), by=user.username, now=now
        )
    except ValidationError as exc:
        errors = field_errors(exc)
        return await _page(request, session, settings, hook=values, hook_errors=errors, status_code=400)
    except AppError as exc:
        errors = exc.fields or {"__all__": exc.message}
        return await _page(request, session, settings, hook=values, hook_errors=errors, status_code=400)
    return await _page(request, session, settings, created=made.secret or "", status_code=201)


@router.post("/webhooks/{webhook_id}/toggle", name="webhook_toggle")
async def toggle(
    request: Request, webhook_id: RowId, session: SessionDep, settings: SettingsDep, box: BoxDep, _: AdminDep
) -> RedirectResponse:
    hook = await webhooks.get(session, webhook_id)
    await webhooks.update_one(session, settings, box, webhook_id, WebhookUpdate(enabled=not hook.enabled))
    return RedirectResponse(request.url_for("alerts_page").path, status_code=303)


@router.post("/webhooks/{webhook_id}/delete", name="webhook_delete")
async def delete(request: Request, webhook_id: RowId, session: SessionDep, _: AdminDep) -> RedirectResponse:
    await webhooks.delete(session, webhook_id)
    return RedirectResponse(request.url_for("alerts_page").path, status_code=303)
