"""Workload profile pages: list, create and edit through a form."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.deps import EditorDep, ReaderDep, SessionDep, SettingsDep
from app.domain import DEFAULT_PERCENTILE
from app.errors import ValidationFailed
from app.schemas import ProfileCreate, ProfileRead, ProfileUpdate, field_errors
from app.services import profiles
from app.web.forms import form_str
from app.web.templating import render

router = APIRouter(prefix="/profiles")

FIELDS = ("name", "title", "description", "input_tokens_mean", "input_tokens_spread", "output_tokens_mean",
          "output_tokens_spread", "load_mode", "load_levels", "arrival", "max_concurrency", "requests_per_step",
          "duration_per_step_s", "warmup_requests", "search", "search_max_steps", "search_budget_s", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms", "slo_percentile",
          "target_price_per_million")  # fmt: skip
INTS = {
    "input_tokens_mean",
    "output_tokens_mean",
    "max_concurrency",
    "requests_per_step",
    "warmup_requests",
    "slo_percentile",
    "search_max_steps",
}
FLOATS = {"search_budget_s", "input_tokens_spread", "output_tokens_spread", "duration_per_step_s", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms",
          "target_price_per_million"}  # fmt: skip


def parse(values: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    payload: dict[str, object] = {}
    errors: dict[str, str] = {}
    for field, raw in values.items():
        raw = raw.strip()
        try:
            if field == "search":
                payload[field] = raw in ("on", "true", "1")
            elif field == "load_levels":
                payload[field] = [float(v) for v in raw.replace(" ", "").split(",") if v] if raw else None
            elif field in INTS:
                payload[field] = int(raw) if raw else None
            elif field in FLOATS:
                payload[field] = float(raw) if raw else None
            else:
                payload[field] = raw or None
        except ValueError:
            errors[field] = (
                "enter numbers separated by commas" if field == "load_levels" else "enter a number"
            )
    for key in (
        "title",
        "load_mode",
        "arrival",
        "input_tokens_spread",
        "output_tokens_spread",
        "warmup_requests",
        "slo_percentile",
        "search_max_steps",
        "search_budget_s",
    ):
        if payload.get(key) is None:
            payload.pop(key, None)
    return payload, errors


def form_values(profile: ProfileRead) -> dict[str, str]:
    data = profile.model_dump()
    out = {k: "" if data.get(k) is None else str(data[k]) for k in FIELDS}
    out["load_levels"] = ", ".join(f"{v:g}" for v in profile.load_levels)
    out["search"] = "on" if profile.search else ""
    return out


@router.get("", name="profiles_list")
async def list_page(request: Request, session: SessionDep, _: ReaderDep) -> HTMLResponse:
    items = [ProfileRead.model_validate(p) for p in await profiles.list_all(session)]
    return render(request, "profiles/list.html", {"profiles": items})


@router.get("/new", name="profile_new")
async def new_page(request: Request, _: EditorDep) -> HTMLResponse:
    defaults = {
        "load_mode": "concurrency",
        "arrival": "poisson",
        "slo_percentile": str(int(DEFAULT_PERCENTILE)),
        "load_levels": "1, 8, 32",
    }
    return render(request, "profiles/form.html", {"values": defaults, "errors": {}, "profile": None})


@router.post("/new")
async def create(request: Request, session: SessionDep, settings: SettingsDep, _: EditorDep) -> Response:
    form = await request.form()
    values = {f: form_str(form, f) for f in FIELDS}
    payload, errors = parse(values)
    if not errors:
        try:
            await profiles.create(session, data=ProfileCreate.model_validate(payload), settings=settings)
            return RedirectResponse(request.url_for("profiles_list").path, status_code=303)
        except ValidationError as exc:
            errors = field_errors(exc)
        except ValidationFailed as exc:
            errors = exc.fields or {"__all__": exc.message}
    return render(
        request, "profiles/form.html", {"values": values, "errors": errors, "profile": None}, status_code=400
    )


@router.get("/{name}/edit", name="profile_edit")
async def edit_page(request: Request, name: str, session: SessionDep, _: EditorDep) -> HTMLResponse:
    profile = ProfileRead.model_validate(await profiles.get_by_name(session, name))
    return render(
        request, "profiles/form.html", {"values": form_values(profile), "errors": {}, "profile": profile}
    )


@router.post("/{name}/edit")
async def edit(
    request: Request, name: str, session: SessionDep, settings: SettingsDep, _: EditorDep
) -> Response:
    current = ProfileRead.model_validate(await profiles.get_by_name(session, name))
    form = await request.form()
    values = {f: form_str(form, f) for f in FIELDS}
    payload, errors = parse(values)
    if not errors:
        try:
            await profiles.update(
                session, name=name, data=ProfileUpdate.model_validate(payload), settings=settings
            )
            return RedirectResponse(request.url_for("profiles_list").path, status_code=303)
        except ValidationError as exc:
            errors = field_errors(exc)
        except ValidationFailed as exc:
            errors = exc.fields or {"__all__": exc.message}
    return render(
        request,
        "profiles/form.html",
        {"values": values, "errors": errors, "profile": current},
        status_code=400,
    )
