"""Workload profile pages: list, a profile's page (its workload, its dataset's statistics), create and edit through a form."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.deps import EditorDep, ReaderDep, SessionDep, SettingsDep
from app.domain import DEFAULT_PERCENTILE
from app.errors import NotFound, ValidationFailed
from app.schemas import DatasetRead, ProfileCreate, ProfileRead, ProfileUpdate, field_errors
from app.services import datasets, profiles
from app.web import figures
from app.web.forms import form_str
from app.web.templating import render
from app.workloads import WORKLOAD_KINDS, Dist, WorkloadSpec

router = APIRouter(prefix="/profiles")

WORKLOAD_FIELDS = ("workload_kind", "workload_seed", "workload_input", "workload_output", "workload_burstiness",
                   "workload_groups", "workload_prefix_tokens", "workload_order", "workload_turns", "workload_think_s",
                   "workload_system_tokens", "workload_dataset", "workload_sessions", "workload_context_tokens",
                   "workload_start_tokens", "workload_context_max")  # fmt: skip
DISTS = {"input", "output", "turns", "think_s"}
WHOLE = {"seed", "groups", "prefix_tokens", "system_tokens", "start_tokens", "context_max"}
FIELDS = ("name", "title", "description", "input_tokens_mean", "input_tokens_spread", "output_tokens_mean",
          "output_tokens_spread", "load_mode", "load_levels", "arrival", "max_concurrency", "requests_per_step",
          "duration_per_step_s", "warmup_requests", "search", "search_max_steps", "search_budget_s", "trials", "trial_cooldown_s", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms", "slo_percentile",
          "target_price_per_million", *WORKLOAD_FIELDS)  # fmt: skip
INTS = {
    "input_tokens_mean",
    "output_tokens_mean",
    "max_concurrency",
    "requests_per_step",
    "warmup_requests",
    "slo_percentile",
    "search_max_steps",
    "trials",
}
FLOATS = {"search_budget_s", "trial_cooldown_s", "input_tokens_spread", "output_tokens_spread", "duration_per_step_s", "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms",
          "target_price_per_million"}  # fmt: skip


def parse_workload(values: dict[str, str], errors: dict[str, str]) -> dict[str, object] | None:
    """The workload fields of the form as a WorkloadSpec's dict (None: the plain synthetic one);
    a malformed value is an error on its own field."""
    kind = values.get("workload_kind", "").strip() or "synthetic"
    spec: dict[str, object] = {"kind": kind}
    for field in WORKLOAD_FIELDS[1:]:
        raw = values.get(field, "").strip()
        key = field.removeprefix("workload_")
        if not raw:
            continue
        try:
            if key in DISTS:
                spec[key] = Dist.parse(raw).model_dump(exclude_defaults=True)
            elif key in WHOLE:
                spec[key] = int(raw)
            elif key == "burstiness":
                spec[key] = float(raw)
            elif key == "context_tokens":
                spec[key] = [int(v) for v in raw.replace(" ", "").split(",") if v]
            elif key == "sessions":
                spec[key] = raw in ("on", "true", "1")
            else:
                spec[key] = raw
        except ValueError as exc:
            errors[field] = (
                str(exc)
                if key in DISTS
                else "enter a number"
                if key != "context_tokens"
                else "enter whole numbers separated by commas"
            )
    return None if spec == {"kind": "synthetic"} else spec


def parse(values: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    payload: dict[str, object] = {}
    errors: dict[str, str] = {}
    payload["workload"] = parse_workload(values, errors)
    for field, raw in values.items():
        raw = raw.strip()
        if field in WORKLOAD_FIELDS:
            continue
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
        "trials",
        "trial_cooldown_s",
    ):
        if payload.get(key) is None:
            payload.pop(key, None)
    return payload, errors


def form_values(profile: ProfileRead) -> dict[str, str]:
    data = profile.model_dump()
    out = {k: "" if data.get(k) is None else str(data[k]) for k in FIELDS if k not in WORKLOAD_FIELDS}
    out["load_levels"] = ", ".join(f"{v:g}" for v in profile.load_levels)
    out["search"] = "on" if profile.search else ""
    spec = profile.workload or WorkloadSpec()
    for field in WORKLOAD_FIELDS:
        key = field.removeprefix("workload_")
        value = spec.kind if key == "kind" else getattr(spec, key)
        if value is None:
            out[field] = ""
        elif key == "context_tokens":
            out[field] = ", ".join(str(v) for v in value)
        elif key == "sessions":
            out[field] = "on" if value else ""
        else:
            out[field] = str(value)
    return out


def errors_of(exc: ValidationError) -> dict[str, str]:
    """Field errors, a workload's own ones under the workload's kind field."""
    found = field_errors(exc)
    return {("workload_kind" if key.startswith("workload") else key): value for key, value in found.items()}


def _workload_key(fields: dict[str, str]) -> dict[str, str]:
    return {("workload_kind" if key == "workload" else key): value for key, value in fields.items()}


async def _choices(session: SessionDep) -> dict[str, object]:
    names = [d.name for d in await datasets.list_all(session)]
    return {
        "kinds": [(k, k.replace("_", " ")) for k in WORKLOAD_KINDS],
        "dataset_names": [(n, n) for n in names],
    }


@router.get("", name="profiles_list")
async def list_page(request: Request, session: SessionDep, _: ReaderDep) -> HTMLResponse:
    items = [ProfileRead.model_validate(p) for p in await profiles.list_all(session)]
    return render(request, "profiles/list.html", {"profiles": items})


@router.get("/new", name="profile_new")
async def new_page(request: Request, session: SessionDep, _: EditorDep) -> HTMLResponse:
    defaults = {
        "load_mode": "concurrency",
        "arrival": "poisson",
        "slo_percentile": str(int(DEFAULT_PERCENTILE)),
        "load_levels": "1, 8, 32",
        "workload_kind": "synthetic",
    }
    return render(
        request,
        "profiles/form.html",
        {"values": defaults, "errors": {}, "profile": None, **await _choices(session)},
    )


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
            errors = errors_of(exc)
        except ValidationFailed as exc:
            errors = _workload_key(exc.fields) or {"__all__": exc.message}
    return render(
        request,
        "profiles/form.html",
        {"values": values, "errors": errors, "profile": None, **await _choices(session)},
        status_code=400,
    )


@router.get("/{name}/edit", name="profile_edit")
async def edit_page(request: Request, name: str, session: SessionDep, _: EditorDep) -> HTMLResponse:
    profile = ProfileRead.model_validate(await profiles.get_by_name(session, name))
    return render(
        request,
        "profiles/form.html",
        {"values": form_values(profile), "errors": {}, "profile": profile, **await _choices(session)},
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
            errors = errors_of(exc)
        except ValidationFailed as exc:
            errors = _workload_key(exc.fields) or {"__all__": exc.message}
    return render(
        request,
        "profiles/form.html",
        {"values": values, "errors": errors, "profile": current, **await _choices(session)},
        status_code=400,
    )


@router.get("/{name}", name="profile_page")
async def profile_page(request: Request, name: str, session: SessionDep, _: ReaderDep) -> HTMLResponse:
    """A profile: its workload described and, when it replays a dataset, the dataset's statistics."""
    profile = ProfileRead.model_validate(await profiles.get_by_name(session, name))
    spec = profile.workload or WorkloadSpec()
    dataset = None
    charts: dict[str, str] = {}
    if spec.dataset is not None:
        try:
            dataset = DatasetRead.model_validate(await datasets.get_by_name(session, spec.dataset))
        except NotFound:
            dataset = None
        if dataset is not None:
            charts = await asyncio.to_thread(figures.dataset_lengths, dataset.stats)
    return render(
        request,
        "profiles/detail.html",
        {"profile": profile, "spec": spec, "dataset": dataset, "charts": charts},
    )
