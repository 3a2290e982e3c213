"""Endpoint registry pages: list, register, view, edit, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from app.deps import BoxDep, EditorDep, NowDep, ReaderDep, RowId, SessionDep, SettingsDep
from app.errors import ValidationFailed
from app.schemas import ENGINES, EndpointCreate, EndpointUpdate, field_errors
from app.services import endpoints, inspections, pages, profiles
from app.web import figures
from app.web.forms import endpoint_form_values, endpoint_payload, form_str
from app.web.templating import render

router = APIRouter(prefix="/endpoints")

PAGE_SIZE = 50


S = TypeVar("S", bound=BaseModel)


def _validate(
    schema: type[S], payload: dict[str, object], parse_errors: dict[str, str]
) -> tuple[S | None, dict[str, str]]:
    """Validate everything at once, so that every wrong field gets its message in one round."""
    try:
        data = schema.model_validate({k: v for k, v in payload.items() if k not in parse_errors})
    except ValidationError as exc:
        return None, {**field_errors(exc), **parse_errors}
    return (None, parse_errors) if parse_errors else (data, {})


def _form_context(values: dict[str, str], errors: dict[str, str], **extra: Any) -> dict[str, object]:
    return {"values": values, "errors": errors, "engines": [(engine, engine) for engine in ENGINES], **extra}


@router.get("", name="endpoints_list")
async def list_page(
    request: Request,
    session: SessionDep,
    _: ReaderDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    q: str = "",
) -> HTMLResponse:
    page = max(page, 1)
    rows, total = await endpoints.list_page(
        session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, q=q[:100] or None
    )
    return render(
        request,
        "endpoints/list.html",
        {
            "endpoints": [endpoints.to_read(row) for row in rows],
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "q": q[:100],
        },
    )


@router.get("/new", name="endpoint_new")
async def new_page(request: Request, _: EditorDep) -> HTMLResponse:
    return render(request, "endpoints/form.html", _form_context({"api_flavor": "chat"}, {}, endpoint=None))


@router.post("/new")
async def create(
    request: Request, session: SessionDep, box: BoxDep, settings: SettingsDep, user: EditorDep
) -> Response:
    form = await request.form()
    values = endpoint_form_values(form)
    payload, errors = endpoint_payload(values)
    api_key = form_str(form, "api_key").strip()
    if api_key:
        payload["api_key"] = api_key
    data, errors = _validate(EndpointCreate, payload, errors)
    if data is not None:
        try:
            created = await endpoints.create(session, data=data, box=box, by=user.user_id, settings=settings)
            return RedirectResponse(
                request.url_for("endpoint_detail", endpoint_id=created.id).path, status_code=303
            )
        except ValidationFailed as exc:
            errors = exc.fields or {"__all__": exc.message}
    if api_key and "api_key" not in errors:
        errors["api_key"] = "for your safety the key was not kept: enter it again"
    return render(
        request, "endpoints/form.html", _form_context(values, errors, endpoint=None), status_code=400
    )


@router.get("/{endpoint_id}", name="endpoint_detail")
async def detail(
    request: Request, endpoint_id: RowId, session: SessionDep, now: NowDep, _: ReaderDep
) -> HTMLResponse:
    data = await pages.endpoint_page(session, endpoint_id=endpoint_id, now=now)

    def build() -> dict[str, dict[str, str]]:
        return {
            "cost": {
                h.profile: figures.cost_trend(
                    h.cost, f"Cost per million tokens · {h.profile}", changes=h.change_points
                )
                for h in data.profiles
            },
            "latency": {
                h.profile: figures.latency_trend(h.latency, h.percentile, h.change_points)
                for h in data.profiles
            },
        }

    charts = await asyncio.to_thread(build)
    all_profiles = [p.name for p in await profiles.list_all(session)]
    return render(
        request,
        "endpoints/detail.html",
        {"page": data, "endpoint": data.endpoint, "inspection": data.inspection, "profiles": all_profiles, "cards": [h.scorecard for h in data.profiles],
         "schedules": data.schedules, "recent": data.recent_runs, "cost_figures": charts["cost"],
         "latency_figures": charts["latency"]},
    )  # fmt: skip


@router.get("/{endpoint_id}/edit", name="endpoint_edit")
async def edit_page(request: Request, endpoint_id: RowId, session: SessionDep, _: EditorDep) -> HTMLResponse:
    endpoint = endpoints.to_read(await endpoints.get(session, endpoint_id))
    values = {
        key: "" if value is None else (", ".join(value) if key == "tags" else str(value))
        for key, value in endpoint.model_dump().items()
    }
    return render(request, "endpoints/form.html", _form_context(values, {}, endpoint=endpoint))


@router.post("/{endpoint_id}/edit")
async def edit(
    request: Request,
    endpoint_id: RowId,
    session: SessionDep,
    box: BoxDep,
    settings: SettingsDep,
    _: EditorDep,
) -> Response:
    current = await endpoints.get(session, endpoint_id)
    form = await request.form()
    values = endpoint_form_values(form)
    payload, errors = endpoint_payload(values)
    api_key = form_str(form, "api_key").strip()
    if api_key:
        payload["api_key"] = api_key
    elif form.get("remove_api_key") == "on":
        payload["api_key"] = None
    data, errors = _validate(EndpointUpdate, payload, errors)
    if data is not None:
        try:
            await endpoints.update(session, endpoint_id=endpoint_id, data=data, box=box, settings=settings)
            return RedirectResponse(
                request.url_for("endpoint_detail", endpoint_id=endpoint_id).path, status_code=303
            )
        except ValidationFailed as exc:
            errors = exc.fields or {"__all__": exc.message}
    if api_key and "api_key" not in errors:
        errors["api_key"] = "for your safety the new key was not kept: enter it again"
    await session.refresh(current)
    return render(
        request,
        "endpoints/form.html",
        _form_context(values, errors, endpoint=endpoints.to_read(current)),
        status_code=400,
    )


@router.post("/{endpoint_id}/inspect", name="endpoint_inspect")
async def inspect(
    request: Request, endpoint_id: RowId, session: SessionDep, box: BoxDep, settings: SettingsDep, now: NowDep,
    _: EditorDep,
) -> RedirectResponse:  # fmt: skip
    await inspections.inspect_now(session, endpoint_id=endpoint_id, box=box, settings=settings, now=now)
    return RedirectResponse(
        request.url_for("endpoint_detail", endpoint_id=endpoint_id).path + "#serving", status_code=303
    )


@router.post("/{endpoint_id}/delete", name="endpoint_delete")
async def delete(request: Request, endpoint_id: RowId, session: SessionDep, _: EditorDep) -> RedirectResponse:
    await endpoints.delete(session, endpoint_id=endpoint_id)
    return RedirectResponse(request.url_for("endpoints_list").path, status_code=303)
